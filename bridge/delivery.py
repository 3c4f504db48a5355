"""Outbox workers: one per destination room, in order, until delivered.

A row leaves the outbox only when its connector has confirmed the send; then
the native id is mapped and a `delivery` record archived, in one transaction.
Failures retry the same row (order is kept) with exponential backoff and
jitter, or after the network's own Retry-After. Nothing is dropped: only a
permanent refusal marks a row failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial

from bridge.archive import AsyncArchive
from bridge.archive.store import OutboxRow
from bridge.codec import text_from_json
from bridge.connector import Backoff, Connector, DeliveryError
from bridge.media import MediaLinks
from bridge.model import Attachment, Outbound, Sender

log = logging.getLogger("switchboard.delivery")


@dataclass
class RoomWorker:
    network: str
    room: str
    queue: asyncio.Queue[OutboxRow] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.2, maximum=60.0))
    # Rows were left in the outbox because the queue was full: read them from there, in order,
    # once the queue is empty (queueing a later row first would break the room's order).
    behind: bool = False
    skipped: bool = False  # a row was left in the outbox since the last read from there
    held: int = 0  # rows queued or being delivered: what queue_size bounds


class Delivery:
    def __init__(
        self,
        archive: AsyncArchive,
        connectors: Mapping[str, Connector],
        portals: frozenset[str],
        links: MediaLinks | None = None,
        queue_size: int = 1000,
    ) -> None:
        self.archive = archive
        self.queue_size = queue_size  # rows held in memory per destination room; the rest wait in the outbox
        self.connectors = connectors
        self.portals = portals  # whose rows this process delivers
        self.links = links  # where networks without files link to the archived bytes
        self.workers: dict[tuple[str, str], RoomWorker] = {}
        self.delivered = 0
        self._held: set[int] = set()  # outbox rows queued or being delivered by a worker
        # Rows that may be on their network already: sent, then neither confirmed nor refused.
        self._unsure: set[int] = set()
        self._resumed = False

    def enqueue(self, rows: Iterable[OutboxRow]) -> None:
        for row in rows:
            if row.id in self._held:  # a worker has it already: a second copy would send it twice
                continue
            key = (row.network, row.room)
            worker = self.workers.get(key)
            if worker is None:
                worker = self.workers[key] = RoomWorker(row.network, row.room)
                worker.task = asyncio.create_task(self._run(worker), name=f"deliver {key}")
            if worker.behind or worker.held >= self.queue_size:
                worker.behind = worker.skipped = True  # committed in the outbox: read from there
                continue
            self._held.add(row.id)
            worker.held += 1
            worker.queue.put_nowait(row)

    async def resume(self) -> int:
        """Queue every row of our portals that is pending and that no worker holds, oldest first.

        At start these are what a previous run left. Later, a sweep finds rows committed but
        never queued: a commit whose answer was lost looks like a failure, and its event, when
        it comes again, like a duplicate that has nothing to relay.
        """
        found, after = 0, 0
        # At start, a room's oldest pending row is the one its worker was sending when the last
        # run ended (a worker sends a room's rows one at a time): it may have arrived unrecorded.
        first_of: set[tuple[str, str]] | None = None if self._resumed else set()
        self._resumed = True
        while True:  # a page at a time: a long backlog is not read into memory at once
            rows = await self.archive.call(
                self.archive.store.pending, self.portals, None, self.queue_size, after
            )
            fresh = [row for row in rows if row.id not in self._held]
            for row in fresh if first_of is not None else ():
                if (row.network, row.room) not in first_of:
                    first_of.add((row.network, row.room))
                    self._unsure.add(row.id)
            self.enqueue(fresh)  # beyond a room's queue_size they stay in the outbox, read from there
            found += len(fresh)
            if len(rows) < self.queue_size:
                return found
            after = rows[-1].id

    async def stop(self) -> None:
        for worker in self.workers.values():
            if worker.task:
                worker.task.cancel()
        for worker in self.workers.values():
            if worker.task:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.task

    def backlog(self) -> int:
        """Rows queued in memory (more may wait in the outbox; see `RoomWorker.behind`)."""
        return sum(w.queue.qsize() for w in self.workers.values())

    async def idle(self) -> None:
        """Wait until every queued row was handled (tests and shutdown)."""
        while True:
            for worker in list(self.workers.values()):
                await worker.queue.join()
            if not any(w.behind for w in self.workers.values()):
                return
            await asyncio.sleep(0.05)  # a worker is reading its next rows from the outbox

    async def _refill(self, worker: RoomWorker) -> None:
        """Queue the room's oldest pending rows from the outbox, as many as the queue holds."""
        store = self.archive.store
        room = (worker.network, worker.room)
        worker.skipped = False
        rows = await self.archive.call(store.pending, self.portals, room, self.queue_size)
        # A row skipped during the read may have been committed after it: read once more.
        worker.behind = len(rows) >= self.queue_size or worker.skipped
        for row in rows:
            if row.id not in self._held:
                self._held.add(row.id)
                worker.held += 1
                worker.queue.put_nowait(row)

    async def _run(self, worker: RoomWorker) -> None:
        while True:
            while worker.behind and worker.queue.empty():
                try:
                    await self._refill(worker)
                except Exception:  # the archive is unreachable: the rows wait there, try again
                    delay = worker.backoff.next_delay()
                    log.exception(
                        "outbox of %s %s not readable; retrying in %.2fs", worker.network, worker.room, delay
                    )
                    await asyncio.sleep(delay)
            row = await worker.queue.get()
            try:
                while True:
                    try:
                        await self._deliver(worker, row)
                        break
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # e.g. the archive database is unreachable: keep the row, retry
                        delay = worker.backoff.next_delay()
                        log.exception("outbox row %d: delivery step failed; retrying in %.2fs", row.id, delay)
                        await asyncio.sleep(delay)
            finally:
                self._held.discard(row.id)
                self._unsure.discard(row.id)
                worker.held -= 1
                worker.queue.task_done()

    async def _deliver(self, worker: RoomWorker, row: OutboxRow) -> None:
        connector = self.connectors.get(row.network)
        if connector is None:
            log.error("outbox row %d: network %s is not configured; left pending", row.id, row.network)
            return
        try:
            out = await self._outbound(row)
        except (KeyError, TypeError, ValueError) as exc:
            # A payload this version cannot read (written by another, or damaged) would stall
            # the room forever if retried: it is refused on record, and the room goes on.
            log.error(
                "outbox row %d to %s %s is unreadable (%r); marked failed", row.id, row.network, row.room, exc
            )
            await self.archive.call(self.archive.store.failed, row, f"unreadable payload: {exc!r}", True)
            return
        if out is None:  # an edit or delete of something never delivered there
            await self.archive.write(partial(self.archive.store.delivered_in, row=row, native_id=""))
            return
        while True:
            if row.id in self._unsure and out.maybe_sent_since is None:
                captured = await self.archive.call(self.archive.store.captured_at, row.seq)
                out = replace(out, maybe_sent_since=captured or datetime.fromtimestamp(0, UTC))
            try:
                native_id = await connector.send(out)
            except asyncio.CancelledError:
                raise
            except DeliveryError as exc:
                if exc.permanent:
                    log.error("outbox row %d to %s %s refused: %s", row.id, row.network, row.room, exc)
                    await self.archive.call(self.archive.store.failed, row, str(exc), True)
                    return
                if exc.retry_after is None:  # a rate limit refused it; anything else may have sent it
                    self._unsure.add(row.id)
                delay = exc.retry_after if exc.retry_after is not None else worker.backoff.next_delay()
                log.info("outbox row %d to %s: %s; retrying in %.2fs", row.id, row.network, exc, delay)
                await self.archive.call(self.archive.store.failed, row, str(exc), False)
            except Exception as exc:  # a connector bug must not lose the row: retry it
                self._unsure.add(row.id)
                delay = worker.backoff.next_delay()
                log.exception(
                    "outbox row %d to %s failed unexpectedly; retrying in %.2fs", row.id, row.network, delay
                )
                exc_text = f"{type(exc).__name__}: {exc}"
                await self.archive.call(self.archive.store.failed, row, exc_text, False)
            else:
                worker.backoff.reset()
                await self._record_delivery(worker, row, native_id or "")
                self.delivered += 1
                return
            await asyncio.sleep(delay)

    async def _record_delivery(self, worker: RoomWorker, row: OutboxRow, native_id: str) -> None:
        """The network has the message: record that, retrying the archive alone until it takes
        it. Starting the row over would send it a second time."""
        while True:
            try:
                await self.archive.write(
                    partial(self.archive.store.delivered_in, row=row, native_id=native_id)
                )
                worker.backoff.reset()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = worker.backoff.next_delay()
                log.exception("outbox row %d: sent, but not yet recorded; retrying in %.2fs", row.id, delay)
                await asyncio.sleep(delay)

    async def _outbound(self, row: OutboxRow) -> Outbound | None:
        p = row.payload
        target = reply = thread = None
        if p.get("target"):
            target = await self.archive.call(self._translate, p["source"], p["target"], row)
            if target is None:
                return None
        if p.get("reply_to"):
            reply = await self.archive.call(self._translate, p["source"], p["reply_to"], row)
        if p.get("thread_id"):
            thread = await self.archive.call(self._translate, p["source"], p["thread_id"], row)
        return Outbound(
            key=f"sb{row.id}",
            seq=row.seq,
            room=row.room,
            sender=Sender(**p["sender"]),
            kind=p["kind"],
            text=text_from_json(p["text"]),
            message_kind=p.get("message_kind", "text"),
            target_native_id=target,
            reply_to_native_id=reply,
            thread_native_id=thread,
            attachments=await self._attachments(row),
        )

    async def _attachments(self, row: OutboxRow) -> tuple[Attachment, ...]:
        """The row's attachments with the bytes the archive kept (none once purged); for a network
        that cannot carry files, linked to the bridge's copy instead when media links are on."""
        described = row.payload.get("attachments") or ()
        kept = await self.archive.call(self.archive.store.files_of, row.seq) if described else {}
        connector = self.connectors.get(row.network)
        links = self.links if connector is not None and not connector.capabilities.files else None
        out = []
        for a in described:
            attachment = Attachment(**a, data=kept.get(a["sha256"]))
            if links is not None and attachment.data is not None:
                attachment = replace(attachment, url=links.url(row.seq, attachment.sha256, attachment.name))
            out.append(attachment)
        return tuple(out)

    def _translate(self, source: list[str], native_id: str, row: OutboxRow) -> str | None:
        """The destination's native id of the event `native_id` names on the source network."""
        store = self.archive.store
        seq = store.seq_for(source[0], source[1], native_id)
        return store.native_for(seq, row.network, row.room) if seq else None
