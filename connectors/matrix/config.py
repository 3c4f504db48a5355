"""The `matrix:` section of the bridge config, checked and typed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.connector import cleartext_problem, parse_listen

DEFAULT_GHOST_PREFIX = "_sb_"
DEFAULT_MAX_FILE_MB = 20


@dataclass(frozen=True)
class MatrixConfig:
    homeserver: str
    server_name: str
    appservice_id: str
    listen_host: str
    listen_port: int
    as_token: str
    hs_token: str
    bot: str
    ghost_prefix: str = DEFAULT_GHOST_PREFIX
    # Regexes of room aliases the bridge may create. Synapse lets an appservice
    # create only aliases in its namespace, so a missing `#room:server_name`
    # can be created only when it matches one of these.
    alias_regexes: tuple[str, ...] = ()
    max_file_bytes: int = DEFAULT_MAX_FILE_MB * 1024 * 1024  # larger files are archived as metadata only

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MatrixConfig:
        """Read the section; ValueError naming the offending key (`matrix.appservice.listen: …`)."""
        appservice = options.get("appservice")
        if not isinstance(appservice, Mapping):
            raise ValueError(
                "matrix.appservice: required, a mapping with id, listen, as_token, hs_token, bot"
            )
        where = "matrix.appservice.listen"
        host, port = parse_listen(_text(appservice, "listen", where), where)
        if port == 0:  # the homeserver must know where to push
            raise ValueError(f"{where}: a fixed port is needed, not 0")
        homeserver = _text(options, "homeserver", "matrix.homeserver").rstrip("/")
        if not homeserver.startswith(("http://", "https://")):
            raise ValueError(f"matrix.homeserver: expected an http(s) URL, got {homeserver!r}")
        problem = cleartext_problem(homeserver, "matrix.homeserver", "the appservice token")
        if problem and options.get("allow_insecure") is not True:
            raise ValueError(problem.replace("allow_insecure", "matrix.allow_insecure"))
        return cls(
            homeserver=homeserver,
            server_name=_text(options, "server_name", "matrix.server_name"),
            appservice_id=_text(appservice, "id", "matrix.appservice.id"),
            listen_host=host,
            listen_port=port,
            as_token=_text(appservice, "as_token", "matrix.appservice.as_token"),
            hs_token=_text(appservice, "hs_token", "matrix.appservice.hs_token"),
            bot=_text(appservice, "bot", "matrix.appservice.bot"),
            ghost_prefix=str(options.get("ghost_prefix") or DEFAULT_GHOST_PREFIX),
            alias_regexes=_regexes(appservice.get("aliases"), "matrix.appservice.aliases"),
            max_file_bytes=_megabytes(options.get("max_file_mb", DEFAULT_MAX_FILE_MB), "matrix.max_file_mb"),
        )

    @property
    def bot_mxid(self) -> str:
        return f"@{self.bot}:{self.server_name}"

    @property
    def url(self) -> str:
        """Where the homeserver reaches our appservice server."""
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"http://{host}:{self.listen_port}"


def _text(section: Mapping[str, Any], key: str, where: str) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: required, a non-empty string")
    return value


def _regexes(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: expected a list of regular expressions")
    for regex in value:
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(f"{where}: {regex!r}: {exc}") from None
    return tuple(value)


def _megabytes(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{where}: expected a positive number of megabytes, got {value!r}")
    return int(value * 1024 * 1024)
