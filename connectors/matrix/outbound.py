"""`bridge.model.Outbound` → Matrix event content."""

from __future__ import annotations

import hashlib
from typing import Any

from bridge.model import Attachment, MessageKind, Outbound
from bridge.text import BROADCASTS, Text
from connectors.matrix.format import HTML_FORMAT, render
from connectors.matrix.ghosts import Ghosts

MSGTYPES: dict[MessageKind, str] = {"text": "m.text", "emote": "m.emote", "notice": "m.notice"}


def txn_id(key: str, part: str = "") -> str:
    """A transaction id derived from the delivery key, so a retried send never posts twice."""
    return "sb" + hashlib.sha256(f"{key}\0{part}".encode()).hexdigest()[:40]


def text_content(text: Text, msgtype: str, *, network: str, ghosts: Ghosts) -> dict[str, Any]:
    body, formatted = render(text, network=network, ghosts=ghosts)
    content: dict[str, Any] = {"msgtype": msgtype, "body": body}
    if formatted is not None:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = formatted
    # Always present, so clients ping exactly the mentioned users and never match
    # bridged words like "@room" against push rules.
    mentions: dict[str, Any] = {"user_ids": mentioned(text, network=network, ghosts=ghosts)}
    if any(span.user in BROADCASTS for span in text.mentions()):
        # Matrix's only broadcast; the text still says which one (`@here`, `@channel`).
        mentions["room"] = True
    content["m.mentions"] = mentions
    return content


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
    new = text_content(out.text, MSGTYPES[out.message_kind], network=network, ghosts=ghosts)
    # Clients without edit support show the fallback: the new text marked with `* `.
    content = {key: value for key, value in new.items() if key != "m.mentions"}
    content["body"] = "* " + new["body"]
    if "formatted_body" in new:
        content["formatted_body"] = "* " + new["formatted_body"]
    content["m.mentions"] = {}  # an edit must not ping everyone mentioned again
    content["m.new_content"] = new
    content["m.relates_to"] = {"rel_type": "m.replace", "event_id": out.target_native_id}
    return content


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
