"""Matrix room events → `bridge.model` events.

Pure functions over the event JSON the homeserver pushes. A malformed event
raises (KeyError, TypeError, ValueError); the caller skips it. HTML that cannot
be read never costs the event: it is converted from its plain body, flagged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bridge.model import Attachment, Delete, Edit, Event, Message, MessageKind, RemoteUser
from bridge.text import Text
from connectors.matrix.format import FormatError, parse_content
from connectors.matrix.ghosts import Ghosts

MESSAGE_KINDS: dict[str, MessageKind] = {"m.text": "text", "m.emote": "emote", "m.notice": "notice"}
MEDIA_MSGTYPES = frozenset({"m.image", "m.file", "m.audio", "m.video"})


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
        if kind == "m.room.redaction":
            content = event.get("content")
            content = content if isinstance(content, Mapping) else {}
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
        return None

    def _message(
        self, event: Mapping[str, Any], sender: str, attachments: tuple[Attachment, ...]
    ) -> Event | None:
        content = event["content"]
        if not isinstance(content, Mapping):
            raise TypeError("content is not an object")
        relates = content.get("m.relates_to")
        relates = relates if isinstance(relates, Mapping) else {}
        if relates.get("rel_type") == "m.replace":
            new = content.get("m.new_content")
            if not isinstance(new, Mapping):
                raise ValueError("edit without m.new_content")
            return Edit(
                network=self.network,
                room=_str(event, "room_id"),
                native_id=_str(event, "event_id"),
                sender=self._user(sender),
                target_native_id=_str(relates, "event_id"),
                text=parse_content(
                    new, network=self.network, ghosts=self.ghosts, reply=False, html=self.html
                ),
                occurred_at=_occurred_at(event),
            )
        msgtype = content.get("msgtype")
        if msgtype in MEDIA_MSGTYPES:
            kind: MessageKind = "text"
            text = _caption(content, network=self.network, ghosts=self.ghosts, html=self.html)
        elif msgtype in MESSAGE_KINDS:
            kind = MESSAGE_KINDS[msgtype]
            text = None
        else:
            return None  # locations, polls, verification requests …
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
        )

    def _user(self, mxid: str) -> RemoteUser:
        return RemoteUser(self.network, mxid, mxid)


def media_ref(event: Mapping[str, Any]) -> MediaRef | None:
    """The file of a file message (not an edit), if the event has one we can fetch."""
    content = event.get("content")
    if event.get("type") != "m.room.message" or not isinstance(content, Mapping):
        return None
    relates = content.get("m.relates_to")
    if isinstance(relates, Mapping) and relates.get("rel_type") == "m.replace":
        return None
    url = content.get("url")  # encrypted files carry `file` instead; this bridge has no keys
    if (
        content.get("msgtype") not in MEDIA_MSGTYPES
        or not isinstance(url, str)
        or not url.startswith("mxc://")
    ):
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
