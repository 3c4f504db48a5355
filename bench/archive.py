"""Archive benchmarks: append rate, search latency, export and verify rates.

    .venv/bin/python -m bench.archive                      # SQLite in a temp dir, 1,000,000 records
    .venv/bin/python -m bench.archive --records 100000 --url postgresql+psycopg://postgres@127.0.0.1/bench

Append: records/s through `ArchiveStore.append` (Merkle leaf, signed checkpoints every
1000, one fsync'ed transaction per record, and batched 100 per transaction) against a
raw INSERT of the same rows in the same transactions. The large archive for search,
export and verify is loaded in bulk with correct leaf hashes and signed checkpoints.
Targets: append >= 50 % of raw; search p95 <= 100 ms; verify 1 M <= 30 s.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text

from bridge.archive.audit import Actor
from bridge.archive.export.run import run_export
from bridge.archive.merkle import Frontier
from bridge.archive.schema import checkpoints, contents, records
from bridge.archive.search import Filters, search
from bridge.archive.signing import Signer
from bridge.archive.store import ArchiveStore, RecordDraft, rows_for
from bridge.archive.verify import verify_archive
from bridge.codec import timestamp
from bridge.model import Identity

NETWORKS = ("matrix", "slack", "irc")
WORDS = [f"w{i:04d}" for i in range(5000)] + ["invoice", "guarantee", "bond", "acme", "risk", "free"]
PEOPLE = [Identity(f"E{1000 + i}", f"Person {i}", f"Dept {i % 12}") for i in range(300)]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_draft(rng: random.Random, n: int) -> RecordDraft:
    person = PEOPLE[rng.randrange(len(PEOPLE))]
    network = NETWORKS[n % 3]
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
    return RecordDraft(
        kind="message",
        occurred_at=T0 + timedelta(seconds=n * 30),
        network=network,
        room=f"{network}-room-{n % 60}",
        native_id=f"{network}-{n}",
        portal=f"portal-{n % 60}",
        sender=f"{network}:{person.employee_id.lower()}",
        sender_display=person.name,
        identity=person,
        content={"text": {"plain": words, "spans": []}},
        plain=words,
        flags=["tickers"] if n % 97 == 0 else [],
    )


def fresh(url: str | None, tmp: Path, name: str, signer: Signer | None) -> ArchiveStore:
    if url is None:
        store = ArchiveStore(f"sqlite:///{tmp / name}.db", signer, checkpoint_every=1000)
    else:
        store = ArchiveStore(url, signer, checkpoint_every=1000)
        with store.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    store.migrate()
    return store


def bench_append(url: str | None, tmp: Path, signer: Signer, n: int, batch: int) -> tuple[float, float]:
    rng = random.Random(1)
    drafts = [make_draft(rng, i) for i in range(n)]
    store = fresh(url, tmp, f"append-{batch}", signer)
    began = time.perf_counter()
    for i in range(0, n, batch):
        with store.writing() as conn:
            for d in drafts[i : i + batch]:
                store.append_locked(conn, d)
    archived = n / (time.perf_counter() - began)
    store.close()

    raw = fresh(url, tmp, f"raw-{batch}", None)
    now = datetime.now(UTC)
    rows = [rows_for(d, i + 1, now) for i, d in enumerate(drafts)]
    began = time.perf_counter()
    for i in range(0, n, batch):
        with raw.engine.begin() as conn:
            for row, content in rows[i : i + batch]:
                conn.execute(insert(contents), content)
                conn.execute(insert(records), row)
    plain = n / (time.perf_counter() - began)
    raw.close()
    return archived, plain


def load_bulk(store: ArchiveStore, signer: Signer, n: int) -> None:
    rng = random.Random(7)
    frontier = Frontier()
    captured = datetime.now(UTC)
    chunk = 20000
    for start in range(0, n, chunk):
        recs, cons, cps = [], [], []
        for seq in range(start + 1, min(n, start + chunk) + 1):
            row, content = rows_for(make_draft(rng, seq), seq, captured)
            recs.append(row)
            cons.append(content)
            frontier.append(bytes.fromhex(row["leaf_hash"]))
            if seq % 10000 == 0 or seq == n:
                cp = signer.sign(seq, frontier.root().hex(), timestamp(captured))
                cps.append({**cp.to_json(), "frontier": json.dumps([h.hex() for h in frontier.hashes])})
        with store.engine.begin() as conn:
            conn.execute(insert(contents), cons)
            conn.execute(insert(records), recs)
            if cps:
                conn.execute(insert(checkpoints), cps)
        print(f"\r  loaded {min(n, start + chunk):,}/{n:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if store.is_postgres:
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    else:
        store.migrate()  # what the bridge does at start: refreshes SQLite's planner statistics


def bench_search(store: ArchiveStore, queries: int) -> tuple[float, float, list[tuple[str, float]]]:
    rng = random.Random(3)
    shapes = [
        lambda: Filters(employee=rng.choice(PEOPLE).employee_id, limit=100),
        lambda: Filters(text=rng.choice(WORDS), limit=100),
        lambda: Filters(text=f"{rng.choice(WORDS)} {rng.choice(WORDS)}", limit=100),
        lambda: Filters(portal=f"portal-{rng.randrange(60)}", kinds=("message",), limit=100),
        lambda: Filters(flag="tickers", limit=100),
        lambda: Filters(
            employee=rng.choice(PEOPLE).employee_id,
            network=rng.choice(NETWORKS),
            since=timestamp(T0 + timedelta(days=rng.randrange(200))),
            limit=100,
        ),
        lambda: Filters(text="guarantee", network="irc", limit=100),
    ]
    times: list[float] = []
    slowest: list[tuple[str, float]] = []
    for i in range(queries):
        f = shapes[i % len(shapes)]()
        began = time.perf_counter()
        list(search(store.engine, f))
        elapsed = (time.perf_counter() - began) * 1000
        times.append(elapsed)
        slowest.append((repr(f.to_json()), elapsed))
    times.sort()
    slowest.sort(key=lambda x: -x[1])
    return statistics.median(times), times[int(len(times) * 0.95) - 1], slowest[:3]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url", help="a PostgreSQL database to use (it is wiped); default SQLite in a temp dir"
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="size of the large archive")
    parser.add_argument("--appends", type=int, default=5000, help="records for the append benchmark")
    parser.add_argument("--queries", type=int, default=140, help="searches to time")
    parser.add_argument("--no-export", action="store_true", help="skip the (slowest) export benchmark")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp_name:
        tmp = Path(tmp_name)
        signer = Signer.generate(tmp / "bench.key")
        engine = "PostgreSQL" if args.url else "SQLite"
        print(f"engine: {engine}", flush=True)
        for batch in (1, 100):
            archived, raw = bench_append(args.url, tmp, signer, args.appends, batch)
            print(
                f"append, {batch} per transaction: {archived:,.0f} records/s archived vs {raw:,.0f} raw "
                f"({archived / raw:.0%})"
            )
        store = fresh(args.url, tmp, "large", signer)
        began = time.perf_counter()
        load_bulk(store, signer, args.records)
        print(f"bulk load of {args.records:,} records: {time.perf_counter() - began:.1f} s")
        p50, p95, slowest = bench_search(store, args.queries)
        print(
            f"search over {args.records:,} records ({args.queries} queries, limit 100): p50 {p50:.1f} ms, p95 {p95:.1f} ms"
        )
        for query, ms in slowest:
            print(f"  slow: {ms:.1f} ms {query}")
        began = time.perf_counter()
        report = verify_archive(store.engine, signer.public_key)
        elapsed = time.perf_counter() - began
        assert report.failure is None, report.failure
        print(
            f"verify {report.records:,} records: {elapsed:.1f} s ({report.records / elapsed:,.0f} records/s)"
        )
        if args.no_export:
            store.close()
            return 0
        began = time.perf_counter()
        result = run_export(store, "jsonl", tmp / "export", Filters(), Actor("bench"))
        elapsed = time.perf_counter() - began
        print(
            f"export jsonl {result.records:,} records: {elapsed:.1f} s ({result.records / elapsed:,.0f} records/s)"
        )
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
