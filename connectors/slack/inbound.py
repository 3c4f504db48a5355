"""Slack events (the `event` of an Events API payload) as `bridge.model` events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.model import Attachment, Delete, Edit, Event, Message, Reaction, RemoteUser
from bridge.text import Text
from connectors.slack.emoji import emoji
from connectors.slack.files import Files
from connectors.slack.format import mentioned_users, parse, unnamed_channels
from connectors.slack.names import NameCache, user_display

# Message subtypes that are something a person (or another app) said; the rest
# (channel_join, channel_topic, pinned_item, ...) are Slack's own notices.
SAID = frozenset({None, "thread_broadcast", "file_share", "me_message", "bot_message"})
# Slack's own notices of membership and housekeeping, which nobody typed. Any other subtype
# (a topic set, an item pinned, one Slack invents next year) is archived, not relayed.
NOTICES = frozenset(
    {
        "channel_join", "channel_leave", "group_join", "group_leave", "channel_archive",
        "channel_unarchive", "group_archive", "group_unarchive", "bot_add", "bot_remove",
        "message_replied", "ekm_access_denied", "channel_convert_to_private", "channel_convert_to_public", "tombstone",
    }
)  # fmt: skip
REACTIONS = {"reaction_added": False, "reaction_removed": True}  # event type → removed
SLACKBOT = "USLACKBOT"


@dataclass(frozen=True)
class Me:
    """The bridge's own bot on this workspace, from auth.test."""

    user_id: str
    bot_id: str
    team_id: str = ""

    def wrote(self, message: Mapping[str, Any]) -> bool:
        """Whether `message` is one of our own posts coming back."""
        return bool(
            (self.bot_id and message.get("bot_id") == self.bot_id)
            or (self.user_id and message.get("user") == self.user_id)
        )


