"""Integrity of the archive on SQLite and PostgreSQL: signed checkpoints, append-only triggers,
and `verify` naming the seq of every kind of tampering a database admin could do.

The helpers at the top build the small archives the other archive tests use too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from bridge.archive import checkpoints, witness
from bridge.archive.conversation import conversation, render
from bridge.archive.hashing import leaf_hash
from bridge.archive.merkle import MerkleTree
from bridge.archive.schema import contents, records
from bridge.archive.search import Filters, search
from bridge.archive.signing import Signer
from bridge.archive.store import ArchiveStore, RecordDraft
from bridge.archive.verify import verify_archive
from bridge.model import Identity

ALICE = Identity(
    "E1001",
    "Alice Smith",
    "Trading",
    handles=(("matrix", "@alice:corp.test"), ("slack", "U0ALICE"), ("irc", "alice")),
)
BOB = Identity("E1002", "Bob Jones", "Sales", handles=(("matrix", "@bob:corp.test"), ("irc", "bob")))
ROOMS = {"matrix": "!trading:corp.test", "slack": "C0TRADING", "irc": "#trading"}
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def draft(
    n: int,
    text: str,
    who: Identity | None = ALICE,
    network: str = "irc",
    kind: str = "message",
    target: str | None = None,
    sender: str | None = None,
) -> RecordDraft:
    d = RecordDraft(
        kind=kind,
        occurred_at=T0 + timedelta(minutes=n),
        network=network,
        room=ROOMS[network],
        native_id=f"{network}-{n}",
        portal="trading",
        sender=sender or (who.handle(network) if who else "stranger") or "x",
        sender_display=who.name if who else "stranger",
        identity=who,
    )
    if kind != "delete":
        d.content = {"text": {"plain": text, "spans": []}}
        d.plain = text
    if target:
        d.attrs["target_native_id"] = target
    return d


def signed_store(url: str, tmp_path: Path, every: int = 5) -> ArchiveStore:
    key = tmp_path / "archive-signing.key"
    signer = Signer.load(key) if key.exists() else Signer.generate(key)
    store = ArchiveStore(url, signer, checkpoint_every=every, checkpoint_seconds=60)
    store.migrate()
    return store


def fill(store: ArchiveStore, count: int = 12) -> None:
    people = [ALICE, BOB]
    for n in range(1, count + 1):
        store.append(draft(n, f"hello number {n}", people[n % 2]), [])


def drop_triggers(store: ArchiveStore) -> None:
    """What an attacker with admin rights on the database does first."""
    with store.engine.begin() as conn:
        if store.is_postgres:
            for table in ("records", "contents", "checkpoints", "files"):
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            return
        names = conn.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name NOT LIKE 'contents_fts%'")
        ).scalars()
        for name in list(names):
            conn.execute(text(f"DROP TRIGGER {name}"))


def tamper(store: ArchiveStore, *statements: str) -> None:
    drop_triggers(store)
    with store.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _verify(store: ArchiveStore, chunk: int = 50_000, workers: int = 1) -> str | None:
    key = store.signer.public_key if store.signer else None
    failure = verify_archive(store.engine, key, chunk=chunk, workers=workers).failure
    return None if failure is None else str(failure)


def test_checkpoints_are_signed_every_n_records_and_verify(archive_url: str, tmp_path: Path) -> None:
    store = signed_store(archive_url, tmp_path, every=5)
    fill(store, 12)
    with store.engine.connect() as conn:
        cps = checkpoints.all_checkpoints(conn)
        leaves = [
            bytes.fromhex(h)
            for h in conn.execute(select(records.c.leaf_hash).order_by(records.c.seq)).scalars()
        ]
    assert [c.tree_size for c in cps] == [5, 10]
    tree = MerkleTree(leaves)
    assert all(c.signature_valid() and c.root == tree.root(c.tree_size).hex() for c in cps)
    report = verify_archive(store.engine, store.signer.public_key)  # type: ignore[union-attr]
    assert (report.failure, report.records, report.checkpoints, report.signed) == (None, 12, 2, 10)
    assert verify_archive(store.engine, "ab" * 32).failure is not None  # another key is not trusted
    store.close()


def test_checkpoint_if_due_signs_after_t_seconds(archive_url: str, tmp_path: Path) -> None:
    store = signed_store(archive_url, tmp_path, every=1000)
    fill(store, 3)
    now = datetime.now(UTC)
    assert store.checkpoint_if_due(now) is None  # the oldest unsigned record is fresh
    made = store.checkpoint_if_due(now + timedelta(seconds=61))
    assert made is not None and made.tree_size == 3
    assert store.checkpoint_if_due(now + timedelta(seconds=3600)) is None  # nothing new to sign
    store.close()


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        # one byte of a message's content
        (
            ["UPDATE contents SET body = replace(body, 'number 3', 'numbeR 3') WHERE seq = 3"],
            "seq 3: its content",
        ),
        # one byte of a record
        (["UPDATE records SET sender = 'alicE' WHERE seq = 7"], "seq 7: the record does not match its leaf"),
        # a record removed
        (["DELETE FROM contents WHERE seq = 4", "DELETE FROM records WHERE seq = 4"], "seq 4: missing"),
        # two records swapped
        (
            [
                "UPDATE records SET seq = -1 WHERE seq = 3",
                "UPDATE records SET seq = 3 WHERE seq = 4",
                "UPDATE records SET seq = 4 WHERE seq = -1",
            ],
            "seq 3: the record does not match its leaf",
        ),
        # the tail cut below the last checkpoint (signed at 10)
        (["DELETE FROM contents WHERE seq > 7", "DELETE FROM records WHERE seq > 7"], "seq 8: missing"),
        # content cleared without a purge record
        (["UPDATE contents SET body = NULL, plain = NULL WHERE seq = 2"], "seq 2: its content was cleared"),
        # a checkpoint rewritten
        (
            # (always a different first digit: replacing it with 'f' was a no-op one time in 16)
            [
                "UPDATE checkpoints SET root = CASE WHEN substr(root, 1, 1) = 'f' THEN '0' ELSE 'f' END"
                " || substr(root, 2) WHERE tree_size = 5"
            ],
            "seq 5:",
        ),
    ],
)
def test_tampering_is_named_by_seq(
    archive_url: str, tmp_path: Path, statements: list[str], expected: str
) -> None:
    store = signed_store(archive_url, tmp_path, every=5)
    fill(store, 12)
    assert _verify(store) is None
    tamper(store, *statements)
    failure = _verify(store)
    assert failure is not None and failure.startswith(expected), failure
    # the same in ranges of 4 records checked by two processes: gaps at range edges included
    parallel = _verify(store, chunk=4, workers=2)
    assert parallel is not None and parallel.startswith(expected), parallel
    store.close()


def test_a_rewrite_that_fixes_the_leaf_hash_breaks_the_signed_root(archive_url: str, tmp_path: Path) -> None:
    store = signed_store(archive_url, tmp_path, every=5)
    fill(store, 12)
    with store.engine.connect() as conn:
        row = dict(conn.execute(select(records).where(records.c.seq == 7)).mappings().one())
    row["sender"] = "mallory"
    forged = leaf_hash(row)
    tamper(store, f"UPDATE records SET sender = 'mallory', leaf_hash = '{forged}' WHERE seq = 7")
    failure = _verify(store)
    assert failure is not None and failure.startswith("seq 6: records 6..10 do not match"), failure
    store.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE records SET sender = 'x' WHERE seq = 1",
        "DELETE FROM records WHERE seq = 12",
        "UPDATE checkpoints SET root = 'x'",
        "DELETE FROM checkpoints",
        "DELETE FROM contents WHERE seq = 1",
        "UPDATE contents SET body = '{}' WHERE seq = 1",
        "UPDATE contents SET body = NULL, plain = NULL WHERE seq = 1",  # a purge needs a purge record
        "UPDATE contents SET body = NULL, plain = NULL, purged_by = 2 WHERE seq = 1",  # 2 is no purge
    ],
)
def test_the_log_rejects_update_and_delete_from_raw_sql(
    archive_url: str, tmp_path: Path, statement: str
) -> None:
    store = signed_store(archive_url, tmp_path, every=5)
    fill(store, 12)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert _verify(store) is None
    store.close()


def test_edits_and_deletes_link_to_the_original_which_stays_byte_identical(
    archive_url: str, tmp_path: Path
) -> None:
    store = signed_store(archive_url, tmp_path, every=1000)
    store.append(draft(1, "I will buy 100"), [])
    with store.engine.connect() as conn:
        original = dict(conn.execute(select(records).where(records.c.seq == 1)).mappings().one())
        body = conn.execute(select(contents.c.body).where(contents.c.seq == 1)).scalar()
    store.append(draft(2, "I will buy 200", kind="edit", target="irc-1"), [])
    store.append(draft(3, "I will buy 300", kind="edit", target="irc-1"), [])
    store.append(draft(4, "", kind="delete", target="irc-1"), [])
    found = list(search(store.engine, Filters(portal="trading")))
    assert [(r["seq"], r["kind"], r.get("target_seq")) for r in found] == [
        (1, "message", None),
        (2, "edit", 1),
        (3, "edit", 1),
        (4, "delete", 1),
    ]
    [entry] = conversation(store.engine, "trading")
    assert [entry.message["text"], *(e["text"] for e in entry.edits)] == [
        "I will buy 100",
        "I will buy 200",
        "I will buy 300",
    ]
    assert entry.deletion is not None and entry.deletion["seq"] == 4
    lines = list(render(entry))
    assert "I will buy 100" in lines[0] and "I will buy 300" in lines[2] and "deleted" in lines[3]
    assert [e.message["seq"] for e in conversation(store.engine, "trading", around=3)] == [1]
    with store.engine.connect() as conn:
        assert dict(conn.execute(select(records).where(records.c.seq == 1)).mappings().one()) == original
        assert conn.execute(select(contents.c.body).where(contents.c.seq == 1)).scalar() == body
    assert _verify(store) is None
    store.close()


def test_a_cut_tail_with_its_checkpoints_removed_is_caught(archive_url: str, tmp_path: Path) -> None:
    store = signed_store(archive_url, tmp_path, every=5)
    fill(store, 12)
    published = store.checkpoint()  # e.g. the head an export bundle carried away
    assert published is not None and published.tree_size == 12
    tamper(
        store,
        "DELETE FROM checkpoints WHERE tree_size >= 10",
        "DELETE FROM contents WHERE seq > 9",
        "DELETE FROM records WHERE seq > 9",
    )
    assert _verify(store) is None  # nothing inside the database shows it
    key = store.signer.public_key  # type: ignore[union-attr]
    failure = verify_archive(store.engine, key, witnessed=[published]).failure
    assert str(failure).startswith("seq 10: missing"), failure
    tamper(store, "DELETE FROM checkpoints")
    failure = verify_archive(store.engine, key, max_unsigned=5).failure
    assert str(failure).startswith("seq 1: no checkpoint covers this or the 8 records after it"), failure
    store.close()


def test_the_checkpoint_log_witnesses_every_signed_checkpoint(archive_url: str, tmp_path: Path) -> None:
    log = tmp_path / "worm" / "checkpoints.jsonl"
    log.parent.mkdir()
    store = signed_store(archive_url, tmp_path, every=5)
    store.checkpoint_log = log
    fill(store, 12)  # signed at 5 and 10 as the records come in
    with pytest.raises(RuntimeError), store.writing() as conn:  # a transaction that signs, then fails
        for n in range(13, 16):
            store.append_locked(conn, draft(n, "never committed"))
        raise RuntimeError("the disk filled up")
    store.checkpoint()  # the tail, at 12
    assert [cp.tree_size for cp in witness.read(log)] == [5, 10, 12]
    tamper(
        store,
        "DELETE FROM checkpoints WHERE tree_size >= 10",
        "DELETE FROM contents WHERE seq > 7",
        "DELETE FROM records WHERE seq > 7",
    )
    assert _verify(store) is None  # the database alone looks whole
    key = store.signer.public_key  # type: ignore[union-attr]
    failure = verify_archive(store.engine, key, witnessed=witness.read(log)).failure
    assert str(failure).startswith("seq 8: missing: the checkpoint of 10 records"), failure
    store.close()


def test_a_torn_last_line_of_the_checkpoint_log_is_skipped_but_a_forged_line_is_not(tmp_path: Path) -> None:
    signer = Signer.generate(tmp_path / "k")
    log = tmp_path / "checkpoints.jsonl"
    first = signer.sign(5, "ab" * 32, "2026-11-22T09:00:00.000000Z")
    witness.publish(log, [first])
    with log.open("ab") as f:
        f.write(b'{"tree_size": 10, "ro')  # the crash came mid-append
    assert witness.read(log) == [first]
    log.write_bytes(log.read_bytes() + b"\n" + b"not a checkpoint\n")
    with pytest.raises(ValueError, match=r"checkpoints.jsonl:2: not a checkpoint"):
        witness.read(log)


def test_a_checkpoint_log_that_cannot_be_written_fails_no_append(
    archive_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = signed_store(archive_url, tmp_path, every=5)
    store.checkpoint_log = tmp_path / "unmounted" / "checkpoints.jsonl"  # its storage went away
    appended = [store.append(draft(n, f"still archived {n}"), []) for n in range(1, 8)]
    assert [a.seq for a in appended if a] == list(range(1, 8))  # committed, and reported as such
    assert "could not append 1 checkpoints to archive.checkpoint_log" in caplog.text
    assert _verify(store) is None  # the checkpoint is in the database all the same
    store.close()
