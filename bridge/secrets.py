"""Keeping secrets out of logs, and comparing them safely.

Redaction works on the text a handler is about to write: the whole formatted
record, so a secret in the message, its arguments, an exception's traceback or
the stack is caught alike. The command installs it on its log handler before
the first line is logged (bridge/cli.py); each config it loads adds that
config's secrets (bridge/clikit.py). Two kinds of text are masked:

- the value of every option whose name says it is a secret (token, password,
  secret, key), and the password of `archive.url`;
- the password in any URL that carries one (`scheme://user:PASSWORD@host`),
  whoever wrote the URL.

A secret of 6 characters or more is masked wherever it appears. One of 2 to 5
is masked only where it stands as a word of its own (not inside a longer run of
letters and digits): masking every `ab` inside every word would make the log
unreadable and show the secret by where the holes are; it is still kept out of
`password=ab` and `user:ab@host`. A single character is not masked: it can be
guessed in a few dozen tries whatever the log says, and masking it would erase
every `a` from every line (and from the command's one-line errors).
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from bridge.config import Config

SECRET_KEYS = ("token", "password", "secret", "key")
MASK = "***"
WHOLE_WORD_BELOW = 6  # characters
SHORTEST = 2  # characters
# scheme://user:PASSWORD@ — the user part may be empty (redis://:pw@host)
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:)[^\s/?#@]+@")


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
        elif isinstance(value, str) and value and any(word in key.lower() for word in SECRET_KEYS):
            found.add(value)

    for net in config.networks.values():
        walk(net.options, "")
    walk(config.directory.options, "")
    if config.media is not None:
        found.add(config.media.secret)
    found |= url_passwords(config.archive.url)
    return found


def url_passwords(url: str) -> set[str]:
    """The password of a URL as written and as decoded (%40 is @), or nothing."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return set()
    return {password, unquote(password)} if password else set()


class Redactor:
    """Masks secrets and URL passwords in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = frozenset(s for s in secrets if len(s) >= SHORTEST)
        long = sorted((s for s in self.secrets if len(s) >= WHOLE_WORD_BELOW), key=len, reverse=True)
        short = sorted((s for s in self.secrets if len(s) < WHOLE_WORD_BELOW), key=len, reverse=True)
        alternatives = [re.escape(s) for s in long]
        if short:
            words = "|".join(re.escape(s) for s in short)
            alternatives.append(rf"(?<![A-Za-z0-9])(?:{words})(?![A-Za-z0-9])")
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    def __call__(self, text: str) -> str:
        text = _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)
        return self._pattern.sub(MASK, text) if self._pattern else text


class RedactingFormatter(logging.Formatter):
    """The handler's own formatter, with the finished text redacted."""

    def __init__(self, inner: logging.Formatter, redact: Redactor) -> None:
        super().__init__()
        self.inner = inner
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(self.inner.format(record))


_current = Redactor()


def install_redaction(secrets: Iterable[str] = ()) -> Redactor:
    """Mask these secrets (and URL passwords) in everything the root logger's handlers write.

    Replaces the secrets of an earlier call: they belong to the config this process runs with.
    """
    global _current
    _current = Redactor(secrets)
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if isinstance(formatter, RedactingFormatter):
            formatter.redact = _current
        else:
            handler.setFormatter(RedactingFormatter(formatter or logging.Formatter(), _current))
    return _current


def redact(text: str) -> str:
    """Text for the terminal with the installed secrets masked, as the log would show it."""
    return _current(text)
