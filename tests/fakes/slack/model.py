"""Workspace state of the Slack emulator and its rendering into Slack's JSON shapes."""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

_ALNUM = string.ascii_uppercase + string.digits


class TsClock:
    """Message timestamps: wall-clock seconds with six digits, strictly increasing.

    Slack's `ts` doubles as the message id, so two messages must never share one even
    when posted in the same microsecond.
    """

    def __init__(self) -> None:
        self._last_us = 0

    def next(self) -> str:
        now_us = int(time.time() * 1_000_000)
        self._last_us = max(self._last_us + 1, now_us)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"


class IdFactory:
    """Slack-looking ids (`U0A1B2C3D4`) that never collide with ids a test chose itself."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self.taken: set[str] = set()

    def new(self, prefix: str) -> str:
        while True:
            n = next(self._counter)
            digits = ""
            while n:
                n, r = divmod(n, 36)
                digits = _ALNUM[r] + digits
            candidate = prefix + "0" + digits.rjust(8, "0")
            if candidate not in self.taken:
                self.taken.add(candidate)
                return candidate

    def claim(self, value: str) -> str:
        if value in self.taken:
            raise ValueError(f"id {value} is already used in this workspace")
        self.taken.add(value)
        return value


def event_id() -> str:
    return "Ev" + "".join(secrets.choice(_ALNUM) for _ in range(10))


@dataclass
class User:
    id: str
    name: str
    real_name: str
    display_name: str
    # None means "the default avatar the emulator serves"; see Workspace.avatar().
    image_72: str | None = None
    email: str | None = None
    is_bot: bool = False
    bot_id: str | None = None
    is_admin: bool = False
    deleted: bool = False
    updated: int = field(default_factory=lambda: int(time.time()))


@dataclass
class Channel:
    id: str
    name: str
    members: list[str]
    creator: str
    is_private: bool = False
    is_archived: bool = False
    topic: str = ""
    purpose: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    # Top-level messages and thread replies together, in ts order.
    messages: list[Message] = field(default_factory=list)
    by_ts: dict[str, Message] = field(default_factory=dict)

    @property
    def channel_type(self) -> str:
        # Events say "group" for private channels even though their ids start with C now.
        return "group" if self.is_private else "channel"


@dataclass
class File:
    id: str
    name: str
    title: str
    mimetype: str
    user: str
    created: int
    data: bytes | None = None
    declared_length: int | None = None
    alt_txt: str | None = None
    upload_token: str | None = None
    completed: bool = False
    # channel id -> share entries ({"ts": ..., "thread_ts": ...})
    shares: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Message:
    """One Slack message. `user` is the author; for the bridge's posts it is the bot user."""

    channel: str
    ts: str
    text: str
    user: str | None = None
    bot_id: str | None = None
    app_id: str | None = None
    username: str | None = None
    icon_url: str | None = None
    icon_emoji: str | None = None
    subtype: str | None = None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    blocks: list[dict[str, Any]] | None = None
    attachments: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    file_ids: list[str] = field(default_factory=list)
    client_msg_id: str | None = None
    edited: dict[str, str] | None = None
    deleted: bool = False
    tombstone: bool = False
    # What the API client sent before Slack escaped stray `&<>`; None for fake users.
    raw_text: str | None = None
    previous_texts: list[str] = field(default_factory=list)
    reply_ts: list[str] = field(default_factory=list)
    # Reaction name → the users who reacted so, in order; a name leaves with its last user.
    reactions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def by_bot(self) -> bool:
        return self.bot_id is not None


@dataclass(frozen=True)
class TokenInfo:
    token: str
    kind: str  # "bot", "user" or "app"
    user_id: str | None


