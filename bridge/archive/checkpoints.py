"""Signed tree heads of the log, stored in `checkpoints`.

A checkpoint is made inside the writer's transaction (the write lock is held),
starting from the previous checkpoint's compact range, so signing costs the
records since then, not the whole log, and several processes sharing one
PostgreSQL archive never sign two different heads of the same size.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select

from bridge.archive.merkle import Frontier
from bridge.archive.schema import checkpoints, records
from bridge.archive.signing import Checkpoint, Signer
from bridge.codec import timestamp


def signed_size(conn: Connection) -> int:
    return conn.execute(select(func.max(checkpoints.c.tree_size))).scalar() or 0


def latest(conn: Connection) -> Checkpoint | None:
    row = conn.execute(select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)).first()
    return _checkpoint(row) if row else None


def all_checkpoints(conn: Connection) -> list[Checkpoint]:
    return [_checkpoint(r) for r in conn.execute(select(checkpoints).order_by(checkpoints.c.tree_size))]


def oldest_unsigned(conn: Connection) -> str | None:
    """captured_at of the first record no checkpoint covers yet."""
    return conn.execute(select(records.c.captured_at).where(records.c.seq == signed_size(conn) + 1)).scalar()


def make(conn: Connection, signer: Signer, size: int, now: datetime) -> Checkpoint:
    frontier = _resume(conn)
    for (leaf,) in conn.execute(
        select(records.c.leaf_hash)
        .where(records.c.seq > frontier.size, records.c.seq <= size)
        .order_by(records.c.seq)
    ):
        frontier.append(bytes.fromhex(leaf))
    if frontier.size != size:
        raise RuntimeError(
            f"cannot sign the archive at {size}: records after seq {frontier.size} are missing"
        )
    checkpoint = signer.sign(size, frontier.root().hex(), timestamp(now))
    conn.execute(
        insert(checkpoints).values(
            **checkpoint.to_json(), frontier=json.dumps([h.hex() for h in frontier.hashes])
        )
    )
    return checkpoint


def _resume(conn: Connection) -> Frontier:
    row = conn.execute(select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)).first()
    if row is None:
        return Frontier()
    try:
        frontier = Frontier(row.tree_size, [bytes.fromhex(h) for h in json.loads(row.frontier)])
        if frontier.root().hex() == row.root:
            return frontier
    except ValueError:
        pass
    # The stored range does not lead to the signed root: start over from the leaves rather than
    # sign a head that extends something other than what was signed before.
    return Frontier()


def _checkpoint(row: Row[Any]) -> Checkpoint:
    return Checkpoint(row.tree_size, row.root, row.signed_at, row.public_key, row.signature)
