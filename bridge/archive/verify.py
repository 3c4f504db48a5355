"""`switchboard archive verify`: prove the log in the database is what was written.

Every record's leaf is recomputed from its row; seq must run 1, 2, 3 … without
a gap; content must still match the hash its record commits to (or have been
cleared by a purge that the log records), and so must the attached files the
content lists as kept. Ranges of seq are checked in
parallel processes, their leaves joined in order into the Merkle tree. Then every checkpoint must carry a valid signature by the
trusted key (given from outside: the database's own checkpoints name a key, but
whoever rewrote the log could re-sign it under one of their own), match the
root of the same number of leaves, and be consistent with the one before it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from sqlalchemy import Engine, func, select

from bridge.archive import checkpoints
from bridge.archive.hashing import content_sha256, leaf_hash, searchable_text, seqs_sha256
from bridge.archive.jsonform import attachments, kept
from bridge.archive.merkle import MerkleTree, verify_consistency
from bridge.archive.schema import contents, files, records
from bridge.archive.signing import Checkpoint
from bridge.archive.store import make_engine

Progress = Callable[[int, int], None]
RECORD_COLUMNS = [c.name for c in records.columns]
assert RECORD_COLUMNS[-1] == "leaf_hash"  # the rows below are read positionally
CHUNK = 50_000  # records per unit of work; a worker process checks one at a time


@dataclass(frozen=True)
class Failure:
    seq: int
    what: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.what}"


@dataclass
class Report:
    records: int = 0
    checkpoints: int = 0
    signed: int = 0  # records covered by the newest valid checkpoint
    purged: int = 0
    keys: set[str] = field(default_factory=set)
    failures: list[Failure] = field(default_factory=list)

    @property
    def failure(self) -> Failure | None:
        """The first failure in log order: where the proof first breaks."""
        return min(self.failures, key=lambda f: f.seq) if self.failures else None


@dataclass
class _Chunk:
    """What checking the records of one seq range found."""

    leaves: bytes = b""
    count: int = 0
    purged: list[tuple[int, int]] = field(default_factory=list)  # (seq, seq of the purge that cleared it)
    purges: dict[int, dict] = field(default_factory=dict)  # purge seq -> its attrs
    failure: Failure | None = None


def verify_archive(
    engine: Engine,
    trusted_key: str,
    progress: Progress | None = None,
    chunk: int = CHUNK,
    workers: int | None = None,
    witnessed: Iterable[Checkpoint] = (),
    max_unsigned: int | None = None,
) -> Report:
    """Check the whole log; seq ranges of `chunk` records are checked in `workers` processes.

    Every checkpoint must be signed by `trusted_key` (hex), which must not come from the
    database: whoever rewrote the log could have re-signed it with a key of their own.

    `witnessed` are checkpoints kept outside the database (from an export bundle, or published):
    the log must still extend them, which catches a tail cut together with the checkpoints that
    covered it. With `max_unsigned`, more unsigned records than that is a failure too: the
    writer signs every `checkpoint_every` records, so a longer unsigned tail means removed
    checkpoints.
    """
    report = Report()
    tree = MerkleTree()
    purged: dict[int, list[int]] = defaultdict(list)
    purges: dict[int, dict] = {}
    with engine.connect() as conn:
        first, last = conn.execute(select(func.min(records.c.seq), func.max(records.c.seq))).one()
        stored = checkpoints.all_checkpoints(conn)
    cps = sorted({*stored, *witnessed}, key=lambda c: (c.tree_size, c.signed_at))
    if first is not None and first != 1:
        report.failures.append(Failure(1, f"missing: the log starts at seq {first}"))
        return report
    ranges = [(lo, min(lo + chunk, (last or 0) + 1)) for lo in range(1, (last or 0) + 1, chunk)]
    url = engine.url.render_as_string(hide_password=False)
    workers = workers or os.cpu_count() or 1
    with _pool(workers if len(ranges) > 1 else 1) as pool:
        for (lo, hi), found in zip(ranges, pool.map(_check_chunk, repeat(url), ranges), strict=True):
            tree.extend(found.leaves[i : i + 32] for i in range(0, len(found.leaves), 32))
            for seq, by in found.purged:
                purged[by].append(seq)
            purges.update(found.purges)
            if found.failure is None and found.count != hi - lo:
                found.failure = Failure(lo + found.count, "missing: no record has this seq")
            if found.failure:
                report.failures.append(found.failure)
                break
            if progress:
                progress(tree.size, last)
    report.records = tree.size
    report.checkpoints = len(stored)
    report.purged = sum(len(v) for v in purged.values())
    if not report.failures:
        report.failures.extend(_check_purges(purged, purges))
        report.failures.extend(_check_checkpoints(cps, tree, trusted_key, report))
    if not report.failures and max_unsigned is not None and report.records - report.signed > max_unsigned:
        report.failures.append(
            Failure(
                report.signed + 1,
                f"no checkpoint covers this or the {report.records - report.signed - 1} records after it, "
                f"though one is made every {max_unsigned} records: checkpoints were removed",
            )
        )
    return report


class _InProcess:
    """The pool interface, without processes, for logs too small to be worth them."""

    def map(self, fn: Callable[..., _Chunk], *iterables: Iterable[Any]) -> Iterator[_Chunk]:
        return map(fn, *iterables)

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _pool(workers: int) -> ProcessPoolExecutor | _InProcess:
    if workers <= 1:
        return _InProcess()
    # spawn: a forked child would share the parent's open database connections
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


_engines: dict[str, Engine] = {}


def _check_chunk(url: str, bounds: tuple[int, int]) -> _Chunk:
    lo, hi = bounds
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url)
    found = _Chunk()
    leaves = bytearray()
    stored: dict[int, set[str]] = {}
    width = len(RECORD_COLUMNS)
    query = (
        select(records, contents.c.sha256, contents.c.body, contents.c.plain, contents.c.purged_by)
        .outerjoin(contents, contents.c.seq == records.c.seq)
        .where(records.c.seq >= lo, records.c.seq < hi)
        .order_by(records.c.seq)
    )
    # The driver's own cursor: SQLAlchemy's row objects cost a third of the time here. The
    # bounds are ints, so inlining them is safe; a chunk's rows fit in memory on any driver.
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(str(query.compile(engine, compile_kwargs={"literal_binds": True})))
        while found.failure is None and (rows := cursor.fetchmany(5000)):
            for row in rows:
                record = dict(zip(RECORD_COLUMNS, row[:width], strict=True))
                seq, expected = record["seq"], lo + found.count
                problem = _check_row(record, *row[width:], expected=expected)
                if problem:
                    found.failure = Failure(min(seq, expected), problem)
                    break
                if row[width] is not None and row[width + 1] is None:
                    found.purged.append((seq, row[width + 3]))
                elif row[width + 1] is not None and (shas := _stored_files(row[width + 1])):
                    stored[seq] = shas
                if record["kind"] == "purge":
                    found.purges[seq] = json.loads(record["attrs"])
                leaves += bytes.fromhex(record["leaf_hash"])
                found.count += 1
    finally:
        raw.close()
    found.leaves = bytes(leaves)
    checked_to = found.failure.seq if found.failure else hi
    # Files of records before the first bad record, so a bad file there is the first failure.
    found.failure = _check_files(engine, lo, checked_to, stored, dict(found.purged)) or found.failure
    return found


def _stored_files(body: str) -> set[str]:
    """The sha256 of each attachment whose bytes the content says the archive keeps."""
    if '"stored":true' not in body:  # canonical JSON; most records attach nothing
        return set()
    return {a["sha256"] for a in attachments(json.loads(body)) if kept(a)}


def _check_files(
    engine: Engine, lo: int, hi: int, stored: dict[int, set[str]], cleared: dict[int, int]
) -> Failure | None:
    """Files of records lo..hi-1: intact, listed by their record's content, purged with it."""
    query = (
        select(files.c.seq, files.c.sha256, files.c.size, files.c.data, files.c.purged_by)
        .where(files.c.seq >= lo, files.c.seq < hi)
        .order_by(files.c.seq, files.c.sha256)
    )
    with engine.connect() as conn:
        for seq, sha, size, data, purged_by in conn.execute(query):
            name = f"its file {sha[:12]}…"
            if data is None:
                if purged_by is None:
                    return Failure(seq, f"{name} was cleared without a purge")
                if cleared.get(seq) != purged_by:
                    return Failure(seq, f"{name} was cleared by seq {purged_by}, not with its content")
                continue
            if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                return Failure(seq, f"{name} does not match its hash: it was changed")
            if seq in cleared:
                return Failure(seq, f"{name} was kept when its content was purged")
            if sha not in stored.get(seq, ()):
                return Failure(seq, f"{name} is not one its content lists")
            stored[seq].discard(sha)
    missing = [(seq, min(shas)) for seq, shas in stored.items() if shas]
    if missing:
        seq, sha = min(missing)
        return Failure(seq, f"its file {sha[:12]}… is missing")
    return None


