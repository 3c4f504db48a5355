"""One IRC line, parsed from the raw text as the server sent it.

jaraco's client splits a PRIVMSG at every `\\x01` into separate CTCP events
and applies CTCP low-level dequoting (`\\x10n` becomes a newline), so one line
could become two messages and the archive would not hold what was sent. Here
a line is one `Line`, and a message's text is exactly its last parameter.
Every step is a single left-to-right scan: no input can make parsing slower
than linear.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.model import MessageKind

ACTION = "\x01ACTION"
CTCP = "\x01"
# IRCv3 message-tags escaping: `\:` is `;`, `\s` a space, `\\` a backslash, `\r` and `\n` CR and LF.
_TAG_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


@dataclass(frozen=True)
class Line:
    tags: tuple[tuple[str, str], ...]
    source: str  # nick!user@host or a server name; "" when absent
    command: str  # upper case
    params: tuple[str, ...]

    def tag(self, key: str) -> str | None:
        """A tag's value ("" for a tag without one), or None when the line does not carry it."""
        for name, value in self.tags:
            if name == key:
                return value
        return None

    @property
    def nick(self) -> str:
        return self.source.partition("!")[0]


def parse_line(raw: str) -> Line | None:
    """Parse a line without its CRLF; None when it holds no command."""
    n, i = len(raw), 0
    tags: tuple[tuple[str, str], ...] = ()
    if raw.startswith("@"):
        end = _word_end(raw, 1)
        tags = tuple(_tag(item) for item in raw[1:end].split(";") if item)
        i = end
    i = _skip_spaces(raw, i)
    source = ""
    if i < n and raw[i] == ":":
        end = _word_end(raw, i + 1)
        source, i = raw[i + 1 : end], _skip_spaces(raw, end)
    end = _word_end(raw, i)
    command = raw[i:end].upper()
    if not command:
        return None
    params: list[str] = []
    i = _skip_spaces(raw, end)
    while i < n:
        if raw[i] == ":":
            params.append(raw[i + 1 :])
            break
        end = _word_end(raw, i)
        params.append(raw[i:end])
        i = _skip_spaces(raw, end)
    return Line(tags, source, command, tuple(params))


def message_kind(command: str, text: str) -> tuple[MessageKind, str]:
    """What a PRIVMSG or NOTICE text is, and the text to show.

    Only a CTCP ACTION that is the whole message is an emote (the closing
    `\\x01` may be missing, as many clients send it); anything else, CTCP
    delimiters included, is one message with its text exactly as sent.
    """
    if command == "NOTICE":
        return "notice", text
    if text.startswith(ACTION) and (len(text) == len(ACTION) or text[len(ACTION)] == " "):
        body = text[len(ACTION) + 1 :]
        if body.endswith(CTCP):
            body = body[:-1]
        if CTCP not in body:
            return "emote", body
    return "text", text


def _word_end(raw: str, i: int) -> int:
    end = raw.find(" ", i)
    return len(raw) if end < 0 else end


def _skip_spaces(raw: str, i: int) -> int:
    while i < len(raw) and raw[i] == " ":
        i += 1
    return i


def _tag(item: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    if "\\" not in value:
        return key, value
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch == "\\":
            # A trailing lone backslash is dropped, as the spec says.
            escaped = next(chars, "")
            out.append(_TAG_ESCAPES.get(escaped, escaped))
        else:
            out.append(ch)
    return key, "".join(out)
