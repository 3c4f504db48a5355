"""A private IRC server on a free loopback port, for the tests and the demo.

Usable as a context manager or through `start()`/`stop()`; `restart()` keeps
the port so a connected client sees a real server restart. The process runs
in the foreground (`-n`) in its own session and is stopped by its PID.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bridge.sandbox.ports import free_port, port_open, wait_until
from bridge.sandbox.process import LocalServer
from bridge.sandbox.tls import write_self_signed

NGIRCD = "/usr/sbin/ngircd"


@dataclass
class Ngircd(LocalServer):
    """One ngircd instance. `penalties=False` disables its flood penalties."""

    name = "ngircd"
    kind = "ngircd"
    penalties: bool = False
    tls: bool = False  # then `port` speaks TLS only, with a self-signed certificate for 127.0.0.1
    server_name: str = "irc.switchboard.test"

    @property
    def config_path(self) -> Path:
        return self.directory / "ngircd.conf"

    def config(self) -> str:
        # MaxPenaltyTime = 0 turns ngircd's per-client command penalties off;
        # without it a burst of lines is read at roughly one per second.
        penalty = "" if self.penalties else "MaxPenaltyTime = 0\n"
        return (
            "[Global]\n"
            f"Name = {self.server_name}\n"
            "Info = Switchboard test server\n"
            "AdminInfo1 = tests\nAdminInfo2 = tests\nAdminEMail = tests@switchboard.test\n"
            f"Listen = {self.host}\nPorts = {'' if self.tls else self.port}\n"
            "MotdPhrase = switchboard test server\n"
            "[Limits]\n"
            "MaxConnectionsIP = 0\nMaxJoins = 0\nMaxNickLength = 30\n"
            "PingTimeout = 120\nPongTimeout = 20\n"
            f"{penalty}"
            "[Options]\n"
            "DNS = no\nIdent = no\nPAM = no\n"
            f"{self._tls_section()}"
        )

    def _tls_section(self) -> str:
        if not self.tls:
            return ""
        cert, key = self.directory / "cert.pem", self.directory / "key.pem"
        if not cert.exists():
            write_self_signed(cert, key, self.host)
        return f"[SSL]\nCertFile = {cert}\nKeyFile = {key}\nPorts = {self.port}\n"

    def start(self) -> None:
        if self.running:
            return
        self.config_path.write_text(self.config())
        self.launch([NGIRCD, "-n", "-f", str(self.config_path)], lambda: port_open(self.port, self.host))

    def stop(self, graceful: bool = False) -> None:
        """A graceful stop (SIGTERM) lets ngircd say goodbye but takes 1-2 s; tests rarely need it."""
        super().stop(graceful)

    def restart(self, graceful: bool = False) -> None:
        super().restart(graceful)


@dataclass
class MiniIrcd:
    """miniircd (pure Python, from PyPI): the demo's IRC server where ngircd is not installed."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    kind = "miniircd"

    def start(self) -> None:
        program = shutil.which("miniircd") or str(Path(sys.executable).with_name("miniircd"))
        self._proc = subprocess.Popen(
            [program, "--listen", self.host, "--ports", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: port_open(self.port, self.host), 10, f"miniircd on port {self.port}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)


def start_irc_server() -> Ngircd | MiniIrcd:
    """ngircd when installed (the tested server), else miniircd."""
    server: Ngircd | MiniIrcd = Ngircd() if Path(NGIRCD).exists() else MiniIrcd()
    server.start()
    return server
