"""Event delivery: Socket Mode envelopes with acks and redelivery, or signed Events API POSTs.

Slack's contract, reproduced here: every event gets an `event_id`; each delivery
attempt is a new envelope (`envelope_id`); an attempt that is not acknowledged in
time is retried with `retry_attempt` + 1 and the same `event_id`, at most
`max_retries` times; events raised while no socket is open are delivered as a retry
once one connects. A connector must therefore ack fast and deduplicate by event_id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .signing import signed_headers

_CLOSE = object()  # outbox marker: close the socket after what was queued before it


@dataclass
class Envelope:
    """One delivery attempt of one event."""

    envelope_id: str
    event_id: str
    retry_attempt: int
    retry_reason: str
    transport: str  # "socket" or "http"
    connection_id: int | None
    sent_at: float
    acked_at: float | None = None
    http_status: int | None = None

    @property
    def acked(self) -> bool:
        return self.acked_at is not None


@dataclass
class PendingEvent:
    """An event and its delivery state: waiting, in_flight, acked or dropped."""

    event_id: str
    body: dict[str, Any]
    created_at: float
    state: str = "new"
    attempts: list[Envelope] = field(default_factory=list)
    next_attempt: int = 0
    next_reason: str = ""
    timer: asyncio.TimerHandle | None = None

    @property
    def event(self) -> dict[str, Any]:
        return self.body["event"]


@dataclass
class SocketConnection:
    id: int
    ws: web.WebSocketResponse
    request: web.Request
    connected_at: float
    outbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    sender: asyncio.Task[None] | None = None
    draining: bool = False
    received: list[Any] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return not self.ws.closed


class EventDelivery:
    def __init__(
        self,
        *,
        app_id: str,
        on_change: Callable[[], None],
        ack_timeout: float,
        max_retries: int,
        disconnect_grace: float,
        max_connections: int = 10,
    ) -> None:
        self.app_id = app_id
        self._on_change = on_change
        self.ack_timeout = ack_timeout
        self.max_retries = max_retries
        self.disconnect_grace = disconnect_grace
        self.max_connections = max_connections
        # None keeps connections open until told otherwise; Slack refreshes every few hours.
        self.connection_lifetime: float | None = None
        self.refuse_connections = False
        # Slack keeps retrying an event for an app with no socket open for a while, then gives
        # up (and may disable the app); True gives up at once, so only history has the message.
        self.drop_without_socket = False
        self.tickets: set[str] = set()
        self.connections: dict[int, SocketConnection] = {}
        self.connection_log: list[tuple[int, float, float | None]] = []
        self.pending: dict[str, PendingEvent] = {}
        self.envelopes: dict[str, Envelope] = {}
        self.unknown_acks: list[dict[str, Any]] = []
        self._waiting: list[str] = []
        self._conn_ids = itertools.count(1)
        self._rr = itertools.count()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Events API (HTTP) mode; Socket Mode when None.
        self.http_url: str | None = None
        self.signing_secret: str | None = None
        self.http_timeout = 3.0
        # Slack retries immediately, after 1 minute and after 5 minutes.
        self.http_retry_delays: tuple[float, ...] = (0.0, 60.0, 300.0)
        self._http_session: aiohttp.ClientSession | None = None

    # -- emitting -----------------------------------------------------------------

    def emit(self, body: dict[str, Any]) -> PendingEvent:
        pending = PendingEvent(event_id=body["event_id"], body=body, created_at=time.time())
        self.pending[pending.event_id] = pending
        if self.http_url is not None:
            self._spawn(self._http_deliver(pending))
        else:
            self._attempt(pending)
        self._on_change()
        return pending

    def _attempt(self, p: PendingEvent) -> None:
        conn = self._pick()
        if conn is None:
            if self.drop_without_socket:
                p.state = "dropped"
                return
            # No socket: this attempt fails; the next one goes out when a socket opens.
            if p.next_attempt == 0:
                p.next_attempt, p.next_reason = 1, "connection_failed"
            p.state = "waiting"
            self._waiting.append(p.event_id)
            return
        env = Envelope(
            envelope_id=str(uuid.uuid4()),
            event_id=p.event_id,
            retry_attempt=p.next_attempt,
            retry_reason=p.next_reason,
            transport="socket",
            connection_id=conn.id,
            sent_at=time.time(),
        )
        self.envelopes[env.envelope_id] = env
        p.attempts.append(env)
        p.state = "in_flight"
        p.next_attempt += 1
        p.next_reason = "timeout"
        conn.outbox.put_nowait(
            json.dumps(
                {
                    "envelope_id": env.envelope_id,
                    "payload": p.body,
                    "type": "events_api",
                    "accepts_response_payload": False,
                    "retry_attempt": env.retry_attempt,
                    "retry_reason": env.retry_reason,
                }
            )
        )
        loop = asyncio.get_running_loop()
        p.timer = loop.call_later(self.ack_timeout, self._ack_timed_out, p.event_id, env.envelope_id)

    def _ack_timed_out(self, event_id: str, envelope_id: str) -> None:
        p = self.pending.get(event_id)
        if p is None or p.state != "in_flight" or p.attempts[-1].envelope_id != envelope_id:
            return
        if p.next_attempt > self.max_retries:
            p.state = "dropped"
        else:
            self._attempt(p)
        self._on_change()

    def _pick(self) -> SocketConnection | None:
        # Slack spreads events over an app's open sockets; a socket told to go away
        # is used only when nothing else is open.
        live = [c for c in self.connections.values() if c.open and not c.draining]
        if not live:
            live = [c for c in self.connections.values() if c.open]
        if not live:
            return None
        return live[next(self._rr) % len(live)]

    def _flush_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for event_id in waiting:
            p = self.pending[event_id]
            if p.state == "waiting":
                self._attempt(p)

    def _ack(self, conn: SocketConnection, message: dict[str, Any]) -> None:
        env = self.envelopes.get(message["envelope_id"])
        if env is None:
            self.unknown_acks.append(message)
            return
        if env.acked_at is None:
            env.acked_at = time.time()
        p = self.pending[env.event_id]
        if p.state in ("in_flight", "waiting"):
            p.state = "acked"
            if p.timer is not None:
                p.timer.cancel()

    # -- Socket Mode --------------------------------------------------------------

    def new_ticket(self) -> str:
        ticket = str(uuid.uuid4())
        self.tickets.add(ticket)
        return ticket

    async def handle_link(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self.tickets:
            return web.Response(status=401, text="invalid ticket")
        if self.refuse_connections:
            return web.Response(status=503, text="socket mode unavailable")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = SocketConnection(id=next(self._conn_ids), ws=ws, request=request, connected_at=time.time())
        conn.sender = asyncio.create_task(self._send_loop(conn))
        too_many = sum(1 for c in self.connections.values() if c.open) >= self.max_connections
        self.connections[conn.id] = conn
        self.connection_log.append((conn.id, conn.connected_at, None))
        conn.outbox.put_nowait(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": sum(1 for c in self.connections.values() if c.open),
                    "debug_info": {
                        "host": "applink-emulator",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
            )
        )
        if too_many:
            self.disconnect(conn_ids=[conn.id], reason="too_many_websockets", grace=0.0)
        else:
            self._flush_waiting()
            if self.connection_lifetime is not None:
                asyncio.get_running_loop().call_later(
                    self.connection_lifetime,
                    lambda: self.disconnect(conn_ids=[conn.id], reason="refresh_requested"),
                )
        self._on_change()
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    conn.received.append(msg.data)
                    continue
                conn.received.append(data)
                if isinstance(data, dict) and "envelope_id" in data:
                    self._ack(conn, data)
                self._on_change()
        finally:
            conn.outbox.put_nowait(_CLOSE)
            self.connections.pop(conn.id, None)
            self.connection_log = [
                (cid, start, time.time() if cid == conn.id else end)
                for cid, start, end in self.connection_log
            ]
            self._on_change()
        return ws

    async def _send_loop(self, conn: SocketConnection) -> None:
        while True:
            item = await conn.outbox.get()
            if item is _CLOSE:
                with contextlib.suppress(Exception):
                    await conn.ws.close()
                return
            try:
                await conn.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                # The socket died under us; unacked envelopes are retried on timeout.
                return

    def disconnect(
        self,
        *,
        abrupt: bool = False,
        reason: str = "refresh_requested",
        conn_ids: list[int] | None = None,
        grace: float | None = None,
    ) -> int:
        """Tell sockets to go away (Slack's `disconnect` message) or cut them dead."""
        targets = [c for c in self.connections.values() if c.open and (conn_ids is None or c.id in conn_ids)]
        grace = self.disconnect_grace if grace is None else grace
        loop = asyncio.get_running_loop()
        for conn in targets:
            if abrupt:
                # No close frame: the client learns only when its reads fail or pings go unanswered.
                transport = conn.request.transport
                if transport is not None:
                    transport.abort()
                continue
            conn.draining = True
            conn.outbox.put_nowait(
                json.dumps(
                    {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-emulator"}}
                )
            )
            loop.call_later(grace, conn.outbox.put_nowait, _CLOSE)
        self._on_change()
        return len(targets)

    # -- Events API over HTTP -----------------------------------------------------

    async def _http_deliver(self, p: PendingEvent) -> None:
        assert self.http_url is not None and self.signing_secret is not None
        if self._http_session is None or self._http_session.closed:
            self._http_session = aiohttp.ClientSession()
        raw = json.dumps(p.body).encode()
        p.state = "in_flight"
        for attempt in range(self.max_retries + 1):
            if attempt:
                delays = self.http_retry_delays or (0.0,)
                await asyncio.sleep(delays[min(attempt - 1, len(delays) - 1)])
            headers = signed_headers(self.signing_secret, raw)
            if attempt:
                headers["X-Slack-Retry-Num"] = str(attempt)
                headers["X-Slack-Retry-Reason"] = p.next_reason
            env = Envelope(
                envelope_id=f"http-{uuid.uuid4()}",
                event_id=p.event_id,
                retry_attempt=attempt,
                retry_reason=p.next_reason if attempt else "",
                transport="http",
                connection_id=None,
                sent_at=time.time(),
            )
            self.envelopes[env.envelope_id] = env
            p.attempts.append(env)
            self._on_change()
            try:
                async with self._http_session.post(
                    self.http_url,
                    data=raw,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.http_timeout),
                ) as resp:
                    env.http_status = resp.status
                    await resp.read()
                    if 200 <= resp.status < 300:
                        env.acked_at = time.time()
                        p.state = "acked"
                        self._on_change()
                        return
                    if resp.headers.get("X-Slack-No-Retry") == "1":
                        break
                    p.next_reason = "http_error"
            except TimeoutError:
                p.next_reason = "http_timeout"
            except aiohttp.ClientError:
                p.next_reason = "connection_failed"
        p.state = "dropped"
        self._on_change()

    # -- lifecycle ----------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for p in self.pending.values():
            if p.timer is not None:
                p.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self.connections.values()):
            with contextlib.suppress(Exception):
                await conn.ws.close()
            if conn.sender is not None:
                conn.sender.cancel()
        if self._http_session is not None:
            await self._http_session.close()
