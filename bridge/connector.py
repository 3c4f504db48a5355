"""What a network connector is, and how the core finds one.

A connector turns native events into `bridge.model` events (awaiting
`Sink.receive`, which returns only after the archive commit) and delivers
`Outbound` events to its network. Connectors are found through the
`switchboard.connectors` entry-point group; built-in ones register the same
way a third party would.

Reconnecting lives here, in `Connector.supervise`, so no connector forgets
backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from bridge.model import Event, Outbound, Receipt

ENTRY_POINT_GROUP = "switchboard.connectors"


@dataclass(frozen=True)
class Capabilities:
    edits: bool = False
    deletes: bool = False
    threads: bool = False
    files: bool = False
    per_sender_display: bool = False  # can post under each sender's own name
    # Can show a reaction as one, made by the reacting person's own user; elsewhere the router
    # sends a short line (`* Alice Smith reacted 👍 to "…"`).
    reactions: bool = False
    max_message_bytes: int = 0  # 0: no limit the core must care about


def parse_listen(listen: str, where: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) → (host, port); ValueError naming `where` otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{where}: expected host:port, got {listen!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def cleartext_problem(url: str, where: str, carries: str) -> str | None:
    """Why sending `carries` (a token, a password) to `url` would expose it, or None.

    Plain http is accepted only to a loopback address, where nothing crosses a wire; a
    connector lets its `allow_insecure: true` override this and says so in the message.
    """
    parts = urlsplit(url)
    if parts.scheme != "http":
        return None
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"{where}: {carries} would cross the network in clear text to {host}: use https:// "
        "(or set allow_insecure: true to accept that)"
    )


@dataclass(frozen=True)
class Option:
    """One key a connector accepts in its `networks.<name>` config section."""

    kind: type | tuple[type, ...]
    required: bool = False
    default: Any = None
    help: str = ""


class Sink(Protocol):
    async def receive(self, event: Event) -> Receipt: ...


class StateStore(Protocol):
    """Small durable key-value state for a connector (e.g. seen transaction ids)."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, ttl: float | None = None) -> None:
        """Set `key`; with `ttl`, the key may be forgotten that many seconds from now."""
        ...


class ConnectionWatch(Protocol):
    """The core's ear for connection state: a network that was down left a capture gap."""

    def changed(self, network: str, connected: bool, reason: str, since: datetime | None = None) -> None:
        """`since`: when capture really stopped, if earlier than now (e.g. when reading paused)."""
        ...


class ArchiveTail(Protocol):
    """What the archive already holds of a room, for networks that can replay what was missed."""

    async def last_native_id(self, network: str, room: str, captured_before: datetime) -> str | None:
        """The native id of the newest event archived from `room` before `captured_before`."""
        ...


@dataclass
class ConnectorContext:
    name: str  # the network's name in config, rooms and ghost ids
    options: Mapping[str, Any]
    state: StateStore
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("switchboard"))
    watch: ConnectionWatch | None = None
    archived: ArchiveTail | None = None


class DeliveryError(Exception):
    """A send failed. `retry_after` (seconds) is the network's own wish, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class SinkUnavailable(Exception):
    """The core could not take an event now (its archive is unreachable or locked).

    Nothing of the event was kept: offer it again later. A network that redelivers
    on its own (appservice transactions, Slack envelopes) just reports the failure;
    one that cannot (IRC) holds the event and retries, in order.
    """


@dataclass
class Backoff:
    """Exponential backoff with full jitter."""

    initial: float = 0.5
    maximum: float = 60.0
    factor: float = 2.0
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class Connector:
    """Base of every connector. Subclasses set `label`, `capabilities`, `options`."""

    label: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    options: ClassVar[Mapping[str, Option]] = {}
    # A session that lasted this long counts as healthy: backoff starts over.
    healthy_after: ClassVar[float] = 30.0

    def __init__(self, ctx: ConnectorContext) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.log = ctx.log.getChild(ctx.name)
        self.backoff = Backoff()
        self._stopping = asyncio.Event()

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> object:
        """This network's options read into the connector's settings; ValueError naming what is wrong."""
        return options

    @classmethod
    def options_problem(cls, options: Mapping[str, Any]) -> str | None:
        """What is wrong with this network's options beyond their declared types, or None.

        `switchboard check` reports it, so a setting that could only fail at start
        (a Slack socket without an app token, an invalid IRC nick) fails the check.
        """
        try:
            cls.parse_options(options)
        except ValueError as exc:
            return str(exc)
        return None

    @classmethod
    def room_problem(cls, room: str) -> str | None:
        """Why `room` cannot name a room on this network, or None (config check)."""
        return None

    async def start(self, sink: Sink) -> None:
        """Connect and begin receiving; return once the connector can send."""
        raise NotImplementedError

    async def stop(self) -> None:
        self._stopping.set()

    async def join(self, room: str) -> str:
        """Join a configured room; return its canonical native id."""
        raise NotImplementedError

    async def catch_up(self, room: str) -> None:
        """`room` is bridged now: fetch what was said there while capture was not running.

        Only networks that can replay their history do anything; for the others the
        `gap` record of the outage is the honest answer.
        """

    async def send(self, out: Outbound) -> str:
        """Deliver one event; return the native id it got. Raise DeliveryError."""
        raise NotImplementedError

    async def notify(self, room: str, user: str, text: str) -> None:
        """Tell one sender something (e.g. why their message was refused)."""
        raise NotImplementedError

    async def announce(self, room: str, text: str) -> None:
        """Tell everyone in a room something from the bridge itself (e.g. the recording notice)."""
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def report_connection(self, connected: bool, reason: str = "", since: datetime | None = None) -> None:
        """Tell the core this network is reachable again, or not (why, and since when if that
        was before now): capture gaps."""
        if self.ctx.watch is not None:
            self.ctx.watch.changed(self.name, connected, reason, since)

    async def supervise(self, session: Callable[[], Awaitable[None]], what: str) -> None:
        """Run `session` until stop(), reconnecting with backoff and jitter.

        `session` connects, serves, and returns or raises when the connection is
        lost; it calls `report_connection(True)` once connected, and a loss is
        reported here.
        """
        while not self.stopping:
            began = time.monotonic()
            try:
                await session()
                problem = "connection closed"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of a session means: reconnect
                problem = f"{type(exc).__name__}: {exc}"
            if self.stopping:
                return
            self.report_connection(False, f"{what} lost ({problem})")
            if time.monotonic() - began >= self.healthy_after:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            self.log.warning("%s lost (%s); reconnecting in %.1fs", what, problem, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)


def load_connector(type_name: str) -> type[Connector]:
    """The connector class registered under `type_name`, or KeyError."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == type_name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Connector)):
                raise TypeError(f"entry point {ep.value} is not a Connector")
            return cls
    raise KeyError(type_name)


def connector_types() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
