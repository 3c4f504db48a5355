"""Slack's wire text: the `&`/`<`/`>` escaping, control sequences and rich_text blocks.

Slack sends message text in "mrkdwn wire form": only `&`, `<` and `>` are escaped, and
everything inside `<...>` is a control sequence (`<@U123>`, `<#C123|name>`, `<!here>`,
`<https://x|label>`). Tests that fake a Slack user must produce that form exactly, so
`validate_wire_text` rejects what Slack could never send.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

# One token of wire text: a control sequence, one of the three entities, or a bare
# special character (which Slack itself would never emit).
_TOKEN = re.compile(r"(<[^<>]+>)|(&(?:amp|lt|gt);)|([<>&])")
_ENTITY = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}


def escape(text: str) -> str:
    """Escape plain text the way Slack does: `&`, `<`, `>` and nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return re.sub(r"&(?:amp|lt|gt);", lambda m: _ENTITY[m.group(0)], text)


def wire_text_problems(text: str) -> list[str]:
    """Bare `&`, `<` or `>` that are not part of an entity or a control sequence."""
    return [
        f"bare {m.group(3)!r} at offset {m.start()}" for m in _TOKEN.finditer(text) if m.group(3) is not None
    ]


def validate_wire_text(text: str) -> None:
    """Raise ValueError unless `text` is something Slack could put in an event."""
    problems = wire_text_problems(text)
    if problems:
        raise ValueError(
            f"not Slack wire text ({'; '.join(problems)}): escape with tests.fakes.slack.escape(): {text!r}"
        )


def normalize_wire_text(text: str) -> str:
    """What Slack stores for text an API client posted: stray specials get escaped."""

    def fix(m: re.Match[str]) -> str:
        if m.group(3) is not None:
            return escape(m.group(3))
        return m.group(0)

    return _TOKEN.sub(fix, text)


def _sequence_element(inner: str) -> dict[str, Any]:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return {"type": "user", "user_id": target[1:]}
    if target.startswith("#"):
        return {"type": "channel", "channel_id": target[1:]}
    if target.startswith("!subteam^"):
        return {"type": "usergroup", "usergroup_id": target[len("!subteam^") :]}
    if target in ("!here", "!channel", "!everyone"):
        return {"type": "broadcast", "range": target[1:]}
    if target.startswith("!"):
        # <!date^...|fallback> and friends: clients show the fallback text.
        return {"type": "text", "text": unescape(label or target)}
    element: dict[str, Any] = {"type": "link", "url": unescape(target)}
    if label:
        element["text"] = unescape(label)
    return element


def rich_text_blocks(text: str) -> list[dict[str, Any]]:
    """The `rich_text` block Slack attaches to a message typed in a client.

    Styles (`*bold*`) are not parsed; mentions, links and broadcasts are, because
    connectors that read blocks instead of `text` depend on those elements.
    """
    if not text:
        return []
    elements: list[dict[str, Any]] = []
    pos = 0
    for m in re.finditer(r"<([^<>]+)>", text):
        if m.start() > pos:
            elements.append({"type": "text", "text": unescape(text[pos : m.start()])})
        elements.append(_sequence_element(m.group(1)))
        pos = m.end()
    if pos < len(text):
        elements.append({"type": "text", "text": unescape(text[pos:])})
    return [
        {
            "type": "rich_text",
            "block_id": secrets.token_urlsafe(4)[:5],
            "elements": [{"type": "rich_text_section", "elements": elements}],
        }
    ]


def display_text(
    text: str,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
) -> str:
    """What a person reading Slack sees for wire `text` (mentions resolved, entities decoded)."""
    users = users or {}
    channels = channels or {}

    def render(m: re.Match[str]) -> str:
        target, _, label = m.group(1).partition("|")
        if target.startswith("@"):
            return "@" + users.get(target[1:], label or target[1:])
        if target.startswith("#"):
            return "#" + (label or channels.get(target[1:], target[1:]))
        if target in ("!here", "!channel", "!everyone"):
            return "@" + target[1:]
        if target.startswith("!"):
            return label or target
        return label or target.removeprefix("mailto:")

    return unescape(re.sub(r"<([^<>]+)>", render, text))
