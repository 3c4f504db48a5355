"""Delivered Slack events, handled in order per channel and acknowledged only once handled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.connector import Backoff, SinkUnavailable
from connectors.slack.seen import SeenEvents

Handler = Callable[[Mapping[str, Any]], Awaitable[None]]


@dataclass
class Delivery:
    """One delivery attempt of one event (a Socket Mode envelope or an Events API request)."""

    event_id: str
    body: Mapping[str, Any]  # the event_callback payload
    redelivered: bool
    # Called once: True when the event is handled (ack it; returns whether the ack
    # could be sent), False when handling failed (Slack must redeliver).
    settle: Callable[[bool], Awaitable[bool]]

    @property
    def lane(self) -> str:
        event = self.body.get("event")
        if not isinstance(event, Mapping):
            return ""
        channel = event.get("channel") or event.get("channel_id")
        return channel if isinstance(channel, str) else ""


class Inbox:
    """One worker per channel, so the archive sees a channel's events in Slack's order
    while a slow file download in one channel does not hold up the others."""

    def __init__(self, handle: Handler, seen: SeenEvents, log: logging.Logger, limit: int = 1000) -> None:
        self._handle = handle
        self._seen = seen
        self._log = log
        self._limit = limit  # deliveries held at once, over all channels
        self._queued = 0
        self._lanes: dict[str, asyncio.Queue[Delivery]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._refusals: set[asyncio.Task[bool]] = set()
        self._holds = 0
        self._open = asyncio.Event()
        self._open.set()

    def put(self, delivery: Delivery) -> bool:
        """Queue without awaiting, so deliveries keep the order they arrived in.

        When `limit` deliveries wait already (the archive is slow or down), the delivery is
        refused unacknowledged instead: Slack redelivers it, so memory stays bounded and
        nothing is lost. Returns whether it was queued.
        """
        if self._queued >= self._limit:
            refusal = asyncio.create_task(delivery.settle(False))
            self._refusals.add(refusal)
            refusal.add_done_callback(self._refusals.discard)
            return False
        queue = self._lanes.get(delivery.lane)
        if queue is None:
            queue = self._lanes[delivery.lane] = asyncio.Queue()
            worker = asyncio.create_task(self._work(queue), name=f"slack inbox {delivery.lane or '-'}")
            self._workers.add(worker)
        self._queued += 1
        queue.put_nowait(delivery)
        return True

    def hold(self) -> None:
        """Handle nothing until `release`: a catch-up goes first, so the archive keeps Slack's order."""
        self._holds += 1
        self._open.clear()

    def release(self) -> None:
        self._holds -= 1
        if self._holds <= 0:
            self._holds = 0
            self._open.set()

    async def drain(self, timeout: float) -> None:
        """Let queued deliveries finish for up to `timeout` seconds, then stop the workers."""
        if self._lanes:
            joined = asyncio.gather(*(q.join() for q in self._lanes.values()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(joined, timeout)
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers.clear()
        self._lanes.clear()
        self._queued = 0

    async def _work(self, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            delivery = await queue.get()
            try:
                await self._open.wait()
                await self._process(delivery)
            finally:
                self._queued -= 1
                queue.task_done()

    async def _process(self, delivery: Delivery) -> None:
        event_id = delivery.event_id
        refused = False  # Slack was told we do not have it (it will redeliver; that is deduplicated)
        backoff = Backoff(initial=0.2, maximum=10.0)
        while True:
            try:
                if event_id and await self._seen.seen(event_id, redelivered=delivery.redelivered):
                    if not refused:
                        await delivery.settle(True)
                    return
                await self._handle(delivery.body)
                break
            except SinkUnavailable as exc:
                # The archive is down: this channel's lane waits on this very event, so the
                # events behind it (Slack's redeliveries of it among them) cannot overtake it.
                if not refused:
                    self._log.warning("holding Slack event %s until the archive is back: %s", event_id, exc)
                    refused = True
                    await delivery.settle(False)
                await asyncio.sleep(backoff.next_delay())
            except Exception:  # Slack redelivers what we do not acknowledge
                self._log.exception("event %s not handled; leaving it for Slack to redeliver", event_id)
                if not refused:
                    await delivery.settle(False)
                return
        acknowledged = False if refused else await delivery.settle(True)
        if event_id:
            try:
                await self._seen.done(event_id, acknowledged=acknowledged)
            except Exception:  # the archive has it; a redelivery will be deduplicated there
                self._log.exception("could not record event %s as handled", event_id)
