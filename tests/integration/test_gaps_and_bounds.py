"""Gap records and bounded delivery queues over a real archive, on both engines.

The e2e tests (tests/e2e/test_gaps.py) prove the same through `switchboard run` on
real servers; these pin the archive side: what a gap record holds, that it is part
of the verified log, and that a backlog waits in the outbox, not in memory.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from bridge.archive import AsyncArchive
from bridge.archive.audit import Actor
from bridge.archive.export.check import verify_bundle
from bridge.archive.export.run import run_export
from bridge.archive.schema import records
from bridge.archive.search import Filters
from bridge.archive.signing import Signer
from bridge.archive.store import ArchiveStore
from bridge.archive.verify import verify_archive
from bridge.codec import parse_timestamp
from bridge.delivery import Delivery
from bridge.gaps import BRIDGE_NOT_RUNNING, BRIDGE_STOPPED, Gaps, PortalTail
from bridge.model import Outbound
from bridge.router import PortalIndex
from tests.integration.test_router_delivery import PORTAL, Recorder, _msg, _setup

NETWORKS = ("matrix", "slack", "irc")


def gap_rows(store: ArchiveStore) -> list[dict]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(records).where(records.c.kind == "gap").order_by(records.c.seq))
        return [{**row._mapping, **json.loads(row.attrs)} for row in rows]


async def test_a_clean_stop_and_a_crash_each_leave_one_gap_per_network_in_the_verified_log(
    tmp_path: Path, archive_url: str
) -> None:
    signer = Signer.generate(tmp_path / "key")
    store = ArchiveStore(archive_url, signer, checkpoint_every=1)
    store.migrate()
    archive = AsyncArchive(store)
    first = Gaps(archive, "east/bridge:heartbeat", NETWORKS)
    assert await first.since_last_run() == []  # never ran before: nothing was missed
    await first.close()  # a clean stop: its time is kept
    stopped = datetime.now(UTC)

    second = Gaps(archive, "east/bridge:heartbeat", NETWORKS)
    gaps = await second.since_last_run()
    assert [(g.network, g.reason) for g in gaps] == [(n, BRIDGE_STOPPED) for n in NETWORKS]
    assert all(g.start <= stopped <= g.end for g in gaps)
    await second.beat()  # then a crash: no stop time is written
    crashed = datetime.now(UTC)

    third = Gaps(archive, "east/bridge:heartbeat", NETWORKS)
    assert [g.reason for g in await third.since_last_run()] == [BRIDGE_NOT_RUNNING] * 3
    # Another process sharing the archive keeps its own heartbeat: it missed nothing.
    assert await Gaps(archive, "west/bridge:heartbeat", NETWORKS).since_last_run() == []

    rows = gap_rows(store)
    assert [(r["network"], r["reason"]) for r in rows] == [
        *((n, BRIDGE_STOPPED) for n in NETWORKS),
        *((n, BRIDGE_NOT_RUNNING) for n in NETWORKS),
    ]
    assert all(parse_timestamp(r["from"]) <= crashed <= parse_timestamp(r["until"]) for r in rows[3:])
    assert rows[0]["occurred_at"] == rows[0]["from"]
    report = verify_archive(store.engine, signer.public_key)
    assert report.failure is None and report.records == 6
    await archive.close()


async def test_an_outage_reported_by_a_connector_becomes_one_gap(tmp_path: Path, archive_url: str) -> None:
    store = ArchiveStore(archive_url)
    store.migrate()
    archive = AsyncArchive(store)
    gaps = Gaps(archive, "bridge:heartbeat", NETWORKS)
    await gaps.since_last_run()
    gaps.changed("irc", True, "")  # up without having been down: nothing to record
    gaps.changed("irc", False, "IRC connection lost (ConnectionError: reset)")
    gaps.changed("irc", False, "IRC connection lost (ConnectionRefusedError)")  # retries fail too
    assert gaps.down() == ["irc"]
    gaps.changed("irc", True, "")
    gaps.changed("slack", False, "Slack Socket Mode lost (connection closed)")
    await gaps.close()  # still down at the stop: down until then
    rows = gap_rows(store)
    assert [(r["network"], r["reason"]) for r in rows] == [
        ("irc", "IRC connection lost (ConnectionError: reset)"),
        ("slack", "Slack Socket Mode lost (connection closed)"),
    ]
    assert all(r["from"] <= r["until"] for r in rows)
    await archive.close()


async def test_an_outage_the_bridge_did_not_live_to_see_end_is_recorded_from_its_start(
    tmp_path: Path, archive_url: str
) -> None:
    store = ArchiveStore(archive_url)
    store.migrate()
    archive = AsyncArchive(store)
    before = Gaps(archive, "bridge:heartbeat", NETWORKS)
    await before.since_last_run()
    before.changed("irc", False, "IRC connection lost (ConnectionResetError)")
    dropped = datetime.now(UTC)
    await before.beat()  # beats go on while IRC is down; then the process is killed
    after = Gaps(archive, "bridge:heartbeat", NETWORKS)
    gaps = {g.network: g for g in await after.since_last_run()}
    assert gaps["irc"].start <= dropped <= gaps["irc"].end
    assert gaps["irc"].reason == f"IRC connection lost (ConnectionResetError); then {BRIDGE_NOT_RUNNING}"
    assert gaps["irc"].start < gaps["slack"].start and gaps["slack"].reason == BRIDGE_NOT_RUNNING
    await archive.close()


async def test_the_tail_of_a_room_is_the_last_event_archived_from_it(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, _, archive = await _setup(tmp_path, archive_url)
    portals = PortalIndex()
    portals.add(PORTAL)
    tail = PortalTail(archive, portals)
    assert await tail.last_native_id("irc", "#trading", datetime.now(UTC)) is None
    await router.receive(_msg("irc", "#trading", "i1", "bob", "one"))
    await router.receive(_msg("irc", "#trading", "i2", "bob", "two"))
    cut = datetime.now(UTC) + timedelta(seconds=1)
    await router.receive(_msg("matrix", "!room:corp.test", "m1", "@alice:corp.test", "three"))
    await delivery.idle()  # a delivery record to irc is the bridge's own, not what was said there
    assert await tail.last_native_id("irc", "#trading", cut) == "i2"
    assert await tail.last_native_id("irc", "#trading", datetime(2000, 1, 1, tzinfo=UTC)) is None
    assert await tail.last_native_id("irc", "#elsewhere", cut) is None
    await archive.close()


class Gate(Recorder):
    """A network that takes nothing until the test opens it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.open = asyncio.Event()

    async def send(self, out: Outbound) -> str:
        await self.open.wait()
        return await super().send(out)


