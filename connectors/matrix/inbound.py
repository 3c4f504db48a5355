"""Matrix room events → `bridge.model` events.

Pure functions over the event JSON the homeserver pushes. A malformed event
raises (KeyError, TypeError, ValueError); the caller skips it. HTML that cannot
be read never costs the event: it is converted from its plain body, flagged.

Anything a person can send is a record: besides text, media and edits, locations,
stickers, reactions, polls and message types this bridge does not know become
events too, with the whole native content kept for the archive (`Message.native`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bridge.model import Attachment, Delete, Edit, Event, Message, MessageKind, Reaction, RemoteUser
from bridge.text import Text, TextBuilder
from connectors.matrix.format import FormatError, parse_content
from connectors.matrix.ghosts import Ghosts
from connectors.matrix.polls import end_text, poll_part, response_text, start_text

MESSAGE_KINDS: dict[str, MessageKind] = {"m.text": "text", "m.emote": "emote", "m.notice": "notice"}
MEDIA_MSGTYPES = frozenset({"m.image", "m.file", "m.audio", "m.video"})
# What the media repository can serve: mxc://<server name>/<media id> (media ids are [A-Za-z0-9_-]).
MXC_URL = re.compile(r"mxc://[A-Za-z0-9.:\[\]-]+/[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class MediaRef:
    """A file a message points at, still on the homeserver."""

    url: str  # mxc://server/id
    name: str
    mimetype: str
    size: int


@dataclass(frozen=True)
class Inbound:
    """Converts one network's events; knows who is ours so echoes are dropped."""

    network: str
    ghosts: Ghosts
    bot: str
    html: bool = True  # read formatted_body; False once it was refused

    def is_ours(self, mxid: str) -> bool:
        return mxid == self.bot or self.ghosts.owns(mxid)

    def convert(self, event: Mapping[str, Any], attachments: tuple[Attachment, ...] = ()) -> Event | None:
        """The bridge event for a room event, or None when it is nothing to relay."""
        try:
            return self._convert(event, attachments)
        except FormatError:
            plain = replace(self, html=False)._convert(event, attachments)
            return None if plain is None else replace(plain, flags=(*plain.flags, "format_fallback"))

    def _convert(self, event: Mapping[str, Any], attachments: tuple[Attachment, ...]) -> Event | None:
        sender = _str(event, "sender")
        if self.is_ours(sender):
            return None  # our own posts, pushed back to us
        kind = event.get("type")
        if kind == "m.room.message":
            return self._message(event, sender, attachments)
        if kind == "m.sticker":
            return self._whole(event, sender, attachments)
        if kind == "m.reaction":
            return self._reaction(event, sender)
        part = poll_part(kind)
        if part is not None:
            return self._poll(event, sender, part)
        if kind == "m.room.redaction":
            content = _mapping(event.get("content"))
            # Room v11 moved `redacts` into the content.
            target = content.get("redacts") or event.get("redacts")
            if not isinstance(target, str):
                raise ValueError("redaction without a target")
            return Delete(
                network=self.network,
                room=_str(event, "room_id"),
                native_id=_str(event, "event_id"),
                sender=self._user(sender),
                target_native_id=target,
                occurred_at=_occurred_at(event),
            )
        if isinstance(kind, str) and "state_key" not in event:
            # Something a person sent that the bridge cannot read or show (an encrypted
            # message, a call, a type of tomorrow): archived whole, relayed nowhere, flagged.
            flag = "encrypted" if kind == "m.room.encrypted" else "unknown_event"
            return self._whole(event, sender, flags=(flag,))
        return None  # room state (names, topics, members, power levels): the room's, not a message

    def _message(
        self, event: Mapping[str, Any], sender: str, attachments: tuple[Attachment, ...]
    ) -> Event | None:
        content = event["content"]
        if not isinstance(content, Mapping):
            raise TypeError("content is not an object")
        relates = content.get("m.relates_to")
        relates = relates if isinstance(relates, Mapping) else {}
        if relates.get("rel_type") == "m.replace":
            return self._edit(event, sender, content, relates)
        msgtype = content.get("msgtype")
        msgtype = msgtype if isinstance(msgtype, str) else ""  # a list or object is just unknown
        kind: MessageKind = "text"
        text: Text | None = None
        native: Mapping[str, Any] | None = None
        flags: tuple[str, ...] = ()
        if msgtype in MEDIA_MSGTYPES:
            text = _caption(content, network=self.network, ghosts=self.ghosts, html=self.html)
        elif msgtype in MESSAGE_KINDS:
            kind = MESSAGE_KINDS[msgtype]
        elif msgtype == "m.location":
            text, native = _location(content), _native(event)
        else:  # a type this bridge does not know: its body is what every client shows
            flags, native = ("unknown_msgtype",), _native(event)
        thread_id = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        reply_to = None
        # In a thread, a "falling back" in_reply_to only points at the latest thread event.
        if not relates.get("is_falling_back"):
            in_reply_to = relates.get("m.in_reply_to")
            if isinstance(in_reply_to, Mapping) and isinstance(in_reply_to.get("event_id"), str):
                reply_to = in_reply_to["event_id"]
        if text is None:
            text = parse_content(
                content, network=self.network, ghosts=self.ghosts, reply=reply_to is not None, html=self.html
            )
        return Message(
            network=self.network,
            room=_str(event, "room_id"),
            native_id=_str(event, "event_id"),
            sender=self._user(sender),
            text=text,
            occurred_at=_occurred_at(event),
            kind=kind,
            reply_to=reply_to,
            thread_id=thread_id if isinstance(thread_id, str) else None,
            attachments=attachments,
            flags=flags,
            native=native,
            relay=bool(text or attachments),
        )

    def _edit(
        self, event: Mapping[str, Any], sender: str, content: Mapping[str, Any], relates: Mapping[str, Any]
    ) -> Edit:
        new = content.get("m.new_content")
        flags: tuple[str, ...] = ()
        if not isinstance(new, Mapping):
            # Only the fallback (`* new text`) came: it is still the sender's word on record.
            body = content.get("body")
            new = {"body": body.removeprefix("* ") if isinstance(body, str) else ""}
            flags = ("edit_fallback",)
        return Edit(
            network=self.network,
            room=_str(event, "room_id"),
            native_id=_str(event, "event_id"),
            sender=self._user(sender),
            target_native_id=_str(relates, "event_id"),
            text=parse_content(new, network=self.network, ghosts=self.ghosts, reply=False, html=self.html),
            occurred_at=_occurred_at(event),
            flags=flags,
        )

    def _whole(
        self,
        event: Mapping[str, Any],
        sender: str,
        attachments: tuple[Attachment, ...] = (),
        flags: tuple[str, ...] = (),
    ) -> Message:
        """An event with no text of its own, kept whole; relayed only as its files (a sticker)."""
        return Message(
            network=self.network,
            room=_str(event, "room_id"),
            native_id=_str(event, "event_id"),
            sender=self._user(sender),
            text=Text(),
            occurred_at=_occurred_at(event),
            attachments=attachments,
            flags=flags,
            native=_native(event),
            relay=bool(attachments),
        )

    def _reaction(self, event: Mapping[str, Any], sender: str) -> Reaction:
        relates = _mapping(_mapping(event.get("content")).get("m.relates_to"))
        key = relates.get("key")
        if relates.get("rel_type") != "m.annotation" or not isinstance(key, str):
            raise ValueError("a reaction without an annotation key")
        return Reaction(
            network=self.network,
            room=_str(event, "room_id"),
            native_id=_str(event, "event_id"),
            sender=self._user(sender),
            target_native_id=_str(relates, "event_id"),
            key=key,
            occurred_at=_occurred_at(event),
        )

    def _poll(self, event: Mapping[str, Any], sender: str, part: str) -> Message | Edit:
        """A poll's question and answers, or its end, as text; a vote is archived only."""
        content = _mapping(event.get("content"))
        relates = _mapping(content.get("m.relates_to"))
        new = content.get("m.new_content")
        if part == "start" and relates.get("rel_type") == "m.replace" and isinstance(new, Mapping):
            return Edit(  # a poll changed before anyone voted
                network=self.network,
                room=_str(event, "room_id"),
                native_id=_str(event, "event_id"),
                sender=self._user(sender),
                target_native_id=_str(relates, "event_id"),
                text=Text.of(start_text(new)),
                occurred_at=_occurred_at(event),
            )
        start = relates.get("event_id")
        text = {"start": start_text, "response": response_text, "end": end_text}[part](content)
        return Message(
            network=self.network,
            room=_str(event, "room_id"),
            native_id=_str(event, "event_id"),
            sender=self._user(sender),
            text=Text.of(text),
            occurred_at=_occurred_at(event),
            reply_to=start if part != "start" and isinstance(start, str) else None,
            flags=("poll_response",) if part == "response" else (),
            native=_native(event),
            # Each vote relayed would be noise (and would show votes of an undisclosed poll).
            relay=part != "response",
        )

    def _user(self, mxid: str) -> RemoteUser:
        return RemoteUser(self.network, mxid, mxid)


