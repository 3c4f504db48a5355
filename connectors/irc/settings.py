"""The `networks.<name>` options of an IRC network, declared and read."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.connector import Option
from connectors.irc.format import NICK
from connectors.irc.identity import IDENTIFY_CHOICES

OPTIONS: dict[str, Option] = {
    "host": Option(str, required=True, help="IRC server host name"),
    "port": Option(int, default=6667, help="IRC server port (usually 6697 with tls)"),
    "tls": Option(bool, default=False, help="connect with TLS"),
    "tls_verify": Option(bool, default=True, help="verify the server's TLS certificate and host name"),
    "nick": Option(str, default="switchboard", help="the relay's nickname"),
    "username": Option(str, default="", help="USER name (default: the nick)"),
    "realname": Option(str, default="Switchboard bridge", help="USER real name"),
    "password": Option(str, default="", help="server password (PASS)"),
    "sasl_username": Option(str, default="", help="SASL PLAIN account; registration fails without SASL"),
    "sasl_password": Option(str, default="", help="SASL PLAIN password"),
    "allow_insecure": Option(
        bool, default=False, help="allow password or SASL over a connection without TLS (loopback only)"
    ),
    "identify": Option(
        str,
        default="",
        help="who a sender is: account (their services account; the default when the server offers it) "
        "or nick (servers without services; every message flagged unverified_identity)",
    ),
    "flood_burst": Option(int, default=5, help="lines sent at once before pacing starts"),
    "flood_rate": Option((int, float), default=2.0, help="lines per second after the burst"),
    "line_template": Option(str, default="<{name}> {text}", help="a relayed line; {name} and {text}"),
    "emote_template": Option(str, default="* {name} {text}", help="a relayed /me; {name} and {text}"),
    "edit_template": Option(str, default="* {name}: {text}", help="an edit's correction line"),
    "connect_timeout": Option((int, float), default=30.0, help="seconds to connect and register"),
    "join_timeout": Option((int, float), default=30.0, help="seconds to wait for a channel join"),
    "ping_interval": Option((int, float), default=60.0, help="seconds of silence before we PING the server"),
    "inbox_size": Option(
        int, default=1000, help="lines held while the archive is slow; beyond, the socket is not read"
    ),
}


@dataclass(frozen=True)
class IrcSettings:
    host: str
    port: int = 6667
    tls: bool = False
    tls_verify: bool = True
    nick: str = "switchboard"
    username: str = ""
    realname: str = "Switchboard bridge"
    password: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    allow_insecure: bool = False
    identify: str = ""
    flood_burst: int = 5
    flood_rate: float = 2.0
    line_template: str = "<{name}> {text}"
    emote_template: str = "* {name} {text}"
    edit_template: str = "* {name}: {text}"
    connect_timeout: float = 30.0
    join_timeout: float = 30.0
    ping_interval: float = 60.0
    inbox_size: int = 1000

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> IrcSettings:
        if not options.get("host"):
            raise ValueError("irc: 'host' is required")
        values = {key: options.get(key, opt.default) for key, opt in OPTIONS.items()}
        values = {key: value for key, value in values.items() if value is not None}
        for key in ("port", "flood_burst", "inbox_size"):
            if key in values:
                values[key] = int(values[key])
        for key in ("flood_rate", "connect_timeout", "join_timeout", "ping_interval"):
            if key in values:
                values[key] = float(values[key])
        settings = cls(**values)
        for key in ("line_template", "emote_template", "edit_template"):
            check_template(key, getattr(settings, key))
        if not NICK.fullmatch(settings.nick):
            raise ValueError(f"irc: nick {settings.nick!r} is not a valid IRC nickname")
        if not re.fullmatch(r"[^\s@\x00]+", settings.user):
            raise ValueError(f"irc: username {settings.user!r} may not contain spaces or '@'")
        if settings.inbox_size < 1:
            raise ValueError("irc: inbox_size must be at least 1")
        if bool(settings.sasl_username) != bool(settings.sasl_password):
            raise ValueError("irc: set both sasl_username and sasl_password, or neither")
        if settings.identify not in ("", *IDENTIFY_CHOICES):
            raise ValueError(f"irc: identify must be account or nick, not {settings.identify!r}")
        if not settings.tls and not settings.allow_insecure:
            for key, what in (("password", "the server password (PASS)"), ("sasl_password", "SASL")):
                if getattr(settings, key):
                    raise ValueError(
                        f"irc: {key}: {what} would cross the network in clear text without tls: "
                        "set tls: true (or allow_insecure: true to accept that)"
                    )
        return settings

    @property
    def user(self) -> str:
        return self.username or self.nick

    @property
    def sasl(self) -> bool:
        return bool(self.sasl_username)


def check_template(key: str, template: str) -> None:
    """A template must place {text} once and may use {name}; splitting relies on both."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        raise ValueError(f"irc: {key}: {exc}") from None
    unknown = set(fields) - {"name", "text"}
    if unknown or fields.count("text") != 1:
        raise ValueError(
            f"irc: {key} must contain {{text}} exactly once and no fields but {{name}}: {template!r}"
        )