class Workspace:
    """Everything Slack knows about one team, plus rendering into API/event dicts."""

    def __init__(self, *, team_name: str, domain: str, bot_name: str, files_base: str) -> None:
        self.ids = IdFactory()
        self.clock = TsClock()
        self.team_id = self.ids.new("T")
        self.team_name = team_name
        self.domain = domain
        self.app_id = self.ids.new("A")
        self.files_base = files_base
        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.files: dict[str, File] = {}
        self.tokens: dict[str, TokenInfo] = {}
        self.revoked: set[str] = set()
        self.bot_id = self.ids.new("B")
        bot_user = self.add_user(bot_name, real_name=bot_name, is_bot=True, bot_id=self.bot_id)
        self.bot_user_id = bot_user.id

    # -- construction -------------------------------------------------------------

    def add_user(
        self,
        name: str,
        *,
        real_name: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
        user_id: str | None = None,
        image_72: str | None = None,
        is_admin: bool = False,
        is_bot: bool = False,
        bot_id: str | None = None,
    ) -> User:
        uid = self.ids.claim(user_id) if user_id else self.ids.new("U")
        user = User(
            id=uid,
            name=name,
            real_name=real_name if real_name is not None else name,
            display_name=display_name if display_name is not None else ("" if is_bot else name),
            image_72=image_72,
            email=email,
            is_bot=is_bot,
            bot_id=bot_id,
            is_admin=is_admin,
        )
        self.users[uid] = user
        return user

    def add_channel(
        self,
        name: str,
        members: list[str],
        *,
        channel_id: str | None = None,
        is_private: bool = False,
        topic: str = "",
        purpose: str = "",
    ) -> Channel:
        if any(c.name == name for c in self.channels.values()):
            raise ValueError(f"channel name {name!r} is taken")
        for uid in members:
            self.user(uid)
        cid = self.ids.claim(channel_id) if channel_id else self.ids.new("C")
        channel = Channel(
            id=cid,
            name=name,
            members=list(dict.fromkeys(members)),
            creator=members[0] if members else self.bot_user_id,
            is_private=is_private,
            topic=topic,
            purpose=purpose,
        )
        self.channels[cid] = channel
        return channel

    def new_token(self, kind: str, user_id: str | None, token: str | None = None) -> str:
        prefix = {"bot": "xoxb-", "user": "xoxp-", "app": "xapp-"}[kind]
        if token is None:
            token = prefix + secrets.token_hex(12)
        elif not token.startswith(prefix):
            raise ValueError(f"a {kind} token must start with {prefix}")
        self.tokens[token] = TokenInfo(token, kind, user_id)
        return token

    # -- lookups ------------------------------------------------------------------

    def avatar(self, user: User) -> str:
        return user.image_72 or f"{self.files_base}avatars/{user.id}_72.png"

    def user(self, user_id: str) -> User:
        try:
            return self.users[user_id]
        except KeyError:
            raise KeyError(f"no user {user_id} in the emulated workspace") from None

    def channel(self, ref: str) -> Channel:
        """A channel by id, or by name with or without `#` (tests find names easier)."""
        if ref in self.channels:
            return self.channels[ref]
        name = ref.removeprefix("#")
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        raise KeyError(f"no channel {ref!r} in the emulated workspace")

    def root_ts(self, channel: Channel, ts: str) -> str:
        """Slack files a reply to a reply under the thread's root."""
        msg = channel.by_ts.get(ts)
        if msg is not None and msg.is_reply and msg.thread_ts is not None:
            return msg.thread_ts
        return ts

    # -- messages -----------------------------------------------------------------

    def store(self, msg: Message) -> Message:
        channel = self.channels[msg.channel]
        channel.messages.append(msg)
        channel.by_ts[msg.ts] = msg
        if msg.is_reply and msg.thread_ts is not None:
            parent = channel.by_ts.get(msg.thread_ts)
            if parent is not None:
                # The first reply turns a message into a thread parent.
                parent.thread_ts = parent.ts
                parent.reply_ts.append(msg.ts)
        return msg

    def replies(self, channel: Channel, parent: Message) -> list[Message]:
        return [channel.by_ts[ts] for ts in parent.reply_ts if not channel.by_ts[ts].deleted]

    def message_dict(self, msg: Message, *, metadata: bool = False) -> dict[str, Any]:
        """A message as conversations.history, chat.* responses and events show it; its
        metadata only where asked for (`include_all_metadata`), as Slack lists it."""
        channel = self.channels[msg.channel]
        d: dict[str, Any] = {"type": "message"}
        if msg.tombstone:
            d.update(
                {
                    "subtype": "tombstone",
                    "text": "This message was deleted.",
                    "user": "USLACKBOT",
                    "hidden": True,
                    "ts": msg.ts,
                }
            )
        else:
            if msg.subtype:
                d["subtype"] = msg.subtype
            d["text"] = msg.text
            if msg.subtype != "bot_message" and msg.user:
                d["user"] = msg.user
            d["ts"] = msg.ts
            if msg.bot_id:
                d["bot_id"] = msg.bot_id
                d["app_id"] = msg.app_id
                if msg.username is not None:
                    d["username"] = msg.username
                icons = self._icons(msg)
                if icons:
                    d["icons"] = icons
                if msg.subtype != "bot_message":
                    d["bot_profile"] = self.bot_profile()
            if msg.client_msg_id:
                d["client_msg_id"] = msg.client_msg_id
            if msg.user and msg.subtype != "bot_message":
                d["team"] = self.team_id
            if msg.blocks:
                d["blocks"] = msg.blocks
            if msg.attachments:
                d["attachments"] = msg.attachments
            if metadata and msg.metadata:
                d["metadata"] = msg.metadata
            if msg.file_ids:
                d["files"] = [self.file_dict(self.files[f]) for f in msg.file_ids]
                d["upload"] = False
                d["display_as_bot"] = False
            if msg.edited:
                d["edited"] = dict(msg.edited)
            if msg.reactions:
                d["reactions"] = [
                    {"name": name, "users": list(users), "count": len(users)}
                    for name, users in msg.reactions.items()
                ]
        if msg.thread_ts is not None:
            d["thread_ts"] = msg.thread_ts
            if msg.is_reply:
                parent = channel.by_ts.get(msg.thread_ts)
                if parent is not None:
                    d["parent_user_id"] = "USLACKBOT" if parent.tombstone else parent.user
                    if msg.reply_broadcast:
                        # A reply also sent to the channel carries its thread's root.
                        d["root"] = self.message_dict(parent)
            else:
                live = self.replies(channel, msg)
                d["reply_count"] = len(live)
                reply_users = list(dict.fromkeys(r.user for r in live if r.user))
                d["reply_users_count"] = len(reply_users)
                d["reply_users"] = reply_users
                if live:
                    d["latest_reply"] = live[-1].ts
                d["is_locked"] = False
                d["subscribed"] = False
        return d

    def _icons(self, msg: Message) -> dict[str, str]:
        if msg.icon_emoji:
            return {"emoji": msg.icon_emoji}
        if msg.icon_url:
            return {"image_48": msg.icon_url}
        return {}

    def bot_profile(self) -> dict[str, Any]:
        bot = self.users[self.bot_user_id]
        return {
            "id": self.bot_id,
            "deleted": False,
            "name": bot.name,
            "updated": bot.updated,
            "app_id": self.app_id,
            "icons": {size: self.avatar(bot) for size in ("image_36", "image_48", "image_72")},
            "team_id": self.team_id,
        }

    def user_dict(self, user: User) -> dict[str, Any]:
        image = self.avatar(user)
        profile: dict[str, Any] = {
            "title": "",
            "phone": "",
            "skype": "",
            "real_name": user.real_name,
            "real_name_normalized": user.real_name,
            "display_name": user.display_name,
            "display_name_normalized": user.display_name,
            "fields": None,
            "status_text": "",
            "status_emoji": "",
            "status_expiration": 0,
            "avatar_hash": "g" + user.id.lower()[-11:],
            "image_24": image,
            "image_32": image,
            "image_48": image,
            "image_72": image,
            "image_192": image,
            "image_512": image,
            "team": self.team_id,
        }
        if user.email:
            profile["email"] = user.email
        if user.is_bot:
            profile.update({"bot_id": user.bot_id, "api_app_id": self.app_id, "always_active": True})
        return {
            "id": user.id,
            "team_id": self.team_id,
            "name": user.name,
            "deleted": user.deleted,
            "color": "9f69e7",
            "real_name": user.real_name,
            "tz": "Europe/London",
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": profile,
            "is_admin": user.is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "updated": user.updated,
            "is_email_confirmed": user.email is not None,
            "who_can_share_contact_card": "EVERYONE",
        }

    def channel_dict(self, channel: Channel, viewer: str | None) -> dict[str, Any]:
        return {
            "id": channel.id,
            "name": channel.name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": channel.is_private,
            "created": channel.created,
            "is_archived": channel.is_archived,
            "is_general": False,
            "unlinked": 0,
            "name_normalized": channel.name,
            "is_shared": False,
            "is_org_shared": False,
            "is_pending_ext_shared": False,
            "pending_shared": [],
            "context_team_id": self.team_id,
            "updated": channel.created * 1000,
            "parent_conversation": None,
            "creator": channel.creator,
            "is_ext_shared": False,
            "shared_team_ids": [self.team_id],
            "pending_connected_team_ids": [],
            "is_member": viewer in channel.members,
            "topic": {"value": channel.topic, "creator": "", "last_set": 0},
            "purpose": {"value": channel.purpose, "creator": "", "last_set": 0},
            "previous_names": [],
        }

    def file_urls(self, f: File) -> tuple[str, str]:
        private = f"{self.files_base}files-pri/{self.team_id}-{f.id}/{f.name}"
        download = f"{self.files_base}files-pri/{self.team_id}-{f.id}/download/{f.name}"
        return private, download

    def file_dict(self, f: File, *, with_shares: bool = False) -> dict[str, Any]:
        url_private, url_download = self.file_urls(f)
        ext = f.name.rsplit(".", 1)[-1].lower() if "." in f.name else "binary"
        d: dict[str, Any] = {
            "id": f.id,
            "created": f.created,
            "timestamp": f.created,
            "name": f.name,
            "title": f.title,
            "mimetype": f.mimetype,
            "filetype": ext,
            "pretty_type": ext.upper(),
            "user": f.user,
            "user_team": self.team_id,
            "editable": False,
            "size": len(f.data or b""),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": any(not self.channels[c].is_private for c in f.shares),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": url_private,
            "url_private_download": url_download,
            "permalink": f"{self.files_base}files/{f.user}/{f.id}/{f.name}",
            "permalink_public": f"{self.files_base}{self.team_id}-{f.id}-{secrets.token_hex(5)}",
            "has_rich_preview": False,
            "file_access": "visible",
        }
        if f.alt_txt:
            d["alt_txt"] = f.alt_txt
        if with_shares:
            public: dict[str, list[dict[str, Any]]] = {}
            private: dict[str, list[dict[str, Any]]] = {}
            for cid, entries in f.shares.items():
                channel = self.channels[cid]
                rendered = []
                for entry in entries:
                    share = {
                        "reply_users": [],
                        "reply_users_count": 0,
                        "reply_count": 0,
                        "ts": entry["ts"],
                        "channel_name": channel.name,
                        "team_id": self.team_id,
                        "share_user_id": f.user,
                        "source": "UNKNOWN",
                    }
                    if entry.get("thread_ts"):
                        share["thread_ts"] = entry["thread_ts"]
                    rendered.append(share)
                (private if channel.is_private else public)[cid] = rendered
            d["channels"] = [c for c in f.shares if not self.channels[c].is_private]
            d["groups"] = [c for c in f.shares if self.channels[c].is_private]
            d["ims"] = []
            d["comments_count"] = 0
            d["shares"] = {k: v for k, v in (("public", public), ("private", private)) if v}
        return d

    def event_envelope_body(self, event: dict[str, Any], verification_token: str) -> dict[str, Any]:
        """The Events API `event_callback` body that wraps one event."""
        context = {"et": event.get("type"), "tid": self.team_id, "aid": self.app_id}
        if "channel" in event and isinstance(event["channel"], str):
            context["cid"] = event["channel"]
        return {
            "token": verification_token,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": None,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id(),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-"
            + base64.urlsafe_b64encode(json.dumps(context).encode()).decode().rstrip("="),
        }


def new_client_msg_id() -> str:
    return str(uuid.uuid4())
