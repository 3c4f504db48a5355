"""InspIRCd 3 with Anope 2 services: an IRC network where accounts are real.

ngircd has no services, so a nick proves nothing there. This network has
NickServ accounts (SASL PLAIN, IDENTIFY, LOGOUT) and the IRCv3 capabilities
that tell a client who is logged in to which account: account-tag,
extended-join, account-notify and WHOX. The recipe is TESTING.md's ("IRC with
services accounts"). Both run in the foreground, on free loopback ports,
stopped by their PID.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from bridge.sandbox.ports import free_port, port_open
from bridge.sandbox.process import LocalServer

INSPIRCD = "/usr/sbin/inspircd"
ANOPE = "/usr/sbin/anope"
SERVICES = "services.test"
_LINK_PASSWORD = "switchboard-link"
_MODULES = [
    "spanningtree",
    "services_account",
    "sasl",
    "cap",
    "ircv3",
    "ircv3_accounttag",
    "ircv3_capnotify",
    "ircv3_servertime",
    "ircv3_msgid",
    "ircv3_echomessage",
    "ircv3_ctctags",
    "ircv3_batch",
    "hidechans",
    "chghost",
    "chgident",
    "svshold",
]
# Anope as root takes 3 s longer to start; as `nobody` it needs its files to be its own.
_ANOPE_USER = "nobody"


def installed() -> bool:
    return Path(INSPIRCD).exists() and Path(ANOPE).exists()


@dataclass
class Inspircd(LocalServer):
    name = "inspircd"
    server_name: str = "irc.switchboard.test"
    link_port: int = field(default_factory=free_port)

    def config(self) -> str:
        modules = "\n".join(f'<module name="{module}">' for module in _MODULES)
        return f"""<config format="xml">
<server name="{self.server_name}" description="Switchboard test" network="SwitchboardTest">
<admin name="tests" nick="tests" email="tests@switchboard.test">
<bind address="{self.host}" port="{self.port}" type="clients">
<bind address="{self.host}" port="{self.link_port}" type="servers">
<connect name="main" allow="*" timeout="60" pingfreq="120" sendq="1048576" recvq="65536"
         threshold="1000" commandrate="100000" fakelag="no" localmax="1000" globalmax="1000"
         useident="no" resolvehostnames="no" limit="5000" maxchans="1000">
<pid file="{self.directory / "inspircd.pid"}">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{self.directory / "ircd.log"}">
<limits maxnick="30" maxchan="64" maxline="512">
{modules}
<link name="{SERVICES}" ipaddr="{self.host}" port="{self.link_port}" allowmask="127.0.0.0/8"
      sendpass="{_LINK_PASSWORD}" recvpass="{_LINK_PASSWORD}">
<uline server="{SERVICES}" silent="yes">
<sasl target="{SERVICES}" requiressl="no">
<ircv3 accountnotify="yes" awaynotify="yes" extendedjoin="yes">
"""

    def start(self) -> None:
        if self.running:
            return
        path = self.directory / "inspircd.conf"
        path.write_text(self.config())
        argv = [INSPIRCD, "--nofork", "--runasroot", f"--config={path}"]
        self.launch(argv, lambda: port_open(self.port, self.host))


@dataclass
class Anope(LocalServer):
    name = "anope"
    uplink_port: int = 0
    startup_timeout: float = 30.0

    @property
    def home(self) -> Path:
        return self.directory / "anope"

    def config(self) -> str:
        commands = " ".join(
            f'command {{ service = "NickServ"; name = "{name}"; command = "nickserv/{name.lower()}"; }}'
            for name in ("REGISTER", "IDENTIFY", "LOGOUT", "INFO")
        )
        return f"""
uplink {{ host = "{self.host}"; ipv6 = no; ssl = no; port = {self.uplink_port}; password = "{_LINK_PASSWORD}"; }}
serverinfo {{ name = "{SERVICES}"; description = "Services"; pid = "{self.home / "anope.pid"}"; motd = "/etc/anope/services.motd"; }}
module {{ name = "inspircd3"; use_server_side_mlock = yes; use_server_side_topiclock = yes; }}
networkinfo {{ networkname = "SwitchboardTest"; nicklen = 30; userlen = 10; hostlen = 64; chanlen = 32;
  modelistsize = 100; vhost_chars = "abcdefghijklmnopqrstuvwxyz0123456789.-"; allow_undotted_vhosts = false;
  disallow_start_or_end = ".-"; }}
options {{ casemap = "rfc1459"; strictpasswords = no; badpasslimit = 1000; badpasstimeout = 1h;
  updatetimeout = 5m; expiretimeout = 30m; readtimeout = 5s; warningtimeout = 4h; timeoutcheck = 3s;
  retrywait = 1s; hideprivilegedcommands = yes; hideregisteredcommands = yes; }}
mail {{ usemail = no; }}
module {{ name = "db_flatfile"; database = "anope.db"; keepbackups = 0; fork = no; }}
module {{ name = "enc_sha256" }}
module {{ name = "enc_none" }}
module {{ name = "m_sasl" }}
service {{ nick = "NickServ"; user = "services"; host = "{SERVICES}"; gecos = "Nickname Registration Service"; }}
module {{ name = "nickserv"; client = "NickServ"; forceemail = no; confirmemailchanges = no;
  defaults = "hide_email hide_mask"; expire = 0; nonicknameownership = yes; passlen = 32;
  guestnickprefix = "Guest"; releasetimeout = 1m; }}
module {{ name = "ns_register"; registration = "none"; }}
module {{ name = "ns_identify"; maxlogins = 10; }}
module {{ name = "ns_logout" }}
module {{ name = "ns_info" }}
{commands}
log {{ target = "services.log"; admin = "*"; servers = "*"; users = "connect disconnect nick"; other = "*"; }}
"""

    def start(self) -> None:
        if self.running:
            return
        for sub in ("data", "logs"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        (self.home / "services.conf").write_text(self.config())
        account = pwd.getpwnam(_ANOPE_USER)
        for path in (self.directory, self.home, *self.home.rglob("*")):
            os.chown(path, account.pw_uid, account.pw_gid)
        argv = [
            ANOPE,
            "--nofork",
            f"--confdir={self.home}",
            "--config=services.conf",
            f"--dbdir={self.home / 'data'}",
            f"--logdir={self.home / 'logs'}",
            "--modulesdir=/usr/lib/anope",
            "--localedir=/usr/share/anope/locale",
        ]
        self.launch(argv, self._synced, user=_ANOPE_USER)

    def _synced(self) -> bool:
        # Before this, CAP LS offers no sasl.
        logs = [self.log_path, *(self.home / "logs").glob("*")]
        return any("is done syncing" in log.read_text(errors="replace") for log in logs if log.is_file())


@dataclass
class ServicesNetwork:
    """InspIRCd and Anope linked; `host`/`port` is where clients connect."""

    ircd: Inspircd = field(default_factory=Inspircd)
    services: Anope = field(default_factory=Anope)

    @property
    def host(self) -> str:
        return self.ircd.host

    @property
    def port(self) -> int:
        return self.ircd.port

    def start(self) -> None:
        if not installed():
            raise RuntimeError("inspircd and anope are not installed (apt-get install -y inspircd anope)")
        self.ircd.start()
        self.services.uplink_port = self.ircd.link_port
        self.services.start()

    def close(self) -> None:
        self.services.close()
        self.ircd.close()

    def log_tail(self) -> str:
        return f"{self.ircd.log_tail()}\n--- anope ---\n{self.services.log_tail()}"

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
