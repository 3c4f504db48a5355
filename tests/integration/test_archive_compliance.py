"""Holds, retention, search and exports on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import email
import json
import shutil
import zipfile
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bridge.archive.audit import Actor
from bridge.archive.export.check import verify_bundle
from bridge.archive.export.pieces import file_sha256
from bridge.archive.export.run import run_export
from bridge.archive.retention import Retention, active_holds, place_hold, purge, release_hold
from bridge.archive.schema import contents
from bridge.archive.search import Filters, search
from bridge.archive.verify import verify_archive
from tests.integration.test_archive_integrity import ALICE, BOB, draft, fill, signed_store

TOMORROW = datetime.now(UTC) + timedelta(days=1)
NO_RETENTION = Retention.from_config({"default": "0d"})


def test_hold_keeps_content_through_a_purge_that_still_verifies(archive_url: str, tmp_path: Path) -> None:
    store = signed_store(archive_url, tmp_path, every=5)
    fill(store, 6)  # E1001 writes the even ones, E1002 the odd ones
    hold = place_hold(store, Actor("E9001"), "SEC inquiry 17", employee="E1002")
    other = place_hold(store, Actor("E9001"), "closed matter", portal="trading")
    release_hold(store, Actor("E9001"), other, "matter closed")
    with store.engine.connect() as conn:
        assert [h.id for h in active_holds(conn)] == [hold]
    dry = purge(store, Actor("E9001"), NO_RETENTION, TOMORROW, datetime.now(UTC), dry_run=True)
    assert (dry.seqs, dry.held, dry.purge_seq) == ([2, 4, 6], [1, 3, 5], None)
    result = purge(store, Actor("E9001"), NO_RETENTION, TOMORROW, datetime.now(UTC))
    assert result.seqs == [2, 4, 6] and result.purge_seq is not None
    by_seq = {r["seq"]: r for r in search(store.engine, Filters())}
    assert [by_seq[s]["purged"] for s in range(1, 7)] == [False, True] * 3
    assert by_seq[2]["text"] is None and by_seq[2]["content_sha256"] is not None
    assert by_seq[1]["text"] == "hello number 1"
    purge_record = by_seq[result.purge_seq]
    assert (purge_record["kind"], purge_record["actor"], purge_record["count"]) == ("purge", "E9001", 3)
    assert list(search(store.engine, Filters(text="number 2"))) == []  # gone from the index too
    assert verify_archive(store.engine, store.signer.public_key).failure is None  # type: ignore[union-attr]
    again = purge(store, Actor("E9001"), NO_RETENTION, TOMORROW, datetime.now(UTC))
    assert again.seqs == []  # nothing left to clear, but the run is on record
    with pytest.raises(ValueError, match="no active hold"):
        release_hold(store, Actor("E9001"), other)
    store.close()


def test_retention_classes_per_network_and_room(archive_url: str, tmp_path: Path) -> None:
    store = signed_store(archive_url, tmp_path)
    store.append(draft(1, "irc words"), [])
    store.append(draft(2, "matrix words", network="matrix"), [])
    retention = Retention.from_config({"default": "7y", "networks": {"irc": "0d"}})
    assert purge(store, Actor("E9001"), retention, TOMORROW, datetime.now(UTC), dry_run=True).seqs == [1]
    by_room = Retention.from_config({"default": "0d", "rooms": {"trading": "3y"}})
    assert purge(store, Actor("E9001"), by_room, TOMORROW, datetime.now(UTC), dry_run=True).seqs == []
    # --before in the future does not move retention forward: only what is past it today
    assert purge(
        store, Actor("E9001"), retention, TOMORROW + timedelta(days=3650), datetime.now(UTC), True
    ).seqs == [1]
    store.close()


def test_search_by_employee_finds_every_handle_and_full_text(archive_url: str, tmp_path: Path) -> None:
    store = signed_store(archive_url, tmp_path)
    store.append(draft(1, "Guaranteed returns on $ACME", ALICE, "matrix"), [])
    store.append(draft(2, "call me about it", ALICE, "slack"), [])
    store.append(draft(3, "sure thing", BOB, "irc"), [])
    store.append(draft(4, "renamed but still me", ALICE, "irc", sender="alice_away"), [])
    found = list(search(store.engine, Filters(employee="E1001")))
    assert [(r["network"], r["sender"]) for r in found] == [
        ("matrix", "@alice:corp.test"),
        ("slack", "U0ALICE"),
        ("irc", "alice_away"),
    ]
    assert [r["seq"] for r in search(store.engine, Filters(text="guaranteed acme"))] == [1]
    assert [r["seq"] for r in search(store.engine, Filters(text="GUARANTEED", network="slack"))] == []
    assert [r["seq"] for r in search(store.engine, Filters(text='me "OR" x'))] == []  # no query syntax
    assert [r["seq"] for r in search(store.engine, Filters(text="me", since="2026-11-22T09:03:00"))] == [4]
    assert [r["seq"] for r in search(store.engine, Filters(kinds=("message",), limit=2))] == [1, 2]
    store.close()


def _exported(archive_url: str, tmp_path: Path, fmt: str) -> tuple[Path, object]:
    store = signed_store(archive_url, tmp_path, every=4)
    store.append(draft(1, "first words", ALICE, "matrix"), [])
    reply = draft(2, "a reply, with a file", BOB, "matrix")
    reply.attrs["reply_to"] = "matrix-1"
    reply.content["attachments"] = [  # type: ignore[index]
        {"name": "q3.pdf", "mimetype": "application/pdf", "size": 10, "sha256": "ab" * 32, "url": None}
    ]
    store.append(reply, [])
    store.append(draft(3, "first words, fixed", ALICE, "matrix", kind="edit", target="matrix-1"), [])
    store.append(draft(4, "", BOB, "matrix", kind="delete", target="matrix-2"), [])
    store.append(draft(5, "not exported", ALICE, "slack"), [])
    out = tmp_path / f"bundle-{fmt}"
    result = run_export(
        store, fmt, out, Filters(portal="trading", until="2026-11-22T09:05:00"), Actor("E9001")
    )
    assert (result.records, result.tree_size) == (4, 5)
    exported = next(search(store.engine, Filters(kinds=("export",))))
    assert exported["actor"] == "E9001" and exported["records"] == 4
    assert exported["manifest_sha256"] == file_sha256(out / "manifest.json")
    store.close()
    return out, result


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "eml", "rsmf"])
def test_exports_verify_offline_and_name_the_changed_record(
    archive_url: str, tmp_path: Path, fmt: str
) -> None:
    out, _ = _exported(archive_url, tmp_path, fmt)
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(file_sha256(out / name) == digest for name, digest in manifest["files"].items())
    report = verify_bundle(out)
    assert report.failure is None and report.records == 4
    if fmt == "jsonl":
        lines = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
        assert [r.get("target_seq") for r in lines] == [None, None, 1, 2]
        assert lines[1]["attachments"][0]["name"] == "q3.pdf"
        target = out / "records.jsonl"
    elif fmt == "csv":
        rows = list(csv.DictReader((out / "records.csv").open(newline="")))
        assert [r["text"] for r in rows[:2]] == ["first words", "a reply, with a file"]
        target = out / "records.csv"
    elif fmt == "eml":
        msg = email.message_from_bytes((out / "eml/0000000002.eml").read_bytes(), policy=policy.default)
        assert msg["X-Switchboard-Network"] == "matrix" and msg["X-Switchboard-Employee-Id"] == "E1002"
        assert (
            msg["X-Switchboard-Native-Id"] == "matrix-2"
            and msg["Message-ID"] == "<seq-2@switchboard.invalid>"
        )
        assert "Bob Jones" in msg["From"] and "trading" in msg["Subject"] and msg["Date"]
        assert msg.get_body(("plain",)).get_content().strip() == "a reply, with a file"  # type: ignore[union-attr]
        assert [p.get_filename() for p in msg.iter_attachments()] == ["q3.pdf"]
        target = out / "eml/0000000002.eml"
    else:
        with zipfile.ZipFile(out / "rsmf.zip") as zf:
            rsmf = json.loads(zf.read("rsmf_manifest.json"))
        assert rsmf["version"] == "2.0.0" and {p["id"] for p in rsmf["participants"]} == {"E1001", "E1002"}
        assert rsmf["conversations"][0]["id"] == "trading"
        first, second = rsmf["events"]
        assert (
            first["edits"][0]["previous"] == "first words"
            and first["edits"][0]["new"] == "first words, fixed"
        )
        assert second["parent"] == "seq-1" and second["deleted"] is True
        target = out / "rsmf.zip"
    if fmt == "rsmf":
        with zipfile.ZipFile(target) as zf:
            data = json.loads(zf.read("rsmf_manifest.json"))
        data["events"][1]["body"] = "a reply, with a fil3"
        with zipfile.ZipFile(target, "w") as zf:
            zf.writestr("rsmf_manifest.json", json.dumps(data))
    else:
        data = target.read_bytes()
        at = data.index(b"a reply, with a file")
        target.write_bytes(data[:at] + b"A" + data[at + 1 :])
    failure = verify_bundle(out).failure
    assert failure is not None and str(failure).startswith("seq 2:"), failure


def test_a_forged_bundle_fails_verification(archive_url: str, tmp_path: Path) -> None:
    out, _ = _exported(archive_url, tmp_path, "jsonl")
    out2 = tmp_path / "copy"
    shutil.copytree(out, out2)
    proofs = (out / "proofs.jsonl").read_bytes().splitlines()
    (out / "proofs.jsonl").write_bytes(b"\n".join(proofs[:-1]) + b"\n")  # drop a record
    assert "proofs.jsonl" in str(verify_bundle(out).failure)
    manifest = json.loads((out2 / "manifest.json").read_text())
    manifest["records"] = 3
    (out2 / "manifest.json").write_text(json.dumps(manifest))
    assert "manifest.json: the signature does not verify" in str(verify_bundle(out2).failure)
    assert verify_bundle(out, trusted_key="00" * 32).failure is not None


def test_purged_content_exports_as_purged(archive_url: str, tmp_path: Path) -> None:
    store = signed_store(archive_url, tmp_path)
    fill(store, 2)
    purge(store, Actor("E9001"), NO_RETENTION, TOMORROW, datetime.now(UTC))
    with store.engine.connect() as conn:
        assert conn.execute(select(contents.c.body).where(contents.c.seq == 1)).scalar() is None
    out = tmp_path / "purged"
    run_export(store, "jsonl", out, Filters(kinds=("message",)), Actor("E9001"))
    lines = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert [(r["purged"], r["text"]) for r in lines] == [(True, None), (True, None)]
    assert verify_bundle(out).failure is None
    store.close()


def test_a_raw_sql_purge_passes_the_trigger_but_not_verify(archive_url: str, tmp_path: Path) -> None:
    store = signed_store(archive_url, tmp_path)
    fill(store, 4)
    place_hold(store, Actor("E9001"), "keep E1002", employee="E1002")
    result = purge(store, Actor("E9001"), NO_RETENTION, TOMORROW, datetime.now(UTC))
    assert result.seqs == [2, 4] and result.purge_seq is not None
    with store.engine.begin() as conn:  # triggers still on: a purge-shaped update of held content
        conn.execute(
            update(contents)
            .where(contents.c.seq == 3)
            .values(body=None, plain=None, purged_by=result.purge_seq)
        )
    failure = verify_archive(store.engine, store.signer.public_key).failure  # type: ignore[union-attr]
    assert (
        str(failure)
        == f"seq 2: content cleared under purge seq {result.purge_seq} is not what that purge lists"
    )
    store.close()
