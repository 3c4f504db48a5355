"""The archive database: appending records, the outbox and the id map.

All writes happen in short transactions that take the archive's write lock
first (SQLite `BEGIN IMMEDIATE`; a transaction-level advisory lock on
PostgreSQL), so `seq` is assigned gap-free even with several bridge processes
sharing one PostgreSQL archive. The methods are synchronous; the running
bridge calls them through `AsyncArchive`, on one writer thread.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select, text, update

from bridge.archive.schema import contents, idmap, outbox, records, state
from bridge.codec import canonical, timestamp
from bridge.model import Identity

# Arbitrary but fixed: the PostgreSQL advisory lock key of the archive writer ("SWBR").
PG_LOCK_KEY = 0x53574252
MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class RecordDraft:
    """A record before it has a seq."""

    kind: str
    occurred_at: datetime
    network: str = ""
    room: str = ""
    native_id: str = ""
    portal: str = ""
    sender: str = ""
    sender_display: str = ""
    identity: Identity | None = None
    content: dict[str, Any] | None = None
    plain: str = ""
    target_seq: int | None = None
    flags: list[str] = field(default_factory=list)
    rule: str | None = None
    reason: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxDraft:
    network: str
    room: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class OutboxRow:
    id: int
    seq: int
    portal: str
    network: str
    room: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Appended:
    seq: int
    outbox: tuple[OutboxRow, ...]


def leaf_hash(record: dict[str, Any]) -> str:
    """RFC 6962 leaf hash of a record's canonical JSON (everything but the hash itself)."""
    body = {k: v for k, v in record.items() if k != "leaf_hash"}
    return hashlib.sha256(b"\x00" + canonical(body)).hexdigest()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's begin() issue our own BEGIN IMMEDIATE instead of pysqlite's deferred one.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


class ArchiveStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"

    def migrate(self) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
            yield conn

    # -- appending -----------------------------------------------------------------

    def _next_seq(self, conn: Connection) -> int:
        return (conn.execute(select(func.max(records.c.seq))).scalar() or 0) + 1

    def _append(self, conn: Connection, draft: RecordDraft, seq: int) -> None:
        content_sha = None
        if draft.content is not None:
            body = canonical(draft.content)
            content_sha = hashlib.sha256(body).hexdigest()
            conn.execute(
                insert(contents).values(
                    seq=seq, sha256=content_sha, body=body.decode("utf-8"), plain=draft.plain
                )
            )
        ident = draft.identity
        row: dict[str, Any] = {
            "seq": seq,
            "kind": draft.kind,
            "occurred_at": timestamp(draft.occurred_at),
            "captured_at": timestamp(datetime.now(UTC)),
            "network": draft.network,
            "room": draft.room,
            "native_id": draft.native_id,
            "portal": draft.portal,
            "sender": draft.sender,
            "sender_display": draft.sender_display,
            "employee_id": ident.employee_id if ident else None,
            "name": ident.name if ident else None,
            "department": ident.department if ident else None,
            "target_seq": draft.target_seq,
            "flags": json.dumps(sorted(draft.flags)),
            "rule": draft.rule,
            "reason": draft.reason,
            "attrs": canonical(draft.attrs).decode("utf-8"),
            "content_sha256": content_sha,
        }
        row["leaf_hash"] = leaf_hash(row)
        conn.execute(insert(records).values(**row))

    def append(self, draft: RecordDraft, deliveries: list[OutboxDraft]) -> Appended | None:
        """Archive one inbound event with its outbox rows, atomically.

        Returns None when the event's native id was archived before (a redelivery).
        """
        with self.writing() as conn:
            if draft.native_id and self._seq_for(conn, draft.network, draft.room, draft.native_id):
                return None
            seq = self._next_seq(conn)
            self._append(conn, draft, seq)
            if draft.native_id:
                conn.execute(
                    insert(idmap).values(
                        seq=seq, network=draft.network, room=draft.room, native_id=draft.native_id
                    )
                )
            rows = []
            for d in deliveries:
                payload = json.dumps(d.payload, separators=(",", ":"), ensure_ascii=False)
                result = conn.execute(
                    insert(outbox).values(
                        seq=seq, portal=draft.portal, network=d.network, room=d.room, payload=payload
                    )
                )
                rows.append(
                    OutboxRow(
                        result.inserted_primary_key[0], seq, draft.portal, d.network, d.room, d.payload, 0
                    )
                )
            return Appended(seq, tuple(rows))

    def append_record(self, draft: RecordDraft) -> int:
        """Archive a record with no deliveries (reviews, holds, exports …)."""
        with self.writing() as conn:
            seq = self._next_seq(conn)
            self._append(conn, draft, seq)
            return seq

    # -- delivering ----------------------------------------------------------------

    def delivered(self, row: OutboxRow, native_id: str) -> int | None:
        """Mark an outbox row delivered, map its native id, archive a delivery record."""
        with self.writing() as conn:
            done = conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id, outbox.c.status == "pending")
                .values(status="delivered", native_id=native_id, attempts=outbox.c.attempts + 1)
            )
            if done.rowcount == 0:
                return None
            if native_id and not self._seq_for(conn, row.network, row.room, native_id):
                conn.execute(
                    insert(idmap).values(seq=row.seq, network=row.network, room=row.room, native_id=native_id)
                )
            seq = self._next_seq(conn)
            self._append(
                conn,
                RecordDraft(
                    kind="delivery",
                    occurred_at=datetime.now(UTC),
                    network=row.network,
                    room=row.room,
                    native_id=native_id,
                    portal=row.portal,
                    target_seq=row.seq,
                ),
                seq,
            )
            return seq

    def failed(self, row: OutboxRow, error: str, final: bool) -> None:
        with self.writing() as conn:
            values: dict[str, Any] = {"attempts": outbox.c.attempts + 1, "last_error": error[:1024]}
            if final:
                values["status"] = "failed"
            conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))

    def pending(self) -> list[OutboxRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox).where(outbox.c.status == "pending").order_by(outbox.c.id))
            return [
                OutboxRow(r.id, r.seq, r.portal, r.network, r.room, json.loads(r.payload), r.attempts)
                for r in rows
            ]

    # -- id map --------------------------------------------------------------------

    @staticmethod
    def _seq_for(conn: Connection, network: str, room: str, native_id: str) -> int | None:
        return conn.execute(
            select(idmap.c.seq).where(
                idmap.c.network == network, idmap.c.room == room, idmap.c.native_id == native_id
            )
        ).scalar()

    def seq_for(self, network: str, room: str, native_id: str) -> int | None:
        with self.engine.connect() as conn:
            return self._seq_for(conn, network, room, native_id)

    def native_for(self, seq: int, network: str, room: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(idmap.c.native_id)
                .where(idmap.c.seq == seq, idmap.c.network == network, idmap.c.room == room)
                .order_by(idmap.c.id)
                .limit(1)
            ).scalar()

    # -- connector state -----------------------------------------------------------

    def state_get(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(state.c.value).where(state.c.key == key)).scalar()

    def state_put(self, key: str, value: str) -> None:
        with self.writing() as conn:
            if conn.execute(select(state.c.key).where(state.c.key == key)).first():
                conn.execute(update(state).where(state.c.key == key).values(value=value))
            else:
                conn.execute(insert(state).values(key=key, value=value))
