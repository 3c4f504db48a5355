"""The Slack connector: Socket Mode (or the Events API) in, the Web API out.

Each bridged sender is shown under their own name and icon (`chat.postMessage`
with `username`/`icon_url`). Native room ids are channel ids, native message
ids are message `ts`. Every delivered event is acknowledged only after the
core has archived it; see `connectors.slack.inbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bridge.connector import Capabilities, Connector, ConnectorContext, DeliveryError, Sink
from bridge.model import Attachment, Outbound
from connectors.slack import once
from connectors.slack.catchup import history_since, replay
from connectors.slack.errors import CALL_ERRORS, api_error, to_delivery_error
from connectors.slack.events import EventsEndpoint
from connectors.slack.files import Files, Upload
from connectors.slack.format import escape
from connectors.slack.inbound import Inbound, Me
from connectors.slack.inbox import Delivery, Inbox
from connectors.slack.names import NameCache, user_display
from connectors.slack.outbound import file_caption, icon_url, message_text, username, wire, with_links
from connectors.slack.seen import SeenEvents
from connectors.slack.settings import OPTIONS, SlackSettings

__all__ = ["SlackConnector"]

T = TypeVar("T")

_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")
# On stop, events already received get this long to reach the archive (and be acked).
_DRAIN_SECONDS = 5.0


class SlackConnector(Connector):
    """Relays through one Slack app. See `connectors.slack.settings.OPTIONS`."""

    label = "Slack"
    capabilities = Capabilities(edits=True, deletes=True, threads=True, files=True, per_sender_display=True)
    options = OPTIONS

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> SlackSettings:
        return SlackSettings.from_options(options)

    def __init__(self, ctx: ConnectorContext) -> None:
        super().__init__(ctx)
        self.settings = self.parse_options(ctx.options)
        self.me = Me("", "")
        self._sink: Sink | None = None
        self._http: aiohttp.ClientSession | None = None
        self._web: AsyncWebClient | None = None
        self._inbound: Inbound | None = None
        self._files: Files | None = None
        self._channels: NameCache | None = None
        self._inbox = Inbox(self._handle, SeenEvents(ctx.state), self.log, self.settings.inbox_size)
        self._rooms: set[str] = set()  # bridged channels, caught up after every reconnect
        self._listening_since = datetime.now(UTC)  # what was archived before this, a catch-up may miss
        self._catching_up: set[asyncio.Task[None]] = set()
        self._socket: SocketModeClient | None = None
        self._first_session: asyncio.Future[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._endpoint: EventsEndpoint | None = None
        self._closing = False

    @classmethod
    def room_problem(cls, room: str) -> str | None:
        if _CHANNEL_ID.fullmatch(room.strip()):
            return None
        return f"not a Slack channel id: {room!r} (use the id, like C0123ABC, not the #name)"

    # -- lifecycle ----------------------------------------------------------------

    async def start(self, sink: Sink) -> None:
        """Check the bot token (auth.test), then connect; raise if either fails."""
        self._sink = sink
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=60))
        # No retry handlers: every retry (429s included) is the outbox's, per channel.
        self._web = AsyncWebClient(
            self.settings.bot_token, base_url=self.settings.base_url, session=self._http, retry_handlers=[]
        )
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        web = self._web
        assert web is not None and self._http is not None
        try:
            auth = await web.auth_test()
        except SlackApiError as exc:
            raise ConnectionError(f"Slack refused the bot token: {api_error(exc) or exc}") from exc
        self.me = Me(
            str(auth.get("user_id") or ""), str(auth.get("bot_id") or ""), str(auth.get("team_id") or "")
        )
        self.log.info(
            "signed in to Slack team %s as %s (bot %s)", auth.get("team"), self.me.user_id, self.me.bot_id
        )
        users = NameCache(_users_info(web), user_display, self.log)
        self._channels = NameCache(_conversations_info(web), _channel_name, self.log)
        self._files = Files(
            self._http,
            web,
            self.settings.bot_token,
            self.settings.base_url,
            self.settings.max_file_bytes,
            self.log,
        )
        self._inbound = Inbound(self.name, self.me, users, self._channels, self._files)
        if self.settings.receive == "events":
            self._endpoint = EventsEndpoint(self.settings.signing_secret, self._on_http_event, self.log)
            await self._endpoint.start(*self.settings.listen_address())
            self._listening_since = datetime.now(UTC)
            self.log.info("Events API endpoint listening on %s:%d", *self._endpoint.address or ("?", 0))
            return
        self._first_session = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.create_task(
            self.supervise(self._socket_session, "Slack Socket Mode"), name=f"{self.name}: socket"
        )
        await self._first_session

    async def stop(self) -> None:
        await super().stop()
        self._closing = True
        if self._first_session is not None and not self._first_session.done():
            self._first_session.set_exception(ConnectionError("stopped before the first connection"))
        if self._endpoint is not None:
            await self._endpoint.stop()
        for task in self._catching_up:
            task.cancel()
        # Drain while the socket is still up, so what gets handled also gets acknowledged.
        await self._inbox.drain(_DRAIN_SECONDS)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._http is not None:
            await self._http.close()

    @property
    def connected(self) -> bool:
        """Receiving right now (Socket Mode connected, or the Events API endpoint up)."""
        if self._endpoint is not None:
            return self._endpoint.address is not None
        socket = self._socket
        return socket is not None and socket.current_session is not None and not socket.current_session.closed

    @property
    def events_address(self) -> tuple[str, int] | None:
        """Where the Events API endpoint listens (the port is known only after start with port 0)."""
        return self._endpoint.address if self._endpoint is not None else None

    # -- Socket Mode --------------------------------------------------------------

    async def _socket_session(self) -> None:
        assert self._first_session is not None and self._http is not None
        client = SocketModeClient(
            self.settings.app_token,
            logger=self.log.getChild("socket"),
            web_client=AsyncWebClient(base_url=self.settings.base_url, session=self._http, retry_handlers=[]),
            # Reconnecting after a loss is ours (supervise: backoff with jitter); slack-sdk
            # still follows Slack's own `disconnect` requests at once, as it should.
            auto_reconnect_enabled=False,
            ping_interval=self.settings.ping_interval,
        )
        client.socket_mode_request_listeners.append(self._on_socket_request)
        try:
            try:
                # Asked here, not inside slack-sdk's connect(), which would retry a wrong token forever.
                client.wss_uri = await client.issue_new_wss_url()
                await asyncio.wait_for(client.connect(), self.settings.connect_timeout)
            except Exception as exc:
                if not self._first_session.done():
                    self._first_session.set_exception(ConnectionError(f"Slack Socket Mode: {exc}"))
                raise
            self._socket = client
            self._listening_since = datetime.now(UTC)
            self.log.info("Socket Mode connected")
            self.report_connection(True)
            if not self._first_session.done():
                self._first_session.set_result(None)
            if self._rooms:  # a reconnect: what was said while the socket was down
                self._spawn_catch_up(sorted(self._rooms))
            await self._until_lost(client)
        finally:
            if self._socket is client:
                self._socket = None
            await client.close()

    async def _until_lost(self, client: SocketModeClient) -> None:
        interval = min(1.0, self.settings.ping_interval / 2)
        while True:
            await asyncio.sleep(interval)
            if client.connect_operation_lock.locked():
                continue  # slack-sdk is following a `disconnect` to a fresh socket
            if not await client.is_connected():
                return

    async def _on_socket_request(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        # Runs before any await, so envelopes are queued in the order they arrived.
        if self._closing:
            return  # unacknowledged: Slack delivers it again to whoever connects next
        if request.type != "events_api":
            # Slash commands and interactivity are not bridged; acked so Slack stops asking.
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
            return

        async def settle(handled: bool) -> bool:
            return handled and await self._ack(request.envelope_id)

        payload = request.payload
        self._inbox.put(
            Delivery(str(payload.get("event_id") or ""), payload, bool(request.retry_attempt), settle)
        )

    async def _ack(self, envelope_id: str) -> bool:
        # On whichever socket is open now: after a reconnect the old one is gone.
        client = self._socket
        if client is None or client.current_session is None or client.current_session.closed:
            return False
        try:
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=envelope_id))
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            self.log.debug("could not ack envelope %s: %s", envelope_id, exc)
            return False
        return True

    # -- Events API ---------------------------------------------------------------

    async def _on_http_event(
        self, payload: Mapping[str, Any], redelivered: bool, waiting: Callable[[], bool]
    ) -> bool:
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def settle(handled: bool) -> bool:
            if not outcome.done():
                outcome.set_result(handled)
            return handled and waiting()

        self._inbox.put(Delivery(str(payload.get("event_id") or ""), payload, redelivered, settle))
        return await outcome

    # -- catching up --------------------------------------------------------------

    async def catch_up(self, room: str) -> None:
        """A bridged channel: fetch what was said there since the archive last heard from it
        (the bridge was down, or this is its first connection), and again after each reconnect."""
        self._rooms.add(room)
        await self._catch_up([room])

    def _spawn_catch_up(self, rooms: list[str]) -> None:
        task = asyncio.create_task(self._catch_up(rooms), name=f"{self.name}: catch up")
        self._catching_up.add(task)
        task.add_done_callback(self._catching_up.discard)

    async def _catch_up(self, rooms: list[str]) -> None:
        archived, web, inbound, sink = self.ctx.archived, self._web, self._inbound, self._sink
        if archived is None or web is None or inbound is None or sink is None:
            return
        since = self._listening_since
        # Live events wait meanwhile: the archive then holds the channel in Slack's order.
        self._inbox.hold()
        try:
            for room in rooms:
                oldest = await archived.last_native_id(self.name, room, since)
                if oldest is None:  # nothing archived from it yet: a new room has no past to fetch
                    continue
                try:
                    messages = await history_since(web, room, oldest)
                except CALL_ERRORS as exc:
                    self.log.error("cannot catch up on %s: %s", room, exc)
                    continue
                handed = await replay(inbound, sink, room, messages, self.log)
                if handed:
                    self.log.info("caught up %d messages in %s since %s", handed, room, oldest)
        finally:
            self._inbox.release()

    # -- receiving ----------------------------------------------------------------

    async def _handle(self, payload: Mapping[str, Any]) -> None:
        assert self._inbound is not None and self._sink is not None
        event = payload.get("event")
        if not isinstance(event, Mapping):
            return
        bridged = await self._inbound.convert(event)
        if bridged is not None:
            await self._sink.receive(bridged)

    # -- sending ------------------------------------------------------------------

    async def join(self, room: str) -> str:
        """Check the channel exists and join it if the bot is not a member; return its id."""
        web = self._client()
        try:
            info = (await web.conversations_info(channel=room))["channel"]
            if info.get("is_archived"):
                raise DeliveryError(f"Slack channel {room} is archived", permanent=True)
            if not info.get("is_member"):
                await web.conversations_join(channel=room)
        except CALL_ERRORS as exc:
            raise to_delivery_error(exc, f"join {room}") from exc
        if self._channels is not None and isinstance(info.get("name"), str):
            self._channels.put(info["id"], info["name"])
        return str(info["id"])

    async def send(self, out: Outbound) -> str:
        """Post, update or delete; return the message ts. Raises DeliveryError (429: retry_after)."""
        if out.kind == "delete":
            return await self._delete(out)
        if out.kind == "edit":
            return await self._update(out)
        web = self._client()
        thread = out.thread_native_id or out.reply_to_native_id
        uploads, links = self._split_files(out)
        if uploads:
            assert self._files is not None
            comment = wire(file_caption(out, self.name, links), self.name)
            files = self._files
            ts = await self._call(
                f"upload to {out.room}", out.room, lambda: files.upload(out.room, uploads, comment, thread)
            )
            return ts or ""
        text = with_links(message_text(out, self.name), links)
        if not text.plain.strip():
            raise DeliveryError(f"{out.key}: nothing to send", permanent=True)
        kwargs: dict[str, Any] = {
            "channel": out.room,
            "text": wire(text, self.name),
            "username": username(out),
        }
        icon = icon_url(out, self.settings.icon_url_template)
        if icon:
            kwargs["icon_url"] = icon
        if thread:
            kwargs["thread_ts"] = thread
        if out.maybe_sent_since is not None:
            earlier = await self._earlier_post(out, thread, out.maybe_sent_since)
            if earlier is not None:
                self.log.info("%s was posted before as %s; not posting it again", out.key, earlier)
                return earlier
        kwargs["metadata"] = once.metadata(out.key)
        response = await self._call(f"post to {out.room}", out.room, lambda: web.chat_postMessage(**kwargs))
        return str(response["ts"])

    async def _earlier_post(self, out: Outbound, thread: str | None, since: datetime) -> str | None:
        """Our post of `out.key` in its channel or thread, if an attempt since `since` made one."""
        web = self._client()
        read = (
            partial(web.conversations_replies, channel=out.room, ts=thread)
            if thread
            else partial(web.conversations_history, channel=out.room)
        )
        try:
            return await self._call(
                f"look for {out.key} in {out.room}",
                out.room,
                lambda: once.earlier_post(read, self.me.bot_id, out.key, since),
            )
        except DeliveryError as exc:
            if not exc.permanent:
                raise
            # Not readable (say, no history scope): a possible double beats a certain loss.
            self.log.warning("cannot tell whether %s was posted (%s); posting it", out.key, exc)
            return None

    def _split_files(self, out: Outbound) -> tuple[list[Upload], list[Attachment]]:
        uploads: list[Upload] = []
        links: list[Attachment] = []
        for a in out.attachments:
            if a.data is not None and len(a.data) <= self.settings.max_file_bytes:
                uploads.append(Upload(a.name, a.mimetype, a.data))
            else:
                links.append(a)
        return uploads, links

    async def _update(self, out: Outbound) -> str:
        web = self._client()
        target = out.target_native_id
        if not target:
            raise DeliveryError(f"{out.key}: an edit needs target_native_id", permanent=True)
        text = wire(message_text(out, self.name), self.name)
        response = await self._call(
            f"update {target}", None, lambda: web.chat_update(channel=out.room, ts=target, text=text)
        )
        return str(response.get("ts") or target)

    async def _delete(self, out: Outbound) -> str:
        web = self._client()
        target = out.target_native_id
        if not target:
            raise DeliveryError(f"{out.key}: a delete needs target_native_id", permanent=True)
        try:
            await web.chat_delete(channel=out.room, ts=target)
        except SlackApiError as exc:
            if api_error(exc) != "message_not_found":  # already gone: what we wanted
                raise to_delivery_error(exc, f"delete {target}") from exc
        except CALL_ERRORS as exc:
            raise to_delivery_error(exc, f"delete {target}") from exc
        return target

    async def notify(self, room: str, user: str, text: str) -> None:
        """Tell `user` privately, with an ephemeral message only they see in `room`."""
        web = self._client()
        await self._call(
            f"notify {user}", None, lambda: web.chat_postEphemeral(channel=room, user=user, text=escape(text))
        )

    async def _call(self, what: str, join_room: str | None, call: Callable[[], Awaitable[T]]) -> T:
        """Run one Web API call; on `not_in_channel` join `join_room` and try once more."""
        try:
            try:
                return await call()
            except SlackApiError as exc:
                if join_room is None or api_error(exc) != "not_in_channel":
                    raise
            self.log.info("joining %s, which the bot had left", join_room)
            await self._client().conversations_join(channel=join_room)
            return await call()
        except CALL_ERRORS as exc:
            raise to_delivery_error(exc, what) from exc

    def _client(self) -> AsyncWebClient:
        if self._web is None:
            raise DeliveryError("Slack connector is not started")
        return self._web


def _users_info(web: AsyncWebClient) -> Callable[[str], Awaitable[Mapping[str, Any]]]:
    async def fetch(user: str) -> Mapping[str, Any]:
        return (await web.users_info(user=user))["user"]

    return fetch


def _conversations_info(web: AsyncWebClient) -> Callable[[str], Awaitable[Mapping[str, Any]]]:
    async def fetch(channel: str) -> Mapping[str, Any]:
        return (await web.conversations_info(channel=channel))["channel"]

    return fetch


def _channel_name(channel: Mapping[str, Any]) -> str:
    name = channel.get("name")
    return name if isinstance(name, str) else ""