def _check_row(
    record: dict,
    sha: str | None,
    body: str | None,
    plain: str | None,
    purged_by: int | None,
    expected: int,
) -> str | None:
    seq = record["seq"]
    if seq != expected:
        return f"missing: no record has this seq (the log jumps from seq {expected - 1} to seq {seq})"
    if leaf_hash(record) != record["leaf_hash"]:
        return "the record does not match its leaf hash: it was changed after it was written"
    committed = record["content_sha256"]
    if committed is None:
        return "content that the record does not commit to" if sha is not None else None
    if sha is None:
        return "its content is missing"
    if sha != committed:
        return "its content hash was changed"
    if body is None:
        if plain is not None or purged_by is None:
            return "its content was cleared without a purge"
        return None
    if content_sha256(body) != committed:
        return "its content does not match the hash the record commits to"
    try:
        derived = searchable_text(json.loads(body))
    except (ValueError, AttributeError):
        return "its content is not JSON"
    if plain != derived:
        return "its search text does not match its content"
    return None


def _check_purges(purged: dict[int, list[int]], purges: dict[int, dict]) -> list[Failure]:
    failures = []
    for purge_seq, seqs in purged.items():
        attrs = purges.get(purge_seq)
        if attrs is None or any(s >= purge_seq for s in seqs):
            failures.append(
                Failure(min(seqs), f"its content was cleared by seq {purge_seq}, which is no purge")
            )
        elif attrs.get("count") != len(seqs) or attrs.get("seqs_sha256") != seqs_sha256(seqs):
            failures.append(
                Failure(
                    min(seqs), f"content cleared under purge seq {purge_seq} is not what that purge lists"
                )
            )
    for purge_seq, attrs in purges.items():
        if attrs.get("count") and purge_seq not in purged:
            failures.append(Failure(purge_seq, "this purge lists content that was never cleared"))
    return failures


