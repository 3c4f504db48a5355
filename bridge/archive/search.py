"""Finding records, and the JSON form compliance tools read them in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, or_, select

from bridge.archive.schema import contents, records


@dataclass(frozen=True)
class Filters:
    text: str | None = None
    employee: str | None = None
    network: str | None = None
    portal: str | None = None
    since: str | None = None  # ISO timestamps, compared as stored
    until: str | None = None
    kinds: tuple[str, ...] = ()
    flag: str | None = None
    limit: int | None = None


def record_json(row: Any) -> dict[str, Any]:
    """The documented JSON shape of one record (see DESIGN.md, `archive search`)."""
    attrs = json.loads(row.attrs or "{}")
    out: dict[str, Any] = {
        "seq": row.seq,
        "kind": row.kind,
        "network": row.network,
        "room": row.room,
        "portal": row.portal,
        "native_id": row.native_id,
        "sender": row.sender,
        "sender_display": row.sender_display,
        "employee_id": row.employee_id,
        "name": row.name,
        "department": row.department,
        "text": row.plain,
        "occurred_at": row.occurred_at,
        "captured_at": row.captured_at,
        "flags": json.loads(row.flags or "[]"),
        "content_sha256": row.content_sha256,
    }
    if row.target_seq is not None:
        out["target_seq"] = row.target_seq
    if row.rule is not None:
        out["rule"] = row.rule
    if row.reason is not None:
        out["reason"] = row.reason
    out.update({k: v for k, v in attrs.items() if k not in out})
    return out


def search(engine: Engine, f: Filters) -> Iterator[dict[str, Any]]:
    query = select(records, contents.c.plain).outerjoin(contents, contents.c.seq == records.c.seq)
    conds = []
    if f.text:
        conds.append(contents.c.plain.ilike(f"%{_escape_like(f.text)}%", escape="\\"))
    if f.employee:
        conds.append(records.c.employee_id == f.employee)
    if f.network:
        conds.append(records.c.network == f.network)
    if f.portal:
        conds.append(records.c.portal == f.portal)
    if f.since:
        conds.append(records.c.occurred_at >= f.since)
    if f.until:
        conds.append(records.c.occurred_at < f.until)
    if f.kinds:
        conds.append(or_(*(records.c.kind == k for k in f.kinds)))
    if f.flag:
        conds.append(records.c.flags.like(f'%"{_escape_like(f.flag)}"%', escape="\\"))
    if conds:
        query = query.where(and_(*conds))
    query = query.order_by(records.c.seq)
    if f.limit:
        query = query.limit(f.limit)
    with engine.connect() as conn:
        for row in conn.execute(query):
            yield record_json(row)


def _escape_like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
