"""Capture gaps on the record: when the bridge was not running, or a network was unreachable.

The bridge keeps a heartbeat in the archive's state table (one row per process,
rewritten every few seconds, not a log record per beat). At start, a heartbeat
left by an earlier run means capture stopped then: one `gap` record per network
from that beat until now. A clean stop writes its own time, so that gap is exact;
after a crash it starts at the last beat, which overstates the gap by less than
one interval rather than understating it.

While running, connectors report when their network drops and comes back
(`bridge.connector.ConnectionWatch`); each outage becomes a `gap` record too.
The heartbeat carries the networks that are down, so an outage the bridge did
not live to see end is on the record from its start.
Gaps are written in the same tamper-evident log as everything else, retried
until the archive takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from bridge.archive import AsyncArchive
from bridge.archive.store import RecordDraft
from bridge.codec import parse_timestamp, timestamp
from bridge.connector import Backoff

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from bridge.router import PortalIndex

log = logging.getLogger("switchboard.gaps")
HEARTBEAT_SECONDS = 10.0
BRIDGE_STOPPED = "bridge stopped"
BRIDGE_NOT_RUNNING = "bridge not running (crashed or killed; from its last heartbeat)"


@dataclass(frozen=True)
class Gap:
    network: str
    start: datetime
    end: datetime
    reason: str

    def draft(self) -> RecordDraft:
        return RecordDraft(
            kind="gap",
            occurred_at=self.start,
            network=self.network,
            reason=self.reason[:1024],  # the column's size; an exception's text may be longer
            attrs={"from": timestamp(self.start), "until": timestamp(self.end)},
        )


class Gaps:
    """Connection state of every network, and the gaps it leaves, written to the archive."""

    def __init__(self, archive: AsyncArchive, heartbeat_key: str, networks: Iterable[str]) -> None:
        self.archive = archive
        self.key = heartbeat_key  # a state-table key of this process's own
        self.networks = tuple(networks)
        self._down: dict[str, tuple[datetime, str]] = {}
        self._unwritten: list[Gap] = []
        self._writer: asyncio.Task[None] | None = None

    async def since_last_run(self) -> list[Gap]:
        """Record the time the bridge was not running (if it ran before) and start the heartbeat,
        in one transaction: a crash in between cannot record the same outage twice."""
        now = datetime.now(UTC)
        beat = await self.archive.call(self.archive.store.state_get, self.key)
        gaps: list[Gap] = []
        if beat is not None:
            last = json.loads(beat)
            reason = BRIDGE_STOPPED if last.get("stopped") else BRIDGE_NOT_RUNNING
            since = parse_timestamp(last["at"])
            # A network already down then has been since it dropped (the beat kept that).
            down = last.get("down") or {}
            gaps = [
                Gap(network, parse_timestamp(down[network][0]), now, f"{down[network][1]}; then {reason}")
                if network in down
                else Gap(network, since, now, reason)
                for network in self.networks
            ]
        await self.archive.write(partial(self._write, gaps, now, stopped=False))
        return gaps

    async def beat(self, stopped: bool = False) -> None:
        """Capture is running now (or, with `stopped`, ends now)."""
        now = datetime.now(UTC)
        await self.archive.write(partial(self._write, [], now, stopped=stopped))

    def _write(self, gaps: list[Gap], now: datetime, conn: Connection, *, stopped: bool) -> None:
        store = self.archive.store
        for gap in gaps:
            store.append_locked(conn, gap.draft())
        down = {network: [timestamp(start), why] for network, (start, why) in self._down.items()}
        beat = {"at": timestamp(now), "stopped": stopped, "down": down}
        store.state_put_in(conn, self.key, json.dumps(beat))

    def _append(self, gap: Gap, conn: Connection) -> int:
        return self.archive.store.append_locked(conn, gap.draft())

    def changed(self, network: str, connected: bool, reason: str, since: datetime | None = None) -> None:
        """A connector's report (`ConnectionWatch`): an outage ends in a gap record."""
        now = datetime.now(UTC)
        if not connected:
            self._down.setdefault(network, (min(since or now, now), reason or "disconnected"))
            return
        if network in self._down:
            start, why = self._down.pop(network)
            self._record(Gap(network, start, now, why))

    def down(self) -> list[str]:
        return sorted(self._down)

    def _record(self, gap: Gap) -> None:
        log.warning("capture gap on %s from %s to %s: %s", gap.network, gap.start, gap.end, gap.reason)
        self._unwritten.append(gap)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="gap records")

    async def _write_all(self) -> None:
        # The archive may be what is down: the gap waits here (a handful, one per outage).
        backoff = Backoff(initial=0.5, maximum=30.0)
        while self._unwritten:
            gap = self._unwritten[0]
            try:
                await self.archive.write(partial(self._append, gap))
            except Exception as exc:
                delay = backoff.next_delay()
                log.warning("gap record not written yet (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._unwritten.pop(0)

    async def close(self) -> None:
        """At a clean stop: networks down now were down until now; then the stop time."""
        for network in list(self._down):
            self.changed(network, True, "")
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=5.0)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self.beat(stopped=True)


class PortalTail:
    """`bridge.connector.ArchiveTail` over the archive: where a bridged room's capture resumes."""

    def __init__(self, archive: AsyncArchive, portals: PortalIndex) -> None:
        self.archive = archive
        self.portals = portals

    async def last_native_id(self, network: str, room: str, captured_before: datetime) -> str | None:
        portal = self.portals.find(network, room)
        if portal is None:
            return None
        store = self.archive.store
        return await self.archive.call(store.last_inbound, portal.id, network, room, captured_before)
