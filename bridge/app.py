"""The running bridge: archive, directory, connectors, router and delivery, wired up.

Start order matters for durability: the archive and router exist before any
connector can receive; pending outbox rows are queued before new events are
accepted, so deliveries stay in order across a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bridge.archive import ArchiveState, AsyncArchive
from bridge.archive.store import ArchiveStore
from bridge.config import Config
from bridge.connector import Backoff, Connector, ConnectorContext, load_connector
from bridge.delivery import Delivery
from bridge.directory.factory import make_directory
from bridge.gaps import HEARTBEAT_SECONDS, Gaps, PortalTail
from bridge.media import MediaLinks, MediaServer
from bridge.model import Portal
from bridge.router import NetworkInfo, PortalIndex, Router
from bridge.secrets import install_redaction, secret_values

log = logging.getLogger("switchboard")
PRUNE_INTERVAL = 600.0  # seconds between prunes of expired connector state
SWEEP_INTERVAL = 60.0  # seconds between looks for outbox rows no worker holds


class StartupError(Exception):
    """The bridge cannot start; the message says which part and why, in one line."""


class Bridge:
    def __init__(self, config: Config) -> None:
        self.config = config
        try:
            self.store = ArchiveStore.from_config(config.archive)
        except ValueError as exc:
            raise StartupError(f"archive: {exc}") from exc
        self.archive = AsyncArchive(self.store)
        self.directory = make_directory(config)
        self.connectors: dict[str, Connector] = {}
        self.portals = PortalIndex()
        self.links: MediaLinks | None = None
        self.media: MediaServer | None = None
        if config.media is not None:
            self.links = MediaLinks(config.media.public_url, config.media.secret.encode())
            self.media = MediaServer(self.links, self.archive, config.media.host, config.media.port)
        # Several bridge processes may share one archive, each with its own rooms: this one
        # delivers only its own portals' outbox rows and keeps its state under its own name.
        self.delivery = Delivery(
            self.archive,
            self.connectors,
            frozenset(r.id for r in config.rooms),
            self.links,
            config.delivery_queue,
        )
        self.router: Router | None = None
        self._joiners: set[asyncio.Task[None]] = set()
        self.state = ArchiveState(self.archive, self._state_prefix("bridge"))
        self.gaps = Gaps(self.archive, f"{self._state_prefix('bridge')}:heartbeat", config.networks)
        self._capturing = False  # the heartbeat runs: a stop records its time
        self._catching_up: set[asyncio.Task[None]] = set()
        self._maintenance: asyncio.Task[None] | None = None

    async def start(self) -> None:
        install_redaction(secret_values(self.config))
        await self.archive.call(self.store.migrate)
        for gap in await self.gaps.since_last_run():
            log.warning("capture gap on %s from %s to %s: %s", gap.network, gap.start, gap.end, gap.reason)
        self._capturing = True
        try:
            await self.directory.start()
        except Exception as exc:
            raise StartupError(f"directory: {exc}") from exc
        if self.media is not None:
            try:
                await self.media.start()
            except OSError as exc:
                raise StartupError(
                    f"media: cannot listen on {self.media.host}:{self.media.port}: {exc}"
                ) from exc
        infos: dict[str, NetworkInfo] = {}
        for name, net in self.config.networks.items():
            cls = load_connector(net.type)
            ctx = ConnectorContext(
                name,
                net.options,
                ArchiveState(self.archive, self._state_prefix(name)),
                log,
                watch=self.gaps,
                archived=PortalTail(self.archive, self.portals),
            )
            self.connectors[name] = cls(ctx)
            infos[name] = NetworkInfo(name, cls.label or name, cls.capabilities, net.display_template)
        self.router = Router(
            self.archive,
            self.directory,
            self.portals,
            infos,
            self.config.policy,
            self.delivery.enqueue,
            self._notify,
        )
        for name, connector in self.connectors.items():
            try:
                await connector.start(self.router)
            except Exception as exc:
                raise StartupError(f"{name}: cannot connect: {exc}") from exc
            log.info("%s connected", name)
        for room in self.config.rooms:
            self.portals.add(Portal(room.id, ()))
            for network, native in room.rooms:
                if not await self._join(room.id, network, native):
                    task = asyncio.create_task(self._keep_joining(room.id, network, native))
                    self._joiners.add(task)
                    task.add_done_callback(self._joiners.discard)
        resumed = await self.delivery.resume()
        if resumed:
            log.info("resuming %d undelivered messages", resumed)
        self.router.ready.set()
        self._maintenance = asyncio.create_task(self._maintain())
        log.info("bridge running: %d rooms, %d networks", len(self.config.rooms), len(self.connectors))

    def _state_prefix(self, owner: str) -> str:
        instance = self.config.archive.instance
        return f"{instance}/{owner}" if instance else owner

    async def _join(self, portal_id: str, network: str, native: str) -> bool:
        try:
            room = await self.connectors[network].join(native)
        except Exception as exc:  # one bad room must not stop the others
            log.error("room %s: cannot join %s on %s: %s; will keep trying", portal_id, native, network, exc)
            return False
        portal = self.portals.portals[portal_id]
        self.portals.add(Portal(portal_id, (*portal.rooms, (network, room))))
        # In the background: what it replays goes through the router, which waits for start().
        task = asyncio.create_task(self._catch_up(network, room), name=f"catch up {network} {room}")
        self._catching_up.add(task)
        task.add_done_callback(self._catching_up.discard)
        await self._announce(portal_id, network, room)
        return True

    async def _catch_up(self, network: str, room: str) -> None:
        try:
            await self.connectors[network].catch_up(room)
        except Exception:  # the gap record of the outage stands; live capture goes on
            log.exception("could not catch up on %s %s", network, room)

    async def _announce(self, portal_id: str, network: str, room: str) -> None:
        """Post the recording notice once in each room, when it is first linked to a portal."""
        notice = self.config.policy.notice
        key = f"announced:{portal_id}:{network}:{room}"
        if not notice or await self.state.get(key):
            return
        try:
            await self.connectors[network].announce(room, notice)
        except Exception as exc:  # the room is bridged all the same; the next start tries again
            log.warning("room %s: could not post the recording notice on %s: %s", portal_id, network, exc)
            return
        await self.state.put(key, "1")

    async def _keep_joining(self, portal_id: str, network: str, native: str) -> None:
        """A room that could not be joined at start is retried, so fixing it needs no restart."""
        backoff = Backoff(initial=5.0, maximum=300.0)
        while True:
            await asyncio.sleep(backoff.next_delay())
            if await self._join(portal_id, network, native):
                log.info("room %s: joined %s on %s", portal_id, native, network)
                return

    async def _maintain(self) -> None:
        """Housekeeping on a timer: the checkpoint_seconds rule (a quiet log still gets its tail
        signed in time), forgetting connector state whose time to live ran out, and queueing
        outbox rows that were committed but never reached a worker."""
        interval = min(5.0, self.config.archive.checkpoint_seconds / 4)
        next_prune = next_beat = 0.0
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + SWEEP_INTERVAL  # start() has just resumed them all
        while True:
            try:
                if loop.time() >= next_beat:
                    await self.gaps.beat()
                    next_beat = loop.time() + HEARTBEAT_SECONDS
                if self.store.signer is not None:
                    await self.archive.call(self.store.checkpoint_if_due)
                if loop.time() >= next_prune:
                    pruned = await self.archive.call(self.store.prune_state)
                    if pruned:
                        log.info("forgot %d expired connector state keys", pruned)
                    next_prune = loop.time() + PRUNE_INTERVAL
                if loop.time() >= next_sweep:
                    if found := await self.delivery.resume():
                        log.warning("queued %d undelivered outbox rows no worker held", found)
                    next_sweep = loop.time() + SWEEP_INTERVAL
            except Exception:  # retried at the next tick; relaying goes on
                log.exception("archive housekeeping failed")
            await asyncio.sleep(interval)

    async def _notify(self, network: str, room: str, user: str, text: str) -> None:
        await self.connectors[network].notify(room, user, text)

    async def stop(self) -> None:
        # Housekeeping first: a sweep after the workers stopped would start new ones.
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        for task in (*self._joiners, *self._catching_up):
            task.cancel()
        for connector in self.connectors.values():
            with contextlib.suppress(Exception):
                await connector.stop()
        if self._capturing:
            try:
                await self.gaps.close()
            except Exception:  # the next start then counts from the last heartbeat instead
                log.exception("could not record the stop time")
        await self.delivery.stop()
        await self.directory.stop()
        if self.media is not None:
            await self.media.stop()
        if self.store.signer is not None and self._maintenance is not None:
            await self.archive.call(self.store.checkpoint)  # sign the tail before leaving
        await self.archive.close()


async def run_bridge(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly."""
    bridge = Bridge(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bridge.start()
        await stop.wait()
        log.info("stopping")
    finally:
        await bridge.stop()
