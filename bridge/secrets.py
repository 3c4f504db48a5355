"""Keeping secrets out of logs, and comparing them safely."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from bridge.config import Config

SECRET_KEYS = ("token", "password", "secret", "key")


def tokens_equal(given: str | bytes, expected: str | bytes) -> bool:
    """Constant-time comparison, so response timing reveals nothing about a token."""
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def secret_values(config: Config) -> set[str]:
    found: set[str] = set()

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, str) and any(word in key.lower() for word in SECRET_KEYS) and len(value) >= 6:
            found.add(value)

    for net in config.networks.values():
        walk(net.options, "")
    walk(config.directory.options, "")
    if config.media is not None:
        found.add(config.media.secret)
    return found


class _Redact(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted(secrets, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            for s in self.secrets:
                message = message.replace(s, "***")
            record.msg, record.args = message, None
        return True


def install_redaction(secrets: Iterable[str]) -> None:
    """Replace any secret value that reaches a log line with ***, whoever logs it."""
    redact = _Redact(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
