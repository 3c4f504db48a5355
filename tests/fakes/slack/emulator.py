"""The Slack emulator: an aiohttp server plus a Python control API for tests.

    async with SlackEmulator() as slack:
        alice = slack.add_user("alice", "Alice Smith")
        general = slack.add_channel("general", [alice.id])
        client = AsyncWebClient(slack.bot_token, base_url=slack.base_url)
        ...
        slack.user_posts(general.id, alice.id, "hi <@" + slack.bot_user_id + ">")
        posts = await slack.wait_posted(general.id, 1)

Everything runs on the caller's event loop; `EmulatorThread` runs it on a loop of
its own for synchronous tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from .delivery import Envelope, EventDelivery, PendingEvent
from .model import Channel, File, Message, TokenInfo, User, Workspace, new_client_msg_id
from .ratelimit import RateLimiter
from .text import normalize_wire_text, rich_text_blocks, validate_wire_text
from .webapi import ApiCall, ApiError, Ephemeral, InjectedFault, WebApi

T = TypeVar("T")

# A 1x1 transparent PNG for avatar URLs, so a bridge that mirrors avatars gets an image.
_PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)

DEFAULT_SUBSCRIPTIONS = frozenset(
    {
        "message",
        "member_joined_channel",
        "member_left_channel",
        "user_change",
        "reaction_added",
        "reaction_removed",
    }
)


@dataclass(frozen=True)
class PostedFile:
    id: str
    name: str
    title: str
    mimetype: str
    data: bytes


@dataclass(frozen=True)
class Posted:
    """A snapshot of one message the bot posted, as a test wants to check it."""

    channel: str
    ts: str
    text: str  # as Slack stored it (stray & < > escaped)
    raw_text: str | None  # exactly what the client sent
    username: str | None
    icon_url: str | None
    icon_emoji: str | None
    thread_ts: str | None
    reply_broadcast: bool
    subtype: str | None
    blocks: list[dict[str, Any]] | None
    files: tuple[PostedFile, ...]
    deleted: bool
    previous_texts: tuple[str, ...]


class SlackEmulator:
    def __init__(
        self,
        *,
        team_name: str = "Corp Test",
        domain: str = "corp-test",
        bot_name: str = "switchboard",
        bot_token: str | None = None,
        app_token: str | None = None,
        post_rate: float | None = 1.0,
        post_burst: int = 1,
        ack_timeout: float = 3.0,
        max_retries: int = 3,
        disconnect_grace: float = 2.0,
        file_share_delay: float = 0.05,
        chat_write_public: bool = False,
    ) -> None:
        self.ws = Workspace(team_name=team_name, domain=domain, bot_name=bot_name, files_base="")
        self.bot_token = self.ws.new_token("bot", self.ws.bot_user_id, bot_token)
        self.app_token = self.ws.new_token("app", None, app_token)
        self.verification_token = "vt" + self.ws.ids.new("V")[1:].lower()
        self.bot_scopes = "chat:write,chat:write.customize,channels:history,channels:read,groups:history,"
        self.bot_scopes += (
            "groups:read,users:read,users:read.email,files:read,files:write,channels:join,reactions:read"
        )
        # Per channel, like Slack's "1 message per second per channel" for chat.postMessage.
        self.post_limiter = RateLimiter(rate=post_rate, burst=post_burst)
        self.method_limiters: dict[str, RateLimiter] = {}
        self.delivery = EventDelivery(
            app_id=self.ws.app_id,
            on_change=self._changed,
            ack_timeout=ack_timeout,
            max_retries=max_retries,
            disconnect_grace=disconnect_grace,
        )
        self.api = WebApi(self)
        # Seconds between files.completeUploadExternal answering and the share appearing;
        # Slack shares asynchronously, so the answer never carries the message ts.
        self.file_share_delay = file_share_delay
        # With chat:write.public a bot may post to public channels it has not joined.
        self.chat_write_public = chat_write_public
        self.subscriptions: set[str] = set(DEFAULT_SUBSCRIPTIONS)
        self.events: list[dict[str, Any]] = []
        self._ephemerals: list[Ephemeral] = []
        self._waiters: set[asyncio.Future[None]] = set()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._timers: list[asyncio.TimerHandle] = []

    # -- lifecycle ----------------------------------------------------------------

    async def start(self, port: int = 0) -> SlackEmulator:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self.api.handle)
        app.router.add_get("/link", self.delivery.handle_link)
        app.router.add_get("/link/", self.delivery.handle_link)
        app.router.add_post("/upload/v1/{token}", self._upload)
        app.router.add_get("/files-pri/{ref}/download/{name}", self._download)
        app.router.add_get("/files-pri/{ref}/{name}", self._download)
        app.router.add_get("/avatars/{name}", self._avatar)
        app.router.add_get("/", self._signin)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self.ws.files_base = self.root_url
        return self

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        await self.delivery.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the Slack emulator is not started")
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def base_url(self) -> str:
        """What slack-sdk wants as `base_url` (and the bridge as `api_url`): ends in /api/."""
        return f"{self.root_url}api/"

    @property
    def ws_base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def team_id(self) -> str:
        return self.ws.team_id

    @property
    def bot_user_id(self) -> str:
        return self.ws.bot_user_id

    @property
    def bot_id(self) -> str:
        return self.ws.bot_id

    @property
    def app_id(self) -> str:
        return self.ws.app_id

    # -- knobs --------------------------------------------------------------------

    @property
    def post_rate(self) -> float | None:
        """chat.postMessage messages per second per channel; None turns the limit off."""
        return self.post_limiter.rate

    @post_rate.setter
    def post_rate(self, value: float | None) -> None:
        self.post_limiter.rate = value
        self.post_limiter.reset()

    @property
    def post_burst(self) -> int:
        return self.post_limiter.burst

    @post_burst.setter
    def post_burst(self, value: int) -> None:
        self.post_limiter.burst = value
        self.post_limiter.reset()

    @property
    def ack_timeout(self) -> float:
        """Seconds Slack waits for an envelope ack before redelivering."""
        return self.delivery.ack_timeout

    @ack_timeout.setter
    def ack_timeout(self, value: float) -> None:
        self.delivery.ack_timeout = value

    @property
    def max_retries(self) -> int:
        return self.delivery.max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        self.delivery.max_retries = value

    @property
    def disconnect_grace(self) -> float:
        """Seconds between a `disconnect` message and the server closing that socket."""
        return self.delivery.disconnect_grace

    @disconnect_grace.setter
    def disconnect_grace(self, value: float) -> None:
        self.delivery.disconnect_grace = value

    @property
    def connection_lifetime(self) -> float | None:
        """Seconds after which Slack asks a socket to refresh; None (default) never does."""
        return self.delivery.connection_lifetime

    @connection_lifetime.setter
    def connection_lifetime(self, value: float | None) -> None:
        self.delivery.connection_lifetime = value

    def set_method_limit(self, method: str, per_second: float | None, burst: int = 1) -> None:
        """Rate-limit one Web API method (all tokens together), e.g. a Tier 2 users.info."""
        self.method_limiters[method] = RateLimiter(rate=per_second, burst=burst)

    def _method_limiter_for(self, method: str) -> RateLimiter:
        return self.method_limiters.get(method) or RateLimiter(rate=None)

    def fail_next(
        self,
        method: str,
        error: str = "internal_error",
        *,
        status: int = 200,
        times: int = 1,
        retry_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make the next `times` calls of `method` fail (after `delay` seconds)."""
        self.api.faults.setdefault(method, []).append(InjectedFault(error, status, times, retry_after, delay))

    def use_events_api(
        self,
        url: str,
        signing_secret: str,
        *,
        retry_delays: tuple[float, ...] | None = None,
        timeout: float = 3.0,
    ) -> None:
        """Deliver events as signed HTTP POSTs to `url` instead of over Socket Mode."""
        self.delivery.http_url = url
        self.delivery.signing_secret = signing_secret
        self.delivery.http_timeout = timeout
        if retry_delays is not None:
            self.delivery.http_retry_delays = retry_delays

    def revoke(self, token: str) -> None:
        self.ws.revoked.add(token)

    # -- workspace setup ----------------------------------------------------------

    def add_user(
        self,
        name: str,
        real_name: str | None = None,
        *,
        display_name: str | None = None,
        email: str | None = None,
        id: str | None = None,
        image_72: str | None = None,
        is_admin: bool = False,
    ) -> User:
        return self.ws.add_user(
            name,
            real_name=real_name,
            display_name=display_name,
            email=email,
            user_id=id,
            image_72=image_72,
            is_admin=is_admin,
        )

    def add_channel(
        self,
        name: str,
        members: list[str] | tuple[str, ...] = (),
        *,
        id: str | None = None,
        is_private: bool = False,
        bot_member: bool = True,
        topic: str = "",
        purpose: str = "",
    ) -> Channel:
        """A channel; the bot is in it unless `bot_member=False` (then it must join or be invited)."""
        people = list(members) + ([self.bot_user_id] if bot_member else [])
        return self.ws.add_channel(
            name, people, channel_id=id, is_private=is_private, topic=topic, purpose=purpose
        )

    def user_token(self, user: str, token: str | None = None) -> str:
        """An xoxp- token acting as `user`, for tests that play a Slack user through slack-sdk."""
        self.ws.user(user)
        return self.ws.new_token("user", user, token)

    def archive_channel(self, channel: str) -> None:
        self.ws.channel(channel).is_archived = True

    # -- what fake users do -------------------------------------------------------

    def user_posts(
        self,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        *,
        broadcast: bool = False,
        blocks: list[dict[str, Any]] | None = None,
    ) -> Message:
        """`user` types `text` (Slack wire form: `&lt;`, `<@U123>`) into `channel`."""
        ch = self._member_channel(channel, user)
        validate_wire_text(text)
        if thread_ts is not None:
            parent = ch.by_ts.get(thread_ts)
            if parent is None or parent.deleted:
                raise ValueError(f"no message {thread_ts} to reply to in {ch.id}")
            thread_ts = self.ws.root_ts(ch, thread_ts)
        msg = Message(
            channel=ch.id,
            ts=self.ws.clock.next(),
            text=text,
            user=user,
            subtype="thread_broadcast" if broadcast and thread_ts else None,
            thread_ts=thread_ts,
            reply_broadcast=bool(broadcast and thread_ts),
            blocks=blocks if blocks is not None else (rich_text_blocks(text) or None),
            client_msg_id=new_client_msg_id(),
        )
        self.ws.store(msg)
        self._emit_message(msg)
        return msg

    def deliver_raw(self, event: dict[str, Any]) -> PendingEvent | None:
        """Deliver `event` exactly as given, unchecked and not stored: what a hostile user's
        client or a broken workspace could make Slack send, for fuzzing a connector. The app's
        subscriptions and the bot's channel membership still decide whether it goes out."""
        channel = event.get("channel")
        ch = self.ws.channels.get(channel) if isinstance(channel, str) else None
        pending = self._emit(event, ch)
        self._changed()
        return pending

    def user_edits(self, channel: str, ts: str, text: str) -> Message:
        """The author of message `ts` changes its text."""
        ch = self.ws.channel(channel)
        msg = ch.by_ts.get(ts)
        if msg is None or msg.deleted or msg.tombstone:
            raise ValueError(f"no message {ts} in {ch.id}")
        if msg.user is None or msg.bot_id is not None:
            raise ValueError("users edit only their own messages; the bot's are edited with chat.update")
        validate_wire_text(text)
        self._edit(msg, text, raw_text=None, blocks=None, attachments=None, editor=msg.user)
        return msg

    def user_deletes(self, channel: str, ts: str) -> None:
        """Message `ts` is deleted (by its author, or an admin when it is the bot's)."""
        ch = self.ws.channel(channel)
        msg = ch.by_ts.get(ts)
        if msg is None or msg.deleted or msg.tombstone:
            raise ValueError(f"no message {ts} in {ch.id}")
        self._delete(msg)

    def user_shares_file(
        self,
        channel: str,
        user: str,
        name: str,
        data: bytes,
        mimetype: str | None = None,
        *,
        text: str = "",
        thread_ts: str | None = None,
        title: str | None = None,
    ) -> Message:
        """`user` drops a file into `channel` (with an optional message `text`)."""
        ch = self._member_channel(channel, user)
        validate_wire_text(text)
        if thread_ts is not None:
            thread_ts = self.ws.root_ts(ch, thread_ts)
        f = File(
            id=self.ws.ids.new("F"),
            name=name,
            title=title or name,
            mimetype=mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream",
            user=user,
            created=int(time.time()),
            data=data,
            declared_length=len(data),
            completed=True,
        )
        self.ws.files[f.id] = f
        msg = Message(
            channel=ch.id,
            ts=self.ws.clock.next(),
            text=text,
            user=user,
            subtype="file_share",
            thread_ts=thread_ts,
            file_ids=[f.id],
            blocks=rich_text_blocks(text) or None,
            client_msg_id=new_client_msg_id() if text else None,
        )
        self.ws.store(msg)
        f.shares.setdefault(ch.id, []).append({"ts": msg.ts, "thread_ts": thread_ts})
        self._emit_message(msg)
        self._emit_file_shared(f, ch, user)
        return msg

    def user_reacts(self, channel: str, ts: str, user: str, name: str) -> None:
        """`user` adds the reaction `name` (a shortcode such as `thumbsup`) to message `ts`."""
        self.react(self.ws.channel(channel), ts, user, name)

    def user_unreacts(self, channel: str, ts: str, user: str, name: str) -> None:
        """`user` takes their reaction `name` to message `ts` back."""
        self.react(self.ws.channel(channel), ts, user, name, removed=True)

    def user_joins(self, channel: str, user: str) -> None:
        ch = self.ws.channel(channel)
        self.ws.user(user)
        if user not in ch.members:
            self._join(ch, user)

    def user_leaves(self, channel: str, user: str) -> None:
        ch = self.ws.channel(channel)
        if user not in ch.members:
            return
        ts = self.ws.clock.next()
        leave = Message(ch.id, ts, f"<@{user}> has left the channel", user=user, subtype="channel_leave")
        self.ws.store(leave)
        # The channel_leave message is still seen by the members, then the user is gone.
        self._emit_message(leave)
        self._emit(
            {
                "type": "member_left_channel",
                "user": user,
                "channel": ch.id,
                "channel_type": "G" if ch.is_private else "C",
                "team": self.team_id,
                "event_ts": ts,
            },
            ch,
        )
        ch.members.remove(user)
        self._changed()

    def invite_bot(self, channel: str) -> None:
        """Someone adds the bot to a channel it was not in."""
        self.user_joins(channel, self.bot_user_id)

    def user_changes_profile(
        self,
        user: str,
        *,
        real_name: str | None = None,
        display_name: str | None = None,
        image_72: str | None = None,
        email: str | None = None,
        deleted: bool | None = None,
    ) -> None:
        u = self.ws.user(user)
        if real_name is not None:
            u.real_name = real_name
        if display_name is not None:
            u.display_name = display_name
        if image_72 is not None:
            u.image_72 = image_72
        if email is not None:
            u.email = email
        if deleted is not None:
            u.deleted = deleted
        u.updated = int(time.time())
        self._emit(
            {
                "type": "user_change",
                "user": self.ws.user_dict(u),
                "cache_ts": u.updated,
                "event_ts": self.ws.clock.next(),
            }
        )

    def _member_channel(self, channel: str, user: str) -> Channel:
        ch = self.ws.channel(channel)
        self.ws.user(user)
        if user not in ch.members:
            raise ValueError(f"{user} is not in {ch.id} ({ch.name}); add them or call user_joins() first")
        if ch.is_archived:
            raise ValueError(f"{ch.id} is archived")
        return ch

    # -- inspection ---------------------------------------------------------------

    def channel(self, ref: str) -> Channel:
        return self.ws.channel(ref)

    def user(self, user_id: str) -> User:
        return self.ws.user(user_id)

    def message(self, channel: str, ts: str) -> Message:
        return self.ws.channel(channel).by_ts[ts]

    def messages(self, channel: str) -> list[Message]:
        """Every message ever stored in `channel` (replies and deleted ones too), in ts order."""
        return list(self.ws.channel(channel).messages)

    def posted(self, channel: str, *, include_deleted: bool = True) -> list[Posted]:
        """What the bot posted to `channel` (text and file shares), oldest first."""
        ch = self.ws.channel(channel)
        out = []
        for m in ch.messages:
            if m.bot_id != self.ws.bot_id or m.subtype == "channel_join":
                continue
            if m.deleted and not include_deleted:
                continue
            files = tuple(
                PostedFile(f.id, f.name, f.title, f.mimetype, f.data or b"")
                for f in (self.ws.files[i] for i in m.file_ids)
            )
            out.append(
                Posted(
                    channel=ch.id,
                    ts=m.ts,
                    text=m.text,
                    raw_text=m.raw_text,
                    username=m.username,
                    icon_url=m.icon_url,
                    icon_emoji=m.icon_emoji,
                    thread_ts=m.thread_ts,
                    reply_broadcast=m.reply_broadcast,
                    subtype=m.subtype,
                    blocks=m.blocks,
                    files=files,
                    deleted=m.deleted or m.tombstone,
                    previous_texts=tuple(m.previous_texts),
                )
            )
        return out

    def ephemerals(self, channel: str | None = None) -> list[Ephemeral]:
        cid = self.ws.channel(channel).id if channel else None
        return [e for e in self._ephemerals if cid is None or e.channel == cid]

    def file(self, file_id: str) -> File:
        return self.ws.files[file_id]

    def rate_limit_hits(self, channel: str) -> int:
        """How many chat.postMessage calls to `channel` got a 429."""
        return self.post_limiter.hits.get(self.ws.channel(channel).id, 0)

    @property
    def api_calls(self) -> list[ApiCall]:
        return list(self.api.calls)

    def calls(self, method: str) -> list[ApiCall]:
        return [c for c in self.api.calls if c.method == method]

    @property
    def envelopes(self) -> list[Envelope]:
        """Every delivery attempt, in the order they were sent."""
        return list(self.delivery.envelopes.values())

    @property
    def acks(self) -> list[Envelope]:
        return [e for e in self.delivery.envelopes.values() if e.acked]

    @property
    def unacked(self) -> list[PendingEvent]:
        """Events not acknowledged yet (waiting for a socket, in flight, or given up on)."""
        return [p for p in self.delivery.pending.values() if p.state != "acked"]

    @property
    def dropped(self) -> list[PendingEvent]:
        return [p for p in self.delivery.pending.values() if p.state == "dropped"]

    def pending_event(self, event_id: str) -> PendingEvent:
        return self.delivery.pending[event_id]

    @property
    def connection_count(self) -> int:
        return sum(1 for c in self.delivery.connections.values() if c.open)

    @property
    def connections_opened(self) -> int:
        """Sockets ever accepted, so a test can see a client came back after a drop."""
        return len(self.delivery.connection_log)

    def disconnect(self, abrupt: bool = False, *, reason: str = "refresh_requested") -> int:
        """Send `{"type":"disconnect"}` to every socket, or with `abrupt` drop them without a word."""
        return self.delivery.disconnect(abrupt=abrupt, reason=reason)

    @property
    def refuse_connections(self) -> bool:
        """While True, opening the socket URL fails (an outage on Slack's side)."""
        return self.delivery.refuse_connections

    @refuse_connections.setter
    def refuse_connections(self, value: bool) -> None:
        self.delivery.refuse_connections = value

    @property
    def drop_without_socket(self) -> bool:
        """While True, an event emitted when no socket is open is dropped at once (as Slack
        does once its retries ran out): the message is only in `conversations.history`."""
        return self.delivery.drop_without_socket

    @drop_without_socket.setter
    def drop_without_socket(self, value: bool) -> None:
        self.delivery.drop_without_socket = value

    # -- waiting ------------------------------------------------------------------

    def _changed(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_for(self, predicate: Callable[[], T | None], *, timeout: float = 5.0, what: str = "") -> T:
        """Await until `predicate()` returns something other than None/False; TimeoutError after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result is not None and result is not False:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"Slack emulator: {what or 'condition'} not reached within {timeout}s")
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.add(fut)
            try:
                # State changes wake us; the cap covers changes made without _changed().
                await asyncio.wait_for(fut, min(remaining, 0.2))
            except TimeoutError:
                pass
            finally:
                self._waiters.discard(fut)

    async def wait_posted(self, channel: str, count: int = 1, *, timeout: float = 5.0) -> list[Posted]:
        """The bot's posts in `channel` once there are at least `count` of them."""

        def enough() -> list[Posted] | None:
            posts = self.posted(channel)
            return posts if len(posts) >= count else None

        return await self.wait_for(enough, timeout=timeout, what=f"{count} bot posts in {channel}")

    async def wait_acked(self, count: int, *, timeout: float = 5.0) -> list[PendingEvent]:
        """All acknowledged events once there are at least `count`."""

        def enough() -> list[PendingEvent] | None:
            done = [p for p in self.delivery.pending.values() if p.state == "acked"]
            return done if len(done) >= count else None

        return await self.wait_for(enough, timeout=timeout, what=f"{count} acked events")

    async def wait_envelopes(self, count: int, *, timeout: float = 5.0) -> list[Envelope]:
        def enough() -> list[Envelope] | None:
            sent = self.envelopes
            return sent if len(sent) >= count else None

        return await self.wait_for(enough, timeout=timeout, what=f"{count} envelopes sent")

    async def wait_connected(self, count: int = 1, *, timeout: float = 5.0) -> int:
        def enough() -> int | None:
            n = self.connection_count
            return n if n >= count else None

        return await self.wait_for(enough, timeout=timeout, what=f"{count} open sockets")

    async def wait_calls(self, method: str, count: int = 1, *, timeout: float = 5.0) -> list[ApiCall]:
        def enough() -> list[ApiCall] | None:
            made = self.calls(method)
            return made if len(made) >= count else None

        return await self.wait_for(enough, timeout=timeout, what=f"{count} calls of {method}")

    # -- what Slack does behind the scenes ----------------------------------------

    def _emit(self, event: dict[str, Any], channel: Channel | None = None) -> PendingEvent | None:
        if event["type"] not in self.subscriptions:
            return None
        # Channel events reach an app only for channels its bot user is in.
        if channel is not None and self.bot_user_id not in channel.members:
            return None
        body = self.ws.event_envelope_body(event, self.verification_token)
        self.events.append(body)
        return self.delivery.emit(body)

    def _emit_message(self, msg: Message) -> None:
        ch = self.ws.channels[msg.channel]
        event = self.ws.message_dict(msg)
        event.update({"channel": ch.id, "event_ts": msg.ts, "channel_type": ch.channel_type})
        self._emit(event, ch)
        self._changed()

    def _edit(
        self,
        msg: Message,
        text: str,
        *,
        raw_text: str | None,
        blocks: list[dict[str, Any]] | None,
        attachments: list[dict[str, Any]] | None,
        editor: str | None,
    ) -> None:
        ch = self.ws.channels[msg.channel]
        previous = self.ws.message_dict(msg)
        msg.previous_texts.append(msg.text)
        msg.text = text
        if raw_text is not None:
            msg.raw_text = raw_text
        msg.blocks = blocks if blocks is not None else (rich_text_blocks(text) or None)
        if attachments is not None:
            msg.attachments = attachments
        event_ts = self.ws.clock.next()
        msg.edited = {"user": editor or msg.user or self.bot_user_id, "ts": event_ts}
        self._emit(
            {
                "type": "message",
                "subtype": "message_changed",
                "message": self.ws.message_dict(msg),
                "previous_message": previous,
                "channel": ch.id,
                "hidden": True,
                "ts": event_ts,
                "event_ts": event_ts,
                "channel_type": ch.channel_type,
            },
            ch,
        )
        self._changed()

    def _delete(self, msg: Message) -> None:
        ch = self.ws.channels[msg.channel]
        previous = self.ws.message_dict(msg)
        event_ts = self.ws.clock.next()
        if not msg.is_reply and self.ws.replies(ch, msg):
            # A thread parent with replies becomes a tombstone, announced as an edit.
            msg.tombstone = True
            event: dict[str, Any] = {
                "type": "message",
                "subtype": "message_changed",
                "message": self.ws.message_dict(msg),
                "previous_message": previous,
            }
        else:
            msg.deleted = True
            event = {
                "type": "message",
                "subtype": "message_deleted",
                "deleted_ts": msg.ts,
                "previous_message": previous,
            }
        event.update(
            {
                "channel": ch.id,
                "hidden": True,
                "ts": event_ts,
                "event_ts": event_ts,
                "channel_type": ch.channel_type,
            }
        )
        self._emit(event, ch)
        self._changed()

    def react(self, ch: Channel, ts: str, user: str, name: str, *, removed: bool = False) -> None:
        """Add or remove one reaction as Slack does (errors as reactions.add/remove answer them)
        and announce it with `reaction_added`/`reaction_removed`."""
        msg = ch.by_ts.get(ts)
        if msg is None or msg.deleted or msg.tombstone:
            raise ApiError("message_not_found")
        users = msg.reactions.get(name, [])
        if removed:
            if user not in users:
                raise ApiError("no_reaction")
            users.remove(user)
            if not users:
                del msg.reactions[name]
        else:
            if user in users:
                raise ApiError("already_reacted")
            msg.reactions.setdefault(name, []).append(user)
        self._emit(
            {
                "type": "reaction_removed" if removed else "reaction_added",
                "user": user,
                "reaction": name,
                "item_user": msg.user or (self.bot_user_id if msg.bot_id else None),
                "item": {"type": "message", "channel": ch.id, "ts": msg.ts},
                "event_ts": self.ws.clock.next(),
            },
            ch,
        )
        self._changed()

    def _join(self, ch: Channel, user: str) -> None:
        ch.members.append(user)
        ts = self.ws.clock.next()
        self._emit(
            {
                "type": "member_joined_channel",
                "user": user,
                "channel": ch.id,
                "channel_type": "G" if ch.is_private else "C",
                "team": self.team_id,
                "event_ts": ts,
            },
            ch,
        )
        join = Message(ch.id, self.ws.clock.next(), f"<@{user}> has joined the channel", user=user)
        join.subtype = "channel_join"
        self.ws.store(join)
        self._emit_message(join)

    def _share_files_later(
        self,
        token: TokenInfo,
        targets: list[Channel],
        files: list[File],
        comment: str,
        blocks: list[dict[str, Any]] | None,
        thread_ts: str | None,
    ) -> None:
        def share() -> None:
            for ch in targets:
                root = self.ws.root_ts(ch, thread_ts) if thread_ts else None
                text = normalize_wire_text(comment)
                as_bot = token.kind == "bot"
                msg = Message(
                    channel=ch.id,
                    ts=self.ws.clock.next(),
                    text=text,
                    raw_text=comment,
                    user=token.user_id,
                    bot_id=self.ws.bot_id if as_bot else None,
                    app_id=self.ws.app_id if as_bot else None,
                    subtype="file_share",
                    thread_ts=root,
                    file_ids=[f.id for f in files],
                    blocks=blocks or rich_text_blocks(text) or None,
                )
                self.ws.store(msg)
                for f in files:
                    f.shares.setdefault(ch.id, []).append({"ts": msg.ts, "thread_ts": root})
                self._emit_message(msg)
                for f in files:
                    self._emit_file_shared(f, ch, token.user_id or self.bot_user_id)

        if self.file_share_delay <= 0:
            share()
        else:
            self._timers.append(asyncio.get_running_loop().call_later(self.file_share_delay, share))

    def _emit_file_shared(self, f: File, ch: Channel, user: str) -> None:
        self._emit(
            {
                "type": "file_shared",
                "channel_id": ch.id,
                "file_id": f.id,
                "user_id": user,
                "file": {"id": f.id},
                "event_ts": self.ws.clock.next(),
            },
            ch,
        )

    # -- non-API HTTP routes ------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        f = next((f for f in self.ws.files.values() if f.upload_token == token), None)
        if f is None:
            return web.Response(status=404, text="upload url not found")
        data = b""
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, web.BodyPartReader) and (
                    part.filename or part.name in ("file", "filename")
                ):
                    data = await part.read(decode=False)
                    break
        else:
            data = await request.read()
        f.data = bytes(data)
        self._changed()
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
        info = self.ws.tokens.get(token) if token not in self.ws.revoked else None
        if info is None or info.kind == "app":
            # Slack sends a browser without a session to the sign-in page; a client that
            # follows redirects blindly ends up saving HTML instead of the file.
            raise web.HTTPFound(f"/?redir={quote(request.path)}")
        team, _, fid = request.match_info["ref"].partition("-")
        f = self.ws.files.get(fid)
        if f is None or team != self.ws.team_id or f.data is None or f.name != request.match_info["name"]:
            return web.Response(status=404, text="file not found")
        headers = {}
        if request.path.split("/")[3] == "download":
            headers["Content-Disposition"] = f'attachment; filename="{f.name}"'
        return web.Response(body=f.data, content_type=f.mimetype, headers=headers)

    async def _avatar(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_PNG_1X1, content_type="image/png")

    async def _signin(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<!DOCTYPE html><html><head><title>Sign in | Slack</title></head><body>Sign in</body></html>",
            content_type="text/html",
        )


class EmulatorThread:
    """A SlackEmulator on its own event loop in a background thread, for synchronous tests.

    Attribute access and method calls are forwarded to the emulator's loop; coroutine
    methods (`wait_posted`, ...) block until they finish.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="slack-emulator", daemon=True)
        self.emu: SlackEmulator | None = None

    def start(self) -> EmulatorThread:
        self._thread.start()

        async def create() -> SlackEmulator:
            return await SlackEmulator(**self._kwargs).start()

        self.emu = self.run(create())
        return self

    def stop(self) -> None:
        if self.emu is not None:
            self.run(self.emu.stop())
            self.emu = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        with contextlib.suppress(RuntimeError):
            self._loop.close()

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def on_loop() -> T:
            return fn(*args, **kwargs)

        return self.run(on_loop())

    def __getattr__(self, name: str) -> Any:
        emu = self.__dict__.get("emu")
        if emu is None:
            raise AttributeError(name)
        value = self.call(getattr, emu, name)
        if asyncio.iscoroutinefunction(value):
            return lambda *a, **k: self.run(value(*a, **k))
        if callable(value):
            return lambda *a, **k: self.call(value, *a, **k)
        return value
