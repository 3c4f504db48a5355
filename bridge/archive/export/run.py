"""Writing an export bundle (the layout is described in the package docstring)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from bridge.archive import private
from bridge.archive.audit import Actor, audit_draft
from bridge.archive.export.eml import EmlWriter
from bridge.archive.export.lines import CsvWriter, JsonlWriter
from bridge.archive.export.pieces import Piece, file_sha256
from bridge.archive.export.rsmf import RsmfWriter
from bridge.archive.hashing import seqs_sha256
from bridge.archive.jsonform import attachments, kept, record_json
from bridge.archive.merkle import MerkleTree
from bridge.archive.schema import records
from bridge.archive.search import Filters, select_records
from bridge.archive.store import ArchiveStore, kept_files
from bridge.codec import canonical, timestamp

RECORD_COLUMNS = [c.name for c in records.columns]


class Writer(Protocol):
    def add(
        self, record: dict[str, Any], content: dict[str, Any] | None, files: Mapping[str, bytes]
    ) -> Piece: ...

    def close(self) -> list[str]: ...


WRITERS: dict[str, Callable[[Path], Writer]] = {
    "jsonl": JsonlWriter,
    "csv": CsvWriter,
    "eml": EmlWriter,
    "rsmf": RsmfWriter,
}


@dataclass(frozen=True)
class ExportResult:
    records: int
    export_seq: int
    tree_size: int
    files: list[str]


def run_export(
    store: ArchiveStore,
    fmt: str,
    out: Path,
    filters: Filters,
    actor: Actor,
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    if store.signer is None:
        raise ValueError("exports are signed: set archive.signing_key (see `switchboard archive keygen`)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty directory")
    private.make_dir(out)  # the bundle holds what the archive holds: no one else may read it
    checkpoint = store.checkpoint()
    if checkpoint is None:
        raise ValueError("the archive is empty: nothing to export")
    size = checkpoint.tree_size
    tree = MerkleTree()
    with store.engine.connect() as conn:
        leaves = conn.execution_options(yield_per=20000).execute(
            select(records.c.leaf_hash).where(records.c.seq <= size).order_by(records.c.seq)
        )
        tree.extend(bytes.fromhex(leaf) for (leaf,) in leaves)
        writer = WRITERS[fmt](out)
        seqs: list[int] = []
        query = select_records(filters, store.is_postgres).where(records.c.seq <= size)
        with private.create(out / "proofs.jsonl") as proofs:
            for row in conn.execution_options(yield_per=5000).execute(query):
                content = json.loads(row.body) if row.body is not None else None
                with_bytes = kept_files(conn, row.seq) if any(map(kept, attachments(content))) else {}
                piece = writer.add(record_json(row), content, with_bytes)
                seq = row.seq
                entry = {
                    "seq": seq,
                    "record": dict(zip(RECORD_COLUMNS, row, strict=False)),  # the records columns lead
                    "content": row.body,
                    "proof": [h.hex() for h in tree.inclusion_proof(seq - 1, size)],
                    "piece": piece.to_json(),
                }
                proofs.write(canonical(entry) + b"\n")
                seqs.append(seq)
                if progress and len(seqs) % 5000 == 0:
                    progress(len(seqs), size)
    files = writer.close()
    private.write(out / "checkpoint.json", canonical(checkpoint.to_json()) + b"\n")
    manifest = {
        "format": fmt,
        "created_at": timestamp(datetime.now(UTC)),
        "actor": actor.employee_id,
        "filters": filters.to_json(),
        "records": len(seqs),
        "seqs_sha256": seqs_sha256(seqs),
        "checkpoint": {"tree_size": size, "root": checkpoint.root},
        "files": {name: file_sha256(out / name) for name in [*files, "proofs.jsonl", "checkpoint.json"]},
    }
    data = json.dumps(manifest, indent=1, ensure_ascii=False, sort_keys=True).encode("utf-8")
    private.write(out / "manifest.json", data)
    signature = {"public_key": store.signer.public_key, "signature": store.signer.sign_manifest(data)}
    private.write(out / "manifest.sig", canonical(signature) + b"\n")
    export_seq = store.append_record(
        audit_draft(
            "export",
            actor,
            format=fmt,
            filters=filters.to_json(),
            records=len(seqs),
            manifest_sha256=hashlib.sha256(data).hexdigest(),
        )
    )
    if progress:
        progress(len(seqs), len(seqs))
    return ExportResult(len(seqs), export_seq, size, files)
