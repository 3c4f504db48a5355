"""Finding records, and the JSON form compliance tools read them in.

Text is matched word by word through the engine's full-text index (SQLite
FTS5; PostgreSQL tsvector with a GIN index), both with the `simple` rules: no
stemming, so a reviewer finds exactly the words that were written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, and_, func, literal_column, or_, select, text

from bridge.archive.jsonform import record_json
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

    def to_json(self) -> dict[str, Any]:
        """The filters that are set, as review and export records keep them."""
        return {k: v for k, v in self.__dict__.items() if v not in (None, ())}


def select_records(f: Filters, postgres: bool) -> Select[Any]:
    """Records matching `f` in seq order, with their content's search text, body and purge mark."""
    query = select(records, contents.c.plain, contents.c.purged_by, contents.c.body).outerjoin(
        contents, contents.c.seq == records.c.seq
    )
    conds = []
    if f.text:
        conds.append(_text_condition(f.text, postgres))
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
    return query


def search(engine: Engine, f: Filters) -> Iterator[dict[str, Any]]:
    with engine.connect() as conn:
        for row in conn.execute(select_records(f, engine.dialect.name == "postgresql")):
            yield record_json(row)


def _text_condition(query: str, postgres: bool) -> ColumnElement[bool]:
    words = re.findall(r"\w+", query)
    if not words:  # only punctuation: nothing a word index holds, so match it literally
        return contents.c.plain.ilike(f"%{_escape_like(query)}%", escape="\\")
    if postgres:
        # Constants, not bound parameters: only the exact expression of the GIN index uses it. As a
        # subquery, since a condition on the outer-joined side (coalesce is not strict) would be
        # checked row by row after the join instead.
        simple = literal_column("'simple'")
        vector = func.to_tsvector(simple, func.coalesce(contents.c.plain, literal_column("''")))
        return records.c.seq.in_(
            select(contents.c.seq).where(vector.op("@@")(func.plainto_tsquery(simple, " ".join(words))))
        )
    match = " ".join(f'"{w}"' for w in words)  # quoted: user text is never FTS5 query syntax
    return records.c.seq.in_(
        select(text("rowid"))
        .select_from(text("contents_fts"))
        .where(text("contents_fts MATCH :q").bindparams(q=match))
    )


def _escape_like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
