"""What an `Outbound` looks like as IRC lines.

IRC has one relay nick, so every line names its sender through a template.
One line of the source message is one IRC line (plus continuations when it is
too long); IRC has no edits, so an edit becomes a single correction line.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.model import Attachment, Outbound
from bridge.text import Text
from connectors.irc.format import render
from connectors.irc.split import frame


@dataclass(frozen=True)
class Templates:
    line: str = "<{name}> {text}"
    emote: str = "* {name} {text}"
    edit: str = "* {name}: {text}"


def payloads(out: Outbound, templates: Templates, budget: int) -> list[str]:
    """The PRIVMSG texts for `out`, each at most `budget` UTF-8 bytes; none for a delete."""
    if out.kind == "delete":
        return []
    bodies = [render(line) for line in out.text.lines() if line.plain.strip()]
    bodies.extend(render(Text.of(attachment_line(att))) for att in out.attachments)
    if out.kind == "edit":
        template, bodies = templates.edit, [" ".join(bodies)] if bodies else []
    elif out.message_kind == "emote":
        template = templates.emote
    else:
        template = templates.line
    name = out.sender.display_name or out.sender.name
    return [line for body in bodies for line in frame(template, name, body, budget)]


def notice_payloads(text: str, budget: int) -> list[str]:
    """A notice from the bridge itself: plain text, one NOTICE per line, split to fit."""
    bodies = [render(Text.of(line)) for line in text.splitlines() if line.strip()]
    return [line for body in bodies for line in frame("{text}", "", body, budget)]


def attachment_line(att: Attachment) -> str:
    """IRC carries no files: a line naming the file, with its link when one is fetchable."""
    size = f"{att.size / 1024:.0f} KB" if att.size >= 1024 else f"{att.size} bytes"
    link = f" {att.url}" if att.url.startswith(("https://", "http://")) else ""
    return f"[file] {att.name} ({att.mimetype}, {size}){link}"
