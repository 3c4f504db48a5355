"""Ordered, deduplicated handling of delivered Slack events, and when acks are owed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.connector import SinkUnavailable
from connectors.slack.inbox import Delivery, Inbox
from connectors.slack.seen import SeenEvents
from tests.fakes.state import MemoryState


@dataclass
class Settled:
    outcomes: list[tuple[str, bool]] = field(default_factory=list)
    ack_works: bool = True

    def delivery(self, event_id: str, channel: str = "C1", *, redelivered: bool = False) -> Delivery:
        async def settle(handled: bool) -> bool:
            self.outcomes.append((event_id, handled))
            return handled and self.ack_works

        body = {"event_id": event_id, "event": {"type": "message", "channel": channel}}
        return Delivery(event_id, body, redelivered, settle)


async def until(predicate: Any, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_events_are_handled_in_order_and_acked_after() -> None:
    handled: list[str] = []
    settled = Settled()

    async def handle(body: Mapping[str, Any]) -> None:
        await asyncio.sleep(0.001 * (5 - len(handled)))  # earlier ones slower
        handled.append(body["event_id"])
        assert (body["event_id"], True) not in settled.outcomes

    inbox = Inbox(handle, SeenEvents(MemoryState()), logging.getLogger("test"))
    for n in range(5):
        inbox.put(settled.delivery(f"Ev{n}"))
    await until(lambda: len(settled.outcomes) == 5)
    assert handled == [f"Ev{n}" for n in range(5)]
    assert settled.outcomes == [(f"Ev{n}", True) for n in range(5)]
    await inbox.drain(1)


async def test_a_duplicate_is_acked_without_being_handled_again() -> None:
    handled: list[str] = []
    settled = Settled()

    async def handle(body: Mapping[str, Any]) -> None:
        handled.append(body["event_id"])

    inbox = Inbox(handle, SeenEvents(MemoryState()), logging.getLogger("test"))
    inbox.put(settled.delivery("Ev1"))
    inbox.put(settled.delivery("Ev1", redelivered=True))
    await until(lambda: len(settled.outcomes) == 2)
    assert handled == ["Ev1"] and settled.outcomes == [("Ev1", True), ("Ev1", True)]
    await inbox.drain(1)


async def test_a_failure_is_not_acked_and_the_redelivery_is_handled() -> None:
    attempts: list[str] = []
    settled = Settled()

    async def handle(body: Mapping[str, Any]) -> None:
        attempts.append(body["event_id"])
        if len(attempts) == 1:
            raise RuntimeError("archive down")

    inbox = Inbox(handle, SeenEvents(MemoryState()), logging.getLogger("test"))
    inbox.put(settled.delivery("Ev1"))
    inbox.put(settled.delivery("Ev1", redelivered=True))
    await until(lambda: len(settled.outcomes) == 2)
    assert attempts == ["Ev1", "Ev1"] and settled.outcomes == [("Ev1", False), ("Ev1", True)]
    await inbox.drain(1)


async def test_while_the_archive_is_down_a_channel_waits_on_its_event_in_order() -> None:
    """Refused (so Slack knows), held and retried: later events and the redelivery queue behind it."""
    archived: list[str] = []
    settled = Settled()
    down = True

    async def handle(body: Mapping[str, Any]) -> None:
        if down:
            raise SinkUnavailable("the archive is unavailable")
        archived.append(body["event_id"])

    inbox = Inbox(handle, SeenEvents(MemoryState()), logging.getLogger("test"))
    inbox.put(settled.delivery("Ev1"))
    inbox.put(settled.delivery("Ev2"))
    inbox.put(settled.delivery("Ev1", redelivered=True))
    await until(lambda: settled.outcomes == [("Ev1", False)])
    await asyncio.sleep(0.5)  # several retries while down: still nothing overtakes Ev1
    assert archived == [] and settled.outcomes == [("Ev1", False)]
    down = False
    await until(lambda: len(settled.outcomes) == 3, timeout=5)
    assert archived == ["Ev1", "Ev2"]  # once each, in Slack's order
    assert settled.outcomes == [("Ev1", False), ("Ev2", True), ("Ev1", True)]
    await inbox.drain(1)


async def test_a_slow_channel_does_not_hold_up_another() -> None:
    gate = asyncio.Event()
    settled = Settled()

    async def handle(body: Mapping[str, Any]) -> None:
        if body["event"]["channel"] == "C0SLOW":
            await gate.wait()

    inbox = Inbox(handle, SeenEvents(MemoryState()), logging.getLogger("test"))
    inbox.put(settled.delivery("Ev1", "C0SLOW"))
    inbox.put(settled.delivery("Ev2", "C0FAST"))
    await until(lambda: settled.outcomes == [("Ev2", True)])
    gate.set()
    await until(lambda: len(settled.outcomes) == 2)
    await inbox.drain(1)


async def test_only_events_whose_ack_was_lost_are_remembered_durably() -> None:
    state = MemoryState()
    settled = Settled()

    async def handle(body: Mapping[str, Any]) -> None:
        pass

    inbox = Inbox(handle, SeenEvents(state), logging.getLogger("test"))
    inbox.put(settled.delivery("EvAcked"))
    await until(lambda: len(settled.outcomes) == 1)
    settled.ack_works = False
    inbox.put(settled.delivery("EvLost"))
    await until(lambda: len(settled.outcomes) == 2)
    await inbox.drain(1)
    assert state.values == {"event:EvLost": "1"}

    # After a restart: a redelivery of the lost one is recognised from the state store.
    handled: list[str] = []

    async def record(body: Mapping[str, Any]) -> None:
        handled.append(body["event_id"])

    settled.ack_works = True
    restarted = Inbox(record, SeenEvents(state), logging.getLogger("test"))
    restarted.put(settled.delivery("EvLost", redelivered=True))
    restarted.put(settled.delivery("EvNew"))
    await until(lambda: len(settled.outcomes) == 4)
    assert handled == ["EvNew"]
    await restarted.drain(1)


async def test_first_deliveries_do_not_read_the_state_store() -> None:
    state = MemoryState()
    seen = SeenEvents(state, capacity=2)
    assert not await seen.seen("Ev1", redelivered=False)
    assert state.reads == 0
    assert not await seen.seen("Ev1", redelivered=True)
    assert state.reads == 1
    for n in range(3):
        await seen.done(f"Ev{n}", acknowledged=True)
    assert await seen.seen("Ev2", redelivered=False)
    assert not await seen.seen("Ev0", redelivered=False)  # fell out of memory
