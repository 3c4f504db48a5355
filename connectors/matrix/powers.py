"""Who may notify a whole room, or delete others' messages: the room's power levels.

Synapse only lets `@room` ping people when the sender's power level reaches
`notifications.room` (50 unless the room says otherwise); from room version 12
on, the room's creators outrank every level. The bridge applies
the same rule before turning an `@room` into a broadcast on another network,
or anyone could ping a whole Slack channel from a room where they may not.

A redaction of someone else's event takes effect only when its sender's level
reaches `redact` (50 by default), yet the homeserver pushes the bridge every
redaction it accepted, including ones it will never apply (the auth rules let
a server's users send them for its other users' events, to be rechecked
later). The bridge relays such a delete only from those the room lets redact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_ROOM_NOTIFY = 50  # the spec's default for notifications.room
DEFAULT_REDACT = 50  # the spec's default for redact


@dataclass(frozen=True)
class RoomPowers:
    levels: Mapping[str, Any]  # the m.room.power_levels content
    creators: frozenset[str] = frozenset()  # creators who outrank every level (room v12 and later)

    def may_notify_room(self, user: str) -> bool:
        return user in self.creators or may_notify_room(self.levels, user)

    def may_redact_others(self, user: str) -> bool:
        return user in self.creators or may_redact_others(self.levels, user)


def privileged_creators(create: Mapping[str, Any]) -> frozenset[str]:
    """The users an `m.room.create` event makes all-powerful: none before room version 12."""
    content = create.get("content")
    content = content if isinstance(content, Mapping) else {}
    version = str(content.get("room_version", "1"))
    if version.isdigit() and int(version) < 12:
        return frozenset()
    extra = content.get("additional_creators")
    extra = [u for u in extra if isinstance(u, str)] if isinstance(extra, list) else []
    return frozenset([str(create.get("sender", "")), *extra]) - {""}


def may_notify_room(levels: Mapping[str, Any], user: str) -> bool:
    notifications = levels.get("notifications")
    needed = notifications.get("room") if isinstance(notifications, Mapping) else None
    return _user_level(levels, user) >= _level(needed, DEFAULT_ROOM_NOTIFY)


def may_redact_others(levels: Mapping[str, Any], user: str) -> bool:
    return _user_level(levels, user) >= _level(levels.get("redact"), DEFAULT_REDACT)


def _user_level(levels: Mapping[str, Any], user: str) -> int:
    users = levels.get("users")
    level = users.get(user) if isinstance(users, Mapping) else None
    if level is None:
        level = levels.get("users_default", 0)
    return _level(level, 0)


def mentions_room(content: Mapping[str, Any]) -> bool:
    """Whether a message (or its edit's new content) intends to notify the whole room."""
    return any(_room_flag(c) for c in (content, content.get("m.new_content")) if isinstance(c, Mapping))


def without_room_mention(content: Mapping[str, Any]) -> dict[str, Any]:
    """The content with its room mention (and its edit's) taken back: `@room` stays plain text."""
    out = _unflagged(content)
    new = content.get("m.new_content")
    if isinstance(new, Mapping):
        out["m.new_content"] = _unflagged(new)
    return out


def _room_flag(content: Mapping[str, Any]) -> bool:
    mentions = content.get("m.mentions")
    return isinstance(mentions, Mapping) and mentions.get("room") is True


def _unflagged(content: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(content)
    mentions = content.get("m.mentions")
    if isinstance(mentions, Mapping):
        out["m.mentions"] = {k: v for k, v in mentions.items() if k != "room"}
    return out


def _level(value: Any, default: int) -> int:
    # Power levels are integers; old rooms may hold them as strings.
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