async def test_a_backlog_waits_in_the_outbox_and_is_delivered_in_order(
    tmp_path: Path, archive_url: str
) -> None:
    router, _, _, archive = await _setup(tmp_path, archive_url)
    gate = Gate("matrix")
    delivery = Delivery(
        archive, {"matrix": gate, "irc": Recorder("irc")}, frozenset({PORTAL.id}), queue_size=3
    )
    router.enqueue = delivery.enqueue
    held = []
    for i in range(25):
        await router.receive(_msg("irc", "#trading", f"i{i}", "bob", f"line {i}"))
        held.append(len(delivery._held))
    worker = delivery.workers[("matrix", "!room:corp.test")]
    assert max(held) <= 3 + 1 and worker.behind  # the rest is in the outbox, not in memory
    pending = await archive.call(archive.store.pending, {PORTAL.id}, ("matrix", "!room:corp.test"), None)
    assert len(pending) == 25
    gate.open.set()
    await delivery.idle()
    assert [o.text.plain for o in gate.sent] == [f"line {i}" for i in range(25)]
    assert not worker.behind and delivery._held == set()
    assert await archive.call(archive.store.pending, {PORTAL.id}) == []
    await delivery.stop()
    await archive.close()


async def test_resume_after_a_restart_reads_a_long_backlog_in_bounded_steps(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, _, archive = await _setup(tmp_path, archive_url)
    await delivery.stop()
    router.enqueue = lambda rows: None  # the process died before anything was delivered
    for i in range(12):
        await router.receive(_msg("irc", "#trading", f"i{i}", "bob", f"line {i}"))
    matrix = Recorder("matrix")
    restarted = Delivery(
        archive, {"matrix": matrix, "irc": Recorder("irc")}, frozenset({PORTAL.id}), queue_size=5
    )
    await restarted.resume()
    assert len(restarted._held) <= 5
    await restarted.idle()
    assert [o.text.plain for o in matrix.sent] == [f"line {i}" for i in range(12)]
    await restarted.stop()
    await archive.close()


async def test_gap_records_are_exported_and_the_bundle_verifies(tmp_path: Path, archive_url: str) -> None:
    signer = Signer.generate(tmp_path / "key")
    store = ArchiveStore(archive_url, signer)
    store.migrate()
    archive = AsyncArchive(store)
    await Gaps(archive, "bridge:heartbeat", NETWORKS).since_last_run()
    await Gaps(archive, "bridge:heartbeat", NETWORKS).since_last_run()  # after a crash
    out = tmp_path / "bundle"
    result = await archive.call(run_export, store, "jsonl", out, Filters(kinds=("gap",)), Actor("E9001"))
    assert result.records == 3
    exported = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["network"], r["reason"]) for r in exported] == [
        ("gap", n, BRIDGE_NOT_RUNNING) for n in NETWORKS
    ]
    assert all(r["from"] <= r["until"] for r in exported)
    assert verify_bundle(out, signer.public_key).failures == []
    await archive.close()
