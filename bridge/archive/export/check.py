"""`switchboard archive verify --bundle DIR`: check an export offline.

Needs nothing but the bundle, the standard library and `cryptography`: no
database, no config. The checkpoint's signature makes its root the archive's;
each record's inclusion proof ties it to that root; the manifest's signature
ties every file to the export; and each record's piece locates it in the
format files, so a changed byte is reported against the record it falls in.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bridge.archive.export import rsmf
from bridge.archive.export.files import sha_of
from bridge.archive.export.lines import CsvWriter, record_row
from bridge.archive.export.pieces import file_sha256
from bridge.archive.hashing import content_sha256, leaf_hash, searchable_text, seqs_sha256
from bridge.archive.jsonform import attachments, kept, record_json
from bridge.archive.merkle import verify_inclusion
from bridge.archive.signing import MANIFEST_ORIGIN, Checkpoint, verify_signature

SIGNED = {"manifest.json", "manifest.sig"}


@dataclass(frozen=True)
class BundleFailure:
    seq: int | None  # None: the bundle as a whole
    what: str

    def __str__(self) -> str:
        return self.what if self.seq is None else f"seq {self.seq}: {self.what}"


@dataclass
class BundleReport:
    records: int = 0
    public_key: str = ""
    tree_size: int = 0
    failures: list[BundleFailure] = field(default_factory=list)

    @property
    def failure(self) -> BundleFailure | None:
        if not self.failures:
            return None
        return min(self.failures, key=lambda f: -1 if f.seq is None else f.seq)


class _Unreadable(Exception):
    pass


def verify_bundle(
    path: Path, trusted_key: str | None = None, progress: Callable[[int, int], None] | None = None
) -> BundleReport:
    """Check a bundle. The bundle names its own key; only `trusted_key` (hex, obtained apart from
    the bundle) makes its signatures the archive's. Without one, this proves only that the bundle
    agrees with itself, which is why `archive verify --bundle` always asks for a key."""
    report = BundleReport()
    try:
        _verify(path, trusted_key, progress, report)
    except _Unreadable as exc:
        report.failures.append(BundleFailure(None, str(exc)))
    return report


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise _Unreadable(f"{path.name}: missing from the bundle") from None
    except ValueError:
        raise _Unreadable(f"{path.name}: not JSON") from None


def _verify(
    path: Path, trusted_key: str | None, progress: Callable[[int, int], None] | None, report: BundleReport
) -> None:
    fail = report.failures.append
    if not path.is_dir():
        raise _Unreadable(f"{path}: not a bundle directory")
    manifest = _read_json(path / "manifest.json")
    signature = _read_json(path / "manifest.sig")
    checkpoint = Checkpoint.from_json(_read_json(path / "checkpoint.json"))
    report.public_key, report.tree_size = checkpoint.public_key, checkpoint.tree_size
    if trusted_key and checkpoint.public_key != trusted_key:
        fail(BundleFailure(None, f"checkpoint.json is signed by another key ({checkpoint.public_key[:16]}…)"))
    if not checkpoint.signature_valid():
        fail(BundleFailure(None, "checkpoint.json: the signature does not verify"))
    manifest_bytes = (path / "manifest.json").read_bytes()
    if signature.get("public_key") != checkpoint.public_key or not verify_signature(
        checkpoint.public_key, MANIFEST_ORIGIN + manifest_bytes, signature.get("signature", "")
    ):
        fail(BundleFailure(None, "manifest.json: the signature does not verify (the manifest was changed)"))
    if manifest.get("checkpoint") != {"tree_size": checkpoint.tree_size, "root": checkpoint.root}:
        fail(BundleFailure(None, "manifest.json names another checkpoint than checkpoint.json"))
    files: dict[str, str] = manifest.get("files", {})
    entries = _check_records(path / "proofs.jsonl", checkpoint, manifest, progress, report)
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            fail(BundleFailure(None, f"{name}: missing from the bundle"))
        elif file_sha256(file) != digest or sha_of(name) not in (None, digest):
            fail(_locate(file, name, entries))
        elif name == CsvWriter.name:
            report.failures.extend(_check_csv_rows(file, entries))
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    for name in sorted(present - set(files) - SIGNED):
        fail(BundleFailure(None, f"{name}: not listed in manifest.json"))


def _check_records(
    proofs: Path,
    checkpoint: Checkpoint,
    manifest: dict[str, Any],
    progress: Callable[[int, int], None] | None,
    report: BundleReport,
) -> list[dict[str, Any]]:
    root = bytes.fromhex(checkpoint.root)
    total = int(manifest.get("records", 0))
    entries: list[dict[str, Any]] = []
    try:
        lines = proofs.read_bytes().splitlines()
    except FileNotFoundError:
        raise _Unreadable("proofs.jsonl: missing from the bundle") from None
    for i, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            seq, record = int(entry["seq"]), entry["record"]
        except (ValueError, KeyError, TypeError):
            report.failures.append(BundleFailure(None, f"proofs.jsonl line {i}: not a proof entry"))
            continue
        problem = _check_entry(seq, record, entry, checkpoint.tree_size, root)
        if problem:
            report.failures.append(BundleFailure(seq, problem))
        entries.append(entry)
        if progress and i % 5000 == 0:
            progress(i, total)
    seqs = [e["seq"] for e in entries]
    report.records = len(seqs)
    if len(seqs) != total or seqs_sha256(seqs) != manifest.get("seqs_sha256"):
        report.failures.append(
            BundleFailure(
                None, f"proofs.jsonl holds {len(seqs)} records, not the {total} manifest.json lists"
            )
        )
    if progress:
        progress(len(seqs), total)
    return entries


def _check_entry(
    seq: int, record: dict[str, Any], entry: dict[str, Any], size: int, root: bytes
) -> str | None:
    if record.get("seq") != seq:
        return "the proof entry names another record"
    if leaf_hash(record) != record.get("leaf_hash"):
        return "the record does not match its leaf hash: it was changed"
    try:
        proof = [bytes.fromhex(h) for h in entry["proof"]]
        included = verify_inclusion(seq - 1, size, bytes.fromhex(record["leaf_hash"]), proof, root)
    except (ValueError, KeyError, TypeError):
        included = False
    if not included:
        return f"not proven to be in the signed log of {size} records"
    body = entry.get("content")
    if body is not None and content_sha256(body) != record.get("content_sha256"):
        return "its content does not match the hash the record commits to"
    return None


def _locate(file: Path, name: str, entries: list[dict[str, Any]]) -> BundleFailure:
    """The first record whose part of a changed file differs from what the export wrote."""
    if name == rsmf.NAME:
        seq = _first_changed_event(file, entries)
    elif sha := sha_of(name):
        seq = next((e["seq"] for e in entries if sha in _kept_files(e)), None)
    else:
        data = file.read_bytes()
        seq = next((e["seq"] for e in entries if _piece_changed(data, name, e.get("piece") or {})), None)
    if seq is None:
        return BundleFailure(None, f"{name} was changed (its sha256 does not match manifest.json)")
    return BundleFailure(seq, f"{name} was changed where it holds this record")


def _check_csv_rows(file: Path, entries: list[dict[str, Any]]) -> list[BundleFailure]:
    """Each record's row must be exactly what an export writes for the proven record: its cells
    neutralised, so no formula reaches a reviewer's spreadsheet even from a signed bundle."""
    data = file.read_bytes()
    for e in entries:
        piece = e.get("piece") or {}
        start, length = piece.get("offset") or 0, piece.get("length")
        if piece.get("file") != CsvWriter.name or length is None:
            return [BundleFailure(e["seq"], f"{CsvWriter.name}: the proof entry does not locate this record")]
        if data[start : start + length] != record_row(_as_json(e), _content(e)):
            return [
                BundleFailure(
                    e["seq"],
                    f"{CsvWriter.name} does not hold this record as an export writes it "
                    "(every cell as archived, a formula-like one led by ')",
                )
            ]
    return []


