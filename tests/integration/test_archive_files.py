"""Attached files in the archive, on SQLite and PostgreSQL: kept with their record, append-only,
checked by verify, cleared by a purge (but not under a hold) and carried into every export format."""

from __future__ import annotations

import email
import hashlib
import json
import zipfile
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bridge.archive.audit import Actor
from bridge.archive.conversation import conversation, render
from bridge.archive.export.check import verify_bundle
from bridge.archive.export.run import run_export
from bridge.archive.retention import Retention, place_hold, purge
from bridge.archive.search import Filters
from bridge.archive.store import ArchiveStore, RecordDraft
from bridge.archive.verify import verify_archive
from tests.integration.test_archive_integrity import ALICE, BOB, draft, signed_store, tamper

PDF = b"%PDF-1.4 quarterly numbers " + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n" + bytes(reversed(range(256))) * 4
TOMORROW = datetime.now(UTC) + timedelta(days=1)
NO_RETENTION = Retention.from_config({"default": "0d"})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def with_files(d: RecordDraft, *named: tuple[str, str, bytes]) -> RecordDraft:
    """`d` carrying files, listed in its content as the router lists them."""
    assert d.content is not None
    d.content["attachments"] = [
        {"name": name, "mimetype": mimetype, "size": len(data), "sha256": sha(data), "stored": True}
        for name, mimetype, data in named
    ]
    d.files = tuple(data for _, _, data in named)
    return d


def filled(archive_url: str, tmp_path: Path) -> ArchiveStore:
    """seq 1: Alice's PDF; 2: Bob's PNG and the PDF again; 3: a message without files."""
    store = signed_store(archive_url, tmp_path, every=2)
    store.append(with_files(draft(1, "the numbers", ALICE), ("q3.pdf", "application/pdf", PDF)), [])
    store.append(
        with_files(
            draft(2, "my desk, and the numbers", BOB),
            ("desk.png", "image/png", PNG),
            ("q3 (copy).pdf", "application/pdf", PDF),
        ),
        [],
    )
    store.append(draft(3, "no files here", ALICE), [])
    return store


def _verify(store: ArchiveStore) -> str | None:
    failure = verify_archive(store.engine, store.signer.public_key).failure  # type: ignore[union-attr]
    return None if failure is None else str(failure)


def test_files_are_kept_per_record_and_verify(archive_url: str, tmp_path: Path) -> None:
    store = filled(archive_url, tmp_path)
    assert store.files_of(1) == {sha(PDF): PDF}
    assert store.files_of(2) == {sha(PNG): PNG, sha(PDF): PDF}
    assert store.files_of(3) == {}
    assert _verify(store) is None
    store.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE files SET size = size + 1 WHERE seq = 1",
        "DELETE FROM files WHERE seq = 1",
        "UPDATE files SET data = NULL WHERE seq = 1",  # a purge needs a purge record
        "UPDATE files SET data = NULL, purged_by = 2 WHERE seq = 1",  # 2 is no purge
    ],
)
def test_files_reject_update_and_delete_from_raw_sql(
    archive_url: str, tmp_path: Path, statement: str
) -> None:
    store = filled(archive_url, tmp_path)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert store.files_of(1) == {sha(PDF): PDF}
    store.close()


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        # a file's first byte cut off
        (
            [f"UPDATE files SET data = substr(data, 2) WHERE seq = 2 AND sha256 = '{sha(PNG)}'"],
            f"seq 2: its file {sha(PNG)[:12]}… does not match its hash",
        ),
        # a file removed
        (
            [f"DELETE FROM files WHERE seq = 2 AND sha256 = '{sha(PDF)}'"],
            f"seq 2: its file {sha(PDF)[:12]}… is missing",
        ),
        # a file swapped for another, under the other's name
        (
            [
                "DELETE FROM files WHERE seq = 1",
                f"INSERT INTO files SELECT 1, sha256, size, data, NULL FROM files WHERE seq = 2 AND sha256 = '{sha(PNG)}'",
            ],
            f"seq 1: its file {sha(PNG)[:12]}… is not one its content lists",
        ),
        # a file cleared without a purge
        (
            ["UPDATE files SET data = NULL WHERE seq = 1"],
            f"seq 1: its file {sha(PDF)[:12]}… was cleared without a purge",
        ),
    ],
)
def test_verify_names_the_record_of_a_tampered_file(
    archive_url: str, tmp_path: Path, statements: list[str], expected: str
) -> None:
    store = filled(archive_url, tmp_path)
    tamper(store, *statements)
    failure = _verify(store)
    assert failure is not None and failure.startswith(expected), failure
    store.close()


