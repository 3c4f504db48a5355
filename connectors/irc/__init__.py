"""The IRC connector: one relay connection that speaks for everyone.

Lines from other networks are sent by the relay nick as `<Name> text`;
channel messages from IRC users become `bridge.model.Message` events, their
sender identified as `connectors.irc.identity` explains (a services account,
not a nick). Room ids are channel names folded to lower case (RFC 1459).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bridge.connector import (
    Backoff,
    Capabilities,
    Connector,
    ConnectorContext,
    DeliveryError,
    Sink,
    SinkUnavailable,
)
from bridge.model import Message, Outbound, RemoteUser
from connectors.irc.format import NICK, mentions_as_nicks, parse
from connectors.irc.identity import NICK_PREFIX
from connectors.irc.outbound import Templates, notice_payloads, payloads
from connectors.irc.session import MAX_LINE, ChannelLine, IrcSession, irc_lower
from connectors.irc.settings import OPTIONS, IrcSettings
from connectors.irc.throttle import TokenBucket

__all__ = ["IrcConnector"]

_CHANNEL = re.compile(r"[#&+!][^\s,\x00-\x1f]+")
# On stop, inbound lines already read get this long to reach the archive.
_DRAIN_SECONDS = 5.0


class IrcConnector(Connector):
    """Relays through one IRC connection. See `connectors.irc.settings.OPTIONS`."""

    label = "IRC"
    capabilities = Capabilities(
        edits=False,
        deletes=False,
        threads=False,
        files=False,
        per_sender_display=False,
        max_message_bytes=MAX_LINE,
    )
    options = OPTIONS

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> IrcSettings:
        return IrcSettings.from_options(options)

    def __init__(self, ctx: ConnectorContext) -> None:
        super().__init__(ctx)
        self.settings = self.parse_options(ctx.options)
        self.templates = Templates(
            line=self.settings.line_template,
            emote=self.settings.emote_template,
            edit=self.settings.edit_template,
        )
        # One bucket for the connector, not per session: a reconnect must not
        # buy a fresh burst.
        self._bucket = TokenBucket(self.settings.flood_burst, self.settings.flood_rate)
        self._channels: dict[str, str] = {}  # room id -> name as configured, rejoined on reconnect
        self._session: IrcSession | None = None
        self._ready = asyncio.Event()
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        # Since when the inbox has been over its bound without catching up (reading paused and
        # resumed, maybe more than once): the server may drop what it sends from then on.
        self._behind_since: datetime | None = None
        self._sink: Sink | None = None
        self._first_session: asyncio.Future[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._warned_unverified = False

    @classmethod
    def room_problem(cls, room: str) -> str | None:
        try:
            _channel_name(room)
        except ValueError as exc:
            return f"{exc} (channels start with #, &, + or !, without spaces or commas)"
        return None

    async def start(self, sink: Sink) -> None:
        """Connect and register; reconnect in the background from then on.

        If the very first connection fails, start() raises and nothing keeps
        running: a wrong host, port, TLS setting or password shows at once.
        """
        self._sink = sink
        self._first_session = asyncio.get_running_loop().create_future()
        self._consumer = asyncio.create_task(self._consume(), name=f"{self.name}: inbound")
        self._supervisor = asyncio.create_task(
            self.supervise(self._run_session, "IRC connection"), name=f"{self.name}: connection"
        )
        try:
            await self._first_session
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await super().stop()
        if self._first_session is not None and not self._first_session.done():
            self._first_session.set_exception(ConnectionError("stopped before the first connection"))
        session = self._session
        if session is not None:
            await session.quit("Switchboard shutting down")
        if self._supervisor is not None:
            await _finish(self._supervisor, timeout=3.0)
        if self._consumer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._inbox.join(), timeout=_DRAIN_SECONDS)
            await _finish(self._consumer, timeout=0)

    async def _run_session(self) -> None:
        assert self._first_session is not None
        session = IrcSession(self.settings, self._bucket, self._on_line, self.log)
        try:
            # A live view: channels joined while we were registering are included.
            await session.open(self._channels.values())
        except Exception as exc:
            if not self._first_session.done():
                self._first_session.set_exception(exc)
            raise
        self.log.info("registered on %s:%d as %s", self.settings.host, self.settings.port, session.nick)
        if session.mode == "unverified" and not self._warned_unverified:
            self._warned_unverified = True
            self.log.warning(
                "%s offers no services accounts (account-tag, extended-join): every IRC sender is "
                "treated as unverified and unmapped; set identify: nick to map senders by nick instead",
                self.settings.host,
            )
        self._session = session
        self._ready.set()
        self.report_connection(True)
        self._backpressure(session)
        if not self._first_session.done():
            self._first_session.set_result(None)
        try:
            await session.serve()
        finally:
            self._ready.clear()
            self._session = None
            session.close()
            if self._behind_since is not None and not self.stopping:
                # The server may have dropped lines from when we first stopped reading, not only now.
                reason = "IRC connection lost while the archive was behind and the bridge not reading"
                self.report_connection(False, reason, self._behind_since)
            self._behind_since = None  # a new connection starts reading afresh

    async def join(self, room: str) -> str:
        """Join a channel (waiting for the connection if it is down); return its room id."""
        name = _channel_name(room)
        room_id = irc_lower(name)
        self._channels.setdefault(room_id, name)
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=self.settings.join_timeout)
        except TimeoutError:
            raise DeliveryError(f"IRC connection is down; will join {name} on reconnect") from None
        assert self._session is not None
        await self._session.join(name, self.settings.join_timeout)
        return room_id

    async def send(self, out: Outbound) -> str:
        """Send `out` and return once every line was handed to the kernel.

        Raises DeliveryError at once while the connection is down, and if it
        drops before all lines left (some lines may then repeat on retry).
        Deletes send nothing: IRC cannot unsay a line.
        """
        native_id = f"{self.name}:{out.key}"
        if out.kind == "delete":
            return native_id
        session = self._live_session()
        try:
            name = _channel_name(out.room)
        except ValueError as exc:
            raise DeliveryError(str(exc), permanent=True) from None
        room_id = irc_lower(name)
        await session.join(self._channels.setdefault(room_id, name), self.settings.join_timeout)
        # Someone who left is still best named by the nick they had.
        out = replace(
            out,
            text=mentions_as_nicks(
                out.text, self.name, lambda user: session.nick_for(user) or user.removeprefix(NICK_PREFIX)
            ),
        )
        lines = payloads(out, self.templates, session.budget("PRIVMSG", room_id))
        await session.send_lines([f"PRIVMSG {room_id} :{line}" for line in lines])
        return native_id

    async def notify(self, room: str, user: str, text: str) -> None:
        """Tell `user` something privately, with a NOTICE (which clients never auto-answer)."""
        session = self._live_session()
        # `user` is a sender's native id (an account name, or nick:<nick>): tell the nick behind it.
        nick = session.nick_for(user)
        if nick is None or not NICK.fullmatch(nick):
            raise DeliveryError(f"no IRC nick in our channels speaks as {user!r}", permanent=True)
        lines = notice_payloads(text, session.budget("NOTICE", nick))
        await session.send_lines([f"NOTICE {nick} :{line}" for line in lines])

    async def announce(self, room: str, text: str) -> None:
        """A channel NOTICE: shown to everyone, and by convention never answered by bots."""
        session = self._live_session()
        lines = notice_payloads(text, session.budget("NOTICE", room))
        await session.send_lines([f"NOTICE {room} :{line}" for line in lines])

    @property
    def connected(self) -> bool:
        """Registered and able to send right now."""
        return self._session is not None and self._session.is_open

    def _live_session(self) -> IrcSession:
        session = self._session
        if session is None or not session.is_open:
            raise DeliveryError("IRC connection is down")
        return session

    def _on_line(self, line: ChannelLine) -> None:
        # Parsed now, while the channel's member list is as the sender saw it.
        text = parse(line.body, self.name, line.resolve_nick)
        if not text.plain.strip():
            return
        message = Message(
            network=self.name,
            room=line.channel,
            native_id=uuid.uuid4().hex,
            sender=RemoteUser(self.name, line.sender_id, line.nick),
            text=text,
            occurred_at=line.occurred_at,
            kind=line.kind,
            flags=line.flags,
        )
        self._inbox.put_nowait(message)
        if self._session is not None:
            self._backpressure(self._session)

    def _backpressure(self, session: IrcSession) -> None:
        """Lines already read are kept (at most one read's worth beyond the bound); no more are
        read until the archive has taken half, so a stalled archive cannot fill memory."""
        held = self._inbox.qsize()
        if not held:
            self._behind_since = None  # caught up: whatever the server sent from now is read
        if held >= self.settings.inbox_size and session.read(resume=False):
            self._behind_since = self._behind_since or datetime.now(UTC)
            self.log.warning(
                "IRC inbox full (%d lines): not reading from the server until the archive takes them", held
            )
        elif held <= self.settings.inbox_size // 2 and session.read(resume=True):
            self.log.info("IRC inbox has room again (%d lines): reading from the server", held)

    async def _consume(self) -> None:
        # One at a time, so the archive sees channel lines in the order IRC sent them.
        while True:
            message = await self._inbox.get()
            try:
                await self._hand_over(message)
            finally:
                self._inbox.task_done()
                if self._session is not None:
                    self._backpressure(self._session)

    async def _hand_over(self, message: Message) -> None:
        """IRC never sends a line twice: while the archive is down, hold it (and those after it)."""
        assert self._sink is not None
        backoff = Backoff(initial=0.2, maximum=10.0)
        while True:
            try:
                await self._sink.receive(message)
                if backoff.attempt:
                    self.log.info("archive back; %d IRC lines were held", self._inbox.qsize() + 1)
                return
            except SinkUnavailable as exc:
                if not backoff.attempt:
                    self.log.warning("holding IRC lines until the archive is back: %s", exc)
                await asyncio.sleep(backoff.next_delay())
            except Exception:
                self.log.exception(
                    "could not hand over IRC message from %s in %s", message.sender.native_id, message.room
                )
                return


def _channel_name(room: str) -> str:
    name = room.strip()
    if not _CHANNEL.fullmatch(name):
        raise ValueError(f"not an IRC channel name: {room!r}")
    return name


async def _finish(task: asyncio.Task[None], timeout: float) -> None:
    """Let `task` end by itself within `timeout`, else cancel it."""
    if timeout > 0:
        await asyncio.wait({task}, timeout=timeout)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