def _check_checkpoints(
    cps: list[Checkpoint], tree: MerkleTree, trusted_key: str, report: Report
) -> list[Failure]:
    previous: Checkpoint | None = None
    for cp in cps:
        where = f"checkpoint of {cp.tree_size} records (signed {cp.signed_at})"
        if cp.public_key != trusted_key:
            return [
                Failure(
                    cp.tree_size,
                    f"{where} is signed by key {cp.public_key[:16]}…, not the trusted key {trusted_key[:16]}…",
                )
            ]
        if not cp.signature_valid():
            return [Failure(cp.tree_size, f"{where}: the signature does not verify")]
        if cp.tree_size > tree.size:
            return [Failure(tree.size + 1, f"missing: the {where} covers up to seq {cp.tree_size}")]
        first = previous.tree_size + 1 if previous else 1
        if tree.root(cp.tree_size).hex() != cp.root:
            return [
                Failure(
                    first,
                    f"records {first}..{cp.tree_size} do not match the {where}: one was rewritten",
                )
            ]
        if previous is not None:
            proof = tree.consistency_proof(previous.tree_size, cp.tree_size)
            if cp.signed_at < previous.signed_at or not verify_consistency(
                previous.tree_size,
                cp.tree_size,
                bytes.fromhex(previous.root),
                bytes.fromhex(cp.root),
                proof,
            ):
                return [Failure(first, f"the {where} does not extend the one before it")]
        report.keys.add(cp.public_key)
        report.signed = cp.tree_size
        previous = cp
    return []