def test_purge_clears_files_with_their_content_except_under_a_hold(archive_url: str, tmp_path: Path) -> None:
    store = filled(archive_url, tmp_path)
    place_hold(store, Actor("E9001"), "SEC inquiry 17", employee="E1002")
    result = purge(store, Actor("E9001"), NO_RETENTION, TOMORROW, datetime.now(UTC))
    assert result.seqs == [1, 3] and result.held == [2]
    assert store.files_of(1) == {}  # Alice's copy is gone …
    assert store.files_of(2) == {sha(PNG): PNG, sha(PDF): PDF}  # … Bob's, held, is not
    assert _verify(store) is None
    store.close()


def test_a_held_file_cleared_under_someone_elses_purge_fails_verify(archive_url: str, tmp_path: Path) -> None:
    store = filled(archive_url, tmp_path)
    place_hold(store, Actor("E9001"), "SEC inquiry 17", employee="E1002")
    result = purge(store, Actor("E9001"), NO_RETENTION, TOMORROW, datetime.now(UTC))
    with store.engine.begin() as conn:  # triggers on: a purge-shaped update of a held file
        conn.execute(text(f"UPDATE files SET data = NULL, purged_by = {result.purge_seq} WHERE seq = 2"))
    failure = _verify(store)
    assert failure is not None and failure.startswith("seq 2: its file") and "not with its content" in failure
    store.close()


def test_the_conversation_shows_each_file_and_whether_it_is_kept(archive_url: str, tmp_path: Path) -> None:
    store = filled(archive_url, tmp_path)
    described = draft(4, "a big one", ALICE)
    described.content["attachments"] = [  # type: ignore[index]
        {"name": "film.mov", "mimetype": "video/quicktime", "size": 10**9, "sha256": "", "url": "mxc://x/y"}
    ]
    store.append(described, [])
    entries = conversation(store.engine, "trading")
    lines = [line for entry in entries for line in render(entry)]
    assert f"[file] desk.png (image/png, {len(PNG)} bytes) sha256 {sha(PNG)[:12]}… kept in the archive" in (
        "\n".join(lines)
    )
    assert any("[file] film.mov" in line and "not kept" in line for line in lines)
    assert [a["name"] for a in entries[1].to_json()["attachments"]] == ["desk.png", "q3 (copy).pdf"]
    store.close()


def _export(archive_url: str, tmp_path: Path, fmt: str) -> Path:
    store = filled(archive_url, tmp_path)
    out = tmp_path / f"bundle-{fmt}"
    run_export(store, fmt, out, Filters(kinds=("message",)), Actor("E9001"))
    store.close()
    assert verify_bundle(out).failure is None
    return out


def test_eml_export_attaches_the_files_themselves(archive_url: str, tmp_path: Path) -> None:
    out = _export(archive_url, tmp_path, "eml")
    msg = email.message_from_bytes((out / "eml/0000000002.eml").read_bytes(), policy=policy.default)
    parts = {p.get_filename(): (p.get_content_type(), p.get_content()) for p in msg.iter_attachments()}
    assert parts == {"desk.png": ("image/png", PNG), "q3 (copy).pdf": ("application/pdf", PDF)}
    # One byte of an attached file changed in the bundle: verify names the record it belongs to.
    path = out / "eml/0000000002.eml"
    data = path.read_bytes()
    at = data.index(b"iVBORw0K")  # the base64 of the PNG signature
    path.write_bytes(data[:at] + b"j" + data[at + 1 :])
    assert str(verify_bundle(out).failure).startswith("seq 2:")


def test_rsmf_export_puts_the_files_in_the_zip(archive_url: str, tmp_path: Path) -> None:
    out = _export(archive_url, tmp_path, "rsmf")
    with zipfile.ZipFile(out / "rsmf.zip") as zf:
        manifest = json.loads(zf.read("rsmf_manifest.json"))
        event = next(e for e in manifest["events"] if e["id"] == "seq-2")
        got = {a["display"]: zf.read(a["id"]) for a in event["attachments"]}
        members = {name: zf.read(name) for name in zf.namelist()}
    assert got == {"desk.png": PNG, "q3 (copy).pdf": PDF}
    # A file replaced inside the zip: the manifest still matches, the file does not.
    [png_member] = [a["id"] for a in event["attachments"] if a["display"] == "desk.png"]
    members[png_member] = PNG[:-1] + b"!"
    with zipfile.ZipFile(out / "rsmf.zip", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    assert str(verify_bundle(out).failure).startswith("seq 2:")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_line_exports_write_each_file_once(archive_url: str, tmp_path: Path, fmt: str) -> None:
    out = _export(archive_url, tmp_path, fmt)
    assert sorted(p.name for p in (out / "files").iterdir()) == sorted([sha(PDF), sha(PNG)])
    assert (out / "files" / sha(PNG)).read_bytes() == PNG
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"files/{sha(PDF)}" in manifest["files"]
    (out / "files" / sha(PDF)).write_bytes(PDF + b"\n")
    assert str(verify_bundle(out).failure).startswith("seq 1: files/")
