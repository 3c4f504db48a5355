"""The archive store on SQLite and on the real local PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, event, select

from bridge.archive import AsyncArchive
from bridge.archive.schema import records
from bridge.archive.search import Filters, search
from bridge.archive.store import ArchiveStore, OutboxDraft, RecordDraft, leaf_hash
from bridge.model import Identity

ALICE = Identity("E1001", "Alice Smith", "Trading", frozenset({"traders"}), True, (("irc", "alice"),))


def _message(native_id: str, text: str, identity: Identity | None = ALICE) -> RecordDraft:
    return RecordDraft(
        kind="message",
        occurred_at=datetime(2026, 11, 22, 9, 30, tzinfo=UTC),
        network="irc",
        room="#trading",
        native_id=native_id,
        portal="trading",
        sender="alice",
        sender_display="alice",
        identity=identity,
        content={"text": {"plain": text, "spans": []}},
        plain=text,
    )


def test_append_assigns_gap_free_seq_and_dedups(archive_url: str) -> None:
    store = ArchiveStore(archive_url)
    store.migrate()
    store.migrate()  # idempotent: a restart migrates again
    first = store.append(
        _message("m1", "hello"), [OutboxDraft("matrix", "!r:corp.test", {"kind": "message"})]
    )
    second = store.append(_message("m2", "world"), [])
    again = store.append(_message("m1", "hello"), [])
    assert first is not None and second is not None
    assert (first.seq, second.seq) == (1, 2)
    assert again is None
    assert [r.payload for r in store.pending({"trading"})] == [{"kind": "message"}]
    store.close()


def test_delivery_maps_ids_and_is_archived_once(archive_url: str) -> None:
    store = ArchiveStore(archive_url)
    store.migrate()
    appended = store.append(_message("m1", "hello"), [OutboxDraft("matrix", "!r:corp.test", {})])
    assert appended is not None
    row = appended.outbox[0]
    assert store.delivered(row, "$event1") == 2
    assert store.delivered(row, "$event1") is None  # a second confirmation changes nothing
    assert store.pending({"trading"}) == []
    assert store.seq_for("matrix", "!r:corp.test", "$event1") == 1
    assert store.native_for(1, "matrix", "!r:corp.test") == "$event1"
    found = list(search(store.engine, Filters(kinds=("delivery",))))
    assert [(r["network"], r["native_id"], r["target_seq"]) for r in found] == [("matrix", "$event1", 1)]
    store.close()


def test_records_carry_identity_snapshot_and_verify_their_leaf(archive_url: str) -> None:
    store = ArchiveStore(archive_url)
    store.migrate()
    store.append(_message("m1", "Déjà vu — 100% ☃"), [])
    [found] = list(search(store.engine, Filters(employee="E1001")))
    assert found["text"] == "Déjà vu — 100% ☃"
    assert (found["name"], found["department"], found["portal"]) == ("Alice Smith", "Trading", "trading")
    assert found["occurred_at"] == "2026-11-22T09:30:00.000000Z"
    with store.engine.connect() as conn:
        row = conn.execute(select(records)).mappings().one()
    assert leaf_hash(dict(row)) == row["leaf_hash"]
    assert json.loads(row["flags"]) == []
    assert list(search(store.engine, Filters(text="100%"))) != []
    assert list(search(store.engine, Filters(text="nothing like it"))) == []
    store.close()


def test_state_store_round_trip(archive_url: str) -> None:
    store = ArchiveStore(archive_url)
    store.migrate()
    assert store.state_get("matrix:txn:1") is None
    store.state_put("matrix:txn:1", "done")
    store.state_put("matrix:txn:1", "again")
    assert store.state_get("matrix:txn:1") == "again"
    store.close()


def test_a_reader_in_the_middle_of_a_long_read_does_not_hold_up_the_writer(archive_url: str) -> None:
    """An export or search on a live archive must not stall the bridge's appends (SQLite: no write lock)."""
    store = ArchiveStore(archive_url)
    store.migrate()
    for n in range(3):
        store.append(_message(f"r{n}", f"before {n}"), [])
    reader = ArchiveStore(archive_url)  # as `switchboard archive export` would, in its own process
    with reader.engine.connect() as conn:
        rows = conn.execute(select(records.c.seq).order_by(records.c.seq))
        assert rows.fetchone() == (1,)  # the read transaction is open
        appended = store.append(_message("r3", "during the read"), [])
        assert appended is not None and appended.seq == 4
        assert [seq for (seq,) in rows] == [2, 3]  # the reader keeps its own snapshot
    reader.close()
    store.close()


def test_state_keys_put_with_a_time_to_live_are_pruned_after_it(archive_url: str) -> None:
    store = ArchiveStore(archive_url)
    store.migrate()
    store.state_put("matrix:txn:1", "done", ttl=60)
    store.state_put("matrix:rooms", "[]")  # no ttl: kept
    store.state_put("matrix:txn:2", "done", ttl=3600)
    assert store.prune_state() == 0
    assert store.prune_state(datetime.now(UTC) + timedelta(seconds=120)) == 1
    assert store.state_get("matrix:txn:1") is None and store.state_get("matrix:txn:2") == "done"
    store.state_put("matrix:txn:2", "done")  # put again without a ttl: no longer expires
    assert store.prune_state(datetime.now(UTC) + timedelta(days=2)) == 0
    assert store.state_get("matrix:rooms") == "[]" and store.state_get("matrix:txn:2") == "done"
    store.close()


async def test_concurrent_writes_share_commits_and_a_failing_one_fails_alone(archive_url: str) -> None:
    store = ArchiveStore(archive_url)
    store.migrate()
    archive = AsyncArchive(store)
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))

    def message(native_id: str, text: str) -> Callable[[Connection], Any]:
        return partial(store.append_in, draft=_message(native_id, text), deliveries=[])

    def broken(conn: Connection) -> None:
        store.append_in(conn, _message("bad", "half written"), [])
        raise ValueError("this one is refused")

    together = await asyncio.gather(*(archive.write(message(f"g{n}", f"group {n}")) for n in range(10)))
    assert [a.seq for a in together] == list(range(1, 11))  # in order, each its own result
    assert len(commits) == 1  # ten events, one transaction, one fsync

    writes = [archive.write(message(f"h{n}", f"more {n}")) for n in range(5)]
    writes.insert(2, archive.write(broken))
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(results[2], ValueError)
    assert [r.seq for i, r in enumerate(results) if i != 2] == list(range(11, 16))  # gap-free
    assert len(commits) == 1 + 5  # the shared transaction failed; the others were then committed alone
    assert list(search(store.engine, Filters(text="half written"))) == []
    assert await archive.write(message("h0", "a redelivery")) is None
    await archive.close()