def _piece_changed(data: bytes, name: str, piece: dict[str, Any]) -> bool:
    if piece.get("file") != name:
        return False
    start = piece.get("offset") or 0
    chunk = data[start : start + piece["length"]] if "length" in piece else data
    return hashlib.sha256(chunk).hexdigest() != piece.get("sha256")


def _first_changed_event(file: Path, entries: list[dict[str, Any]]) -> int | None:
    """The first record whose event, or attached file, in the zip is not what the export wrote."""
    try:
        with zipfile.ZipFile(file) as zf:
            written = json.loads(zf.read(rsmf.MANIFEST))
            changed = [
                e["seq"]
                for e in entries
                for a in attachments(_content(e))
                if kept(a) and _member_sha256(zf, rsmf.attachment_id(a)) != a["sha256"]
            ]
        actual = {e.get("id"): e for e in written.get("events", [])}
    except (zipfile.BadZipFile, KeyError, ValueError):
        return entries[0]["seq"] if entries else None
    expected = rsmf.build_manifest((_as_json(e), _content(e)) for e in entries)
    changed += [
        int(event["id"].removeprefix("seq-"))
        for event in expected["events"]
        if actual.get(event["id"]) != event
    ]
    return min(changed, default=None)


def _member_sha256(zf: zipfile.ZipFile, name: str) -> str | None:
    try:
        return hashlib.sha256(zf.read(name)).hexdigest()
    except KeyError:
        return None


def _kept_files(entry: dict[str, Any]) -> set[str]:
    return {a["sha256"] for a in attachments(_content(entry)) if kept(a)}


def _content(entry: dict[str, Any]) -> dict[str, Any] | None:
    return json.loads(entry["content"]) if entry.get("content") is not None else None


def _as_json(entry: dict[str, Any]) -> dict[str, Any]:
    record, content = entry["record"], _content(entry)
    purged = content is None and record.get("content_sha256") is not None
    row = SimpleNamespace(
        **record,
        plain=searchable_text(content) if content is not None else None,
        purged_by=0 if purged else None,
        body=entry.get("content"),
    )
    return record_json(row)
