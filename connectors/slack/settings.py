"""The `networks.<name>` options of a Slack network, declared and read."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.connector import Option, cleartext_problem, parse_listen

OPTIONS: dict[str, Option] = {
    "bot_token": Option(str, required=True, help="bot token (xoxb-…)"),
    "app_token": Option(str, default="", help="app-level token (xapp-…), needed for receive: socket"),
    "api_url": Option(str, default="https://slack.com/api/", help="Web API base URL"),
    "receive": Option(str, default="socket", help="socket (Socket Mode) or events (Events API over HTTP)"),
    "signing_secret": Option(str, default="", help="the app's signing secret, for receive: events"),
    "listen": Option(str, default="", help="host:port of the Events API endpoint, for receive: events"),
    "max_file_mb": Option((int, float), default=20, help="largest file copied in either direction"),
    "icon_url_template": Option(
        str,
        default="",
        help="avatar URL when the sender has none: {network} {native_id} {employee_id} {name}",
    ),
    "ping_interval": Option((int, float), default=10.0, help="seconds between Socket Mode pings"),
    "connect_timeout": Option((int, float), default=30.0, help="seconds to open the Socket Mode connection"),
    "inbox_size": Option(
        int, default=1000, help="events held while the archive is slow; beyond, Slack redelivers them"
    ),
    "allow_insecure": Option(
        bool, default=False, help="allow a plain http:// api_url that is not on loopback"
    ),
}

ICON_FIELDS = frozenset({"network", "native_id", "employee_id", "name"})


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str
    app_token: str = ""
    api_url: str = "https://slack.com/api/"
    receive: str = "socket"
    signing_secret: str = ""
    listen: str = ""
    max_file_mb: float = 20
    icon_url_template: str = ""
    ping_interval: float = 10.0
    connect_timeout: float = 30.0
    inbox_size: int = 1000
    allow_insecure: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SlackSettings:
        values = {key: options.get(key, opt.default) for key, opt in OPTIONS.items()}
        values = {key: value for key, value in values.items() if value is not None}
        for key in ("max_file_mb", "ping_interval", "connect_timeout"):
            if key in values:
                values[key] = float(values[key])
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if not self.bot_token.startswith("xoxb-"):
            raise ValueError("slack: bot_token must be a bot token (xoxb-…)")
        if self.receive not in ("socket", "events"):
            raise ValueError(f"slack: receive must be socket or events, not {self.receive!r}")
        if self.receive == "socket" and not self.app_token.startswith("xapp-"):
            raise ValueError("slack: receive: socket needs app_token, an app-level token (xapp-…)")
        if self.receive == "events":
            if not self.signing_secret:
                raise ValueError("slack: receive: events needs signing_secret")
            self.listen_address()
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"slack: api_url must be an http(s) URL, not {self.api_url!r}")
        problem = cleartext_problem(self.api_url, "slack: api_url", "the bot token")
        if problem and not self.allow_insecure:
            raise ValueError(problem)
        if self.max_file_mb <= 0:
            raise ValueError("slack: max_file_mb must be positive")
        if self.inbox_size < 1:
            raise ValueError("slack: inbox_size must be at least 1")
        if self.ping_interval <= 0 or self.connect_timeout <= 0:
            raise ValueError("slack: ping_interval and connect_timeout must be positive")
        if self.icon_url_template:
            try:
                fields = {
                    f for _, f, _, _ in string.Formatter().parse(self.icon_url_template) if f is not None
                }
            except ValueError as exc:
                raise ValueError(f"slack: icon_url_template: {exc}") from None
            if not fields <= ICON_FIELDS:
                raise ValueError(
                    f"slack: icon_url_template may use only {{{'}, {'.join(sorted(ICON_FIELDS))}}}"
                )

    @property
    def base_url(self) -> str:
        """slack-sdk joins method names onto base_url, so it must end in a slash."""
        return self.api_url if self.api_url.endswith("/") else self.api_url + "/"

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen, "slack: listen")