class Inbound:
    def __init__(self, network: str, me: Me, users: NameCache, channels: NameCache, files: Files) -> None:
        self.network = network
        self.me = me
        self.users = users
        self.channels = channels
        self.files = files

    async def convert(self, event: Mapping[str, Any]) -> Event | None:
        """The bridge event for one Slack event, or None when there is nothing to relay."""
        kind = event.get("type")
        if kind == "user_change":
            user = event.get("user")
            if isinstance(user, Mapping) and isinstance(user.get("id"), str):
                self.users.put(user["id"], user_display(user))
            return None
        if kind in REACTIONS:
            return await self._reaction(event, REACTIONS[kind])
        channel = event.get("channel")
        if kind != "message" or not isinstance(channel, str):
            return None
        subtype = event.get("subtype")
        if subtype == "message_changed":
            return await self._changed(event, channel)
        if subtype == "message_deleted":
            return await self._deleted(event, channel)
        ts = event.get("ts")
        if subtype in NOTICES or self.me.wrote(event) or not isinstance(ts, str) or not ts:
            return None  # without a ts a message has no identity: it could not be deduplicated
        return await self._message(event, channel)

    async def _message(self, event: Mapping[str, Any], channel: str) -> Message | None:
        sender = await self._sender(event)
        if sender is None:
            return None
        ts = event["ts"]
        said = event.get("subtype") in SAID
        text = await self._text(event.get("text") or (_shared_text(event) if said else None))
        files = event.get("files")
        attachments: list[Attachment] = []
        if isinstance(files, list):
            for f in files:
                if isinstance(f, Mapping):
                    attachments.append(await self.files.attachment(f))
        thread_ts = event.get("thread_ts")
        return Message(
            network=self.network,
            room=channel,
            native_id=ts,
            sender=sender,
            text=text,
            occurred_at=_time(ts),
            kind="emote" if event.get("subtype") == "me_message" else "text",
            thread_id=thread_ts if isinstance(thread_ts, str) and thread_ts != ts else None,
            attachments=tuple(attachments),
            flags=() if said else ("slack_subtype",),
            # Kept whole where the text may not be all of it (blocks, a forward, a new subtype).
            native=None if said and (event.get("text") or attachments) else dict(event),
            relay=said and bool(text or attachments),
        )

    async def _reaction(self, event: Mapping[str, Any], removed: bool) -> Reaction | None:
        """A reaction to a message; Slack names no reaction id, so the event's time is its id."""
        item = event.get("item")
        item = item if isinstance(item, Mapping) else {}
        channel, target, name = item.get("channel"), item.get("ts"), event.get("reaction")
        native_id = _event_ts(event)
        if item.get("type") != "message" or not all(isinstance(v, str) for v in (channel, target, name)):
            return None  # reactions to files and file comments belong to no bridged message
        if self.me.wrote(event) or not native_id:
            return None
        sender = await self._sender(event)
        if sender is None:
            return None
        return Reaction(
            network=self.network,
            room=channel,
            native_id=f"reaction/{native_id}",
            sender=sender,
            target_native_id=target,
            key=emoji(name),
            occurred_at=_time(native_id),
            removed=removed,
        )

    async def _changed(self, event: Mapping[str, Any], channel: str) -> Event | None:
        new = event.get("message")
        previous = event.get("previous_message")
        previous = previous if isinstance(previous, Mapping) else {}
        if not isinstance(new, Mapping) or self.me.wrote(new) or self.me.wrote(previous):
            return None
        target = new.get("ts")
        native_id = _event_ts(event)
        if not isinstance(target, str) or not native_id:
            return None
        if new.get("subtype") == "tombstone":
            # A thread parent deleted while it has replies stays as a tombstone.
            return Delete(
                network=self.network,
                room=channel,
                native_id=native_id,
                sender=await self._sender(previous) or RemoteUser(self.network, SLACKBOT, "Slackbot"),
                target_native_id=target,
                occurred_at=_time(native_id),
                moderator=True,  # Slack reports only deletions it allowed: the author's or an admin's
            )
        if previous and new.get("text") == previous.get("text"):
            return None  # link unfurls, reply counts, pins: the words did not change
        sender = await self._sender(new)
        if sender is None:
            return None
        return Edit(
            network=self.network,
            room=channel,
            native_id=native_id,
            sender=sender,
            target_native_id=target,
            text=await self._text(new.get("text")),
            occurred_at=_time(native_id),
        )

    async def _deleted(self, event: Mapping[str, Any], channel: str) -> Delete | None:
        previous = event.get("previous_message")
        previous = previous if isinstance(previous, Mapping) else {}
        target = event.get("deleted_ts")
        native_id = _event_ts(event)
        if self.me.wrote(previous) or not isinstance(target, str) or not native_id:
            return None
        return Delete(
            network=self.network,
            room=channel,
            native_id=native_id,
            sender=await self._sender(previous) or RemoteUser(self.network, SLACKBOT, "Slackbot"),
            target_native_id=target,
            occurred_at=_time(native_id),
            moderator=True,  # Slack reports only deletions it allowed: the author's or an admin's
        )

    async def _sender(self, message: Mapping[str, Any]) -> RemoteUser | None:
        user = message.get("user")
        if isinstance(user, str) and user:
            return RemoteUser(self.network, user, await self.users.get(user))
        bot = message.get("bot_id")
        if isinstance(bot, str) and bot:
            # Another app's post: it names itself per message.
            profile = message.get("bot_profile")
            name = message.get("username") or (profile.get("name") if isinstance(profile, Mapping) else None)
            return RemoteUser(self.network, bot, name if isinstance(name, str) and name else bot)
        return None

    async def _text(self, wire: Any) -> Text:
        if not isinstance(wire, str) or not wire:
            return Text()
        await self.users.prefetch(mentioned_users(wire))
        await self.channels.prefetch(unnamed_channels(wire))
        return parse(wire, self.network, self.users.known, self.channels.known)


def _shared_text(event: Mapping[str, Any]) -> str | None:
    """The words of a message that has no `text` of its own (a forward, a share): its
    attachments' text or fallbacks, one per line."""
    parts = []
    for a in event.get("attachments") or ():
        if isinstance(a, Mapping):
            words = a.get("text") or a.get("fallback")
            if isinstance(words, str) and words:
                parts.append(words)
    return "\n".join(parts) or None


def _event_ts(event: Mapping[str, Any]) -> str:
    value = event.get("event_ts") or event.get("ts")
    return value if isinstance(value, str) else ""


def _time(ts: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (TypeError, ValueError, OverflowError):
        return datetime.now(UTC)
