"""`bridge.model.Outbound` → Matrix event content."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bridge.model import Attachment, MessageKind, Outbound
from bridge.text import BROADCASTS, Text
from connectors.matrix.format import HTML_FORMAT, render
from connectors.matrix.ghosts import Ghosts

MSGTYPES: dict[MessageKind, str] = {"text": "m.text", "emote": "m.emote", "notice": "m.notice"}
# A homeserver refuses events over 65,536 bytes (the whole signed event); the text of one
# gets this much, leaving room for relations, mentions, signatures and hashes.
TEXT_BUDGET = 56_000
_ELLIPSIS = " …"


def txn_id(key: str, part: str = "") -> str:
    """A transaction id derived from the delivery key, so a retried send never posts twice."""
    return "sb" + hashlib.sha256(f"{key}\0{part}".encode()).hexdigest()[:40]


def text_content(
    text: Text, msgtype: str, *, network: str, ghosts: Ghosts, budget: int = TEXT_BUDGET
) -> dict[str, Any]:
    body, formatted = fitted(text, network=network, ghosts=ghosts, budget=budget)
    content: dict[str, Any] = {"msgtype": msgtype, "body": body}
    if formatted is not None:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = formatted
    # Always present, so clients ping exactly the mentioned users and never match
    # bridged words like "@room" against push rules.
    mentions: dict[str, Any] = {"user_ids": mentioned(text, network=network, ghosts=ghosts)}
    if any(span.broadcast and span.user in BROADCASTS for span in text.mentions()):
        # Matrix's only broadcast; the text still says which one (`@here`, `@channel`).
        mentions["room"] = True
    content["m.mentions"] = mentions
    return content


def fitted(text: Text, *, network: str, ghosts: Ghosts, budget: int) -> tuple[str, str | None]:
    """Body and HTML within `budget` bytes of JSON: the HTML goes first, then the text is cut
    short and marked so. The archive keeps the whole message either way."""
    body, formatted = render(text, network=network, ghosts=ghosts)
    if _json_bytes(body) + _json_bytes(formatted) <= budget:
        return body, formatted
    if _json_bytes(body) <= budget:
        return body, None
    keep = len(text.plain) * budget // _json_bytes(body)
    while keep > 0:
        body = render(text.slice(0, keep), network=network, ghosts=ghosts)[0] + _ELLIPSIS
        if _json_bytes(body) <= budget:
            return body, None
        keep = keep * 9 // 10
    return _ELLIPSIS.strip(), None


def _json_bytes(value: str | None) -> int:
    # What the homeserver counts: the event's JSON, so escapes count too.
    return 0 if value is None else len(json.dumps(value, ensure_ascii=False).encode())


def mentioned(text: Text, *, network: str, ghosts: Ghosts) -> list[str]:
    users = set()
    for span in text.mentions():
        if span.user.startswith("!"):  # a broadcast or a group is nobody's user id
            continue
        if span.network == network:
            users.add(span.user)
        else:
            try:
                users.add(ghosts.mxid(span.network, span.user))
            except ValueError:
                continue
    return sorted(users)


def message_content(out: Outbound, *, network: str, ghosts: Ghosts) -> dict[str, Any]:
    content = text_content(out.text, MSGTYPES[out.message_kind], network=network, ghosts=ghosts)
    if out.thread_native_id:
        # Clients without threads show a reply to the message answered (or to the root).
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": out.thread_native_id,
            "is_falling_back": out.reply_to_native_id is None,
            "m.in_reply_to": {"event_id": out.reply_to_native_id or out.thread_native_id},
        }
    elif out.reply_to_native_id:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": out.reply_to_native_id}}
    return content


def edit_content(out: Outbound, *, network: str, ghosts: Ghosts) -> dict[str, Any]:
    if not out.target_native_id:
        raise ValueError("an edit needs target_native_id")
    # The text goes in twice (the fallback and m.new_content), so each copy gets half the room.
    new = text_content(
        out.text, MSGTYPES[out.message_kind], network=network, ghosts=ghosts, budget=TEXT_BUDGET // 2
    )
    # Clients without edit support show the fallback: the new text marked with `* `.
    content = {key: value for key, value in new.items() if key != "m.mentions"}
    content["body"] = "* " + new["body"]
    if "formatted_body" in new:
        content["formatted_body"] = "* " + new["formatted_body"]
    content["m.mentions"] = {}  # an edit must not ping everyone mentioned again
    content["m.new_content"] = new
    content["m.relates_to"] = {"rel_type": "m.replace", "event_id": out.target_native_id}
    return content


def reaction_content(out: Outbound) -> dict[str, Any]:
    """An `m.reaction` annotating the destination's copy of the message; `text` is the key."""
    if not out.target_native_id:
        raise ValueError("a reaction needs target_native_id")
    return {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": out.target_native_id, "key": out.text.plain}
    }


def file_content(attachment: Attachment, mxc: str) -> dict[str, Any]:
    major = attachment.mimetype.split("/", 1)[0]
    msgtype = {"image": "m.image", "video": "m.video", "audio": "m.audio"}.get(major, "m.file")
    return {
        "msgtype": msgtype,
        "body": attachment.name,
        "filename": attachment.name,
        "url": mxc,
        "info": {"mimetype": attachment.mimetype, "size": attachment.size},
        "m.mentions": {},
    }