def media_ref(event: Mapping[str, Any]) -> MediaRef | None:
    """The file of a file message (not an edit), if the event has one we can fetch."""
    content = event.get("content")
    if not isinstance(content, Mapping):
        return None
    if event.get("type") == "m.room.message":
        relates = content.get("m.relates_to")
        if isinstance(relates, Mapping) and relates.get("rel_type") == "m.replace":
            return None
        if content.get("msgtype") not in MEDIA_MSGTYPES:
            return None
    elif event.get("type") != "m.sticker":
        return None
    url = content.get("url")  # encrypted files carry `file` instead; this bridge has no keys
    if not isinstance(url, str) or not url.startswith("mxc://"):
        return None
    info = content.get("info")
    info = info if isinstance(info, Mapping) else {}
    name = content.get("filename") or content.get("body") or "file"
    size = info.get("size")
    return MediaRef(
        url=url,
        name=str(name),
        mimetype=str(info.get("mimetype") or "application/octet-stream"),
        size=size if isinstance(size, int) and size >= 0 else 0,
    )


def _caption(content: Mapping[str, Any], *, network: str, ghosts: Ghosts, html: bool) -> Text:
    # Since Matrix 1.10 `body` is a caption when `filename` is set and differs; else it is the name.
    filename = content.get("filename")
    if isinstance(filename, str) and filename and content.get("body") != filename:
        return parse_content(content, network=network, ghosts=ghosts, reply=False, html=html)
    return Text()


def _location(content: Mapping[str, Any]) -> Text:
    """The location's description, then its `geo:` URI as a link (where the network allows one)."""
    body = content.get("body")
    body = body.strip() if isinstance(body, str) else ""
    geo = content.get("geo_uri")
    b = TextBuilder()
    b.append(body)
    if isinstance(geo, str) and geo.startswith("geo:") and geo not in body:
        if body:
            b.append("\n")
        start = b.length
        b.append(geo)
        b.add_span("link", start, url=geo)
    return b.build()


def _native(event: Mapping[str, Any]) -> dict[str, Any]:
    """What the archive keeps of an event the text shows only in part: its type and content."""
    return {"type": event.get("type"), "content": event.get("content")}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def _occurred_at(event: Mapping[str, Any]) -> datetime:
    ts = event["origin_server_ts"]
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise TypeError("origin_server_ts is not an integer")
    return datetime.fromtimestamp(ts / 1000, tz=UTC)
