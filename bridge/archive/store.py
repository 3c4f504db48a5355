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
import logging
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)

from bridge.archive import checkpoints, private, witness
from bridge.archive.conversation import CHAT_KINDS
from bridge.archive.driver import DriverStatement, release
from bridge.archive.hashing import column_text, content_sha256, leaf_hash
from bridge.archive.schema import contents, files, idmap, outbox, records, state
from bridge.archive.signing import Checkpoint, Signer
from bridge.codec import canonical, parse_timestamp, timestamp
from bridge.model import Identity

if TYPE_CHECKING:
    from bridge.config import ArchiveConfig

log = logging.getLogger("switchboard.archive")
# Arbitrary but fixed: the PostgreSQL advisory lock key of the archive writer ("SWBR").
PG_LOCK_KEY = 0x53574252
MIGRATIONS = Path(__file__).parent / "migrations"
NEXT_SEQ = "switchboard_archive_next_seq"
WRITE_OPTION = "switchboard_archive_write"  # execution option of connections that write
ANALYZE_FROM = 10_000  # records; below this the planner's defaults are as good
# Built once: constructing a statement costs more than executing it on SQLite.
MAX_SEQ = select(func.max(records.c.seq))
SEQ_FOR = select(idmap.c.seq).where(
    idmap.c.network == bindparam("network"),
    idmap.c.room == bindparam("room"),
    idmap.c.native_id == bindparam("native_id"),
)
NATIVE_FOR = (
    select(idmap.c.native_id)
    .where(
        idmap.c.seq == bindparam("seq"),
        idmap.c.network == bindparam("network"),
        idmap.c.room == bindparam("room"),
    )
    .order_by(idmap.c.id)
    .limit(1)
)
FILES_OF = select(files.c.sha256, files.c.data).where(
    files.c.seq == bindparam("seq"), files.c.data.is_not(None)
)
MARK_DELIVERED = (
    update(outbox)
    .where(outbox.c.id == bindparam("row_id"), outbox.c.status == "pending")
    .values(status="delivered", native_id=bindparam("delivered_id"), attempts=outbox.c.attempts + 1)
)


@dataclass(frozen=True)
class HotStatements:
    """What every relayed message runs, compiled for one engine's driver (see driver.py)."""

    max_seq: DriverStatement
    seq_for: DriverStatement
    insert_record: DriverStatement
    insert_content: DriverStatement
    insert_file: DriverStatement
    insert_idmap: DriverStatement
    insert_outbox: DriverStatement  # returns the new row's id
    mark_delivered: DriverStatement
    lock: DriverStatement | None  # PostgreSQL's transaction-level advisory lock

    @classmethod
    def compile(cls, dialect: Dialect) -> HotStatements:
        def c(statement: Any, keys: list[str] | None = None) -> DriverStatement:
            return DriverStatement.compile(statement, dialect, keys)

        postgres = dialect.name == "postgresql"
        return cls(
            max_seq=c(MAX_SEQ),
            seq_for=c(SEQ_FOR),
            insert_record=c(insert(records)),
            insert_content=c(insert(contents), ["seq", "sha256", "body", "plain"]),
            insert_file=c(insert(files), ["seq", "sha256", "size", "data"]),
            insert_idmap=c(insert(idmap), ["seq", "network", "room", "native_id"]),
            insert_outbox=c(
                insert(outbox).returning(outbox.c.id), ["seq", "portal", "network", "room", "payload"]
            ),
            mark_delivered=c(MARK_DELIVERED),
            lock=c(select(func.pg_advisory_xact_lock(bindparam("k")))) if postgres else None,
        )


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
    files: tuple[bytes, ...] = ()  # attachment bytes to keep; `content` lists them as stored


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


# The record columns a network or the directory fills, with what each can hold.
_FITTED = ("network", "room", "native_id", "portal", "sender", "sender_display", "rule", "reason")
_LIMITS = {c: records.c[c].type.length for c in (*_FITTED, "name", "department")}


def fitted(draft: RecordDraft) -> RecordDraft:
    """`draft` with every text column as the database can hold it (`column_text`), so a NUL, a
    lone surrogate or an over-long name from a hostile peer is archived instead of failing
    the transaction over and over; the content keeps what was sent."""
    changed = {}
    for column in _FITTED:
        value = getattr(draft, column)
        if value is not None and (fit := column_text(value, _LIMITS[column])) != value:
            changed[column] = fit
    return replace(draft, **changed) if changed else draft


def rows_for(
    draft: RecordDraft, seq: int, captured_at: datetime
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The `records` row (with its leaf hash) and the `contents` row of a draft at `seq`."""
    content = None
    if draft.content is not None:
        body = canonical(draft.content).decode("utf-8")
        content = {
            "seq": seq,
            "sha256": content_sha256(body),
            "body": body,
            "plain": column_text(draft.plain),
        }
    ident = draft.identity
    name, department = (ident.name, ident.department) if ident else (None, None)
    row: dict[str, Any] = {
        "seq": seq,
        "kind": draft.kind,
        "occurred_at": timestamp(draft.occurred_at),
        "captured_at": timestamp(captured_at),
        "network": draft.network,
        "room": draft.room,
        "native_id": draft.native_id,
        "portal": draft.portal,
        "sender": draft.sender,
        "sender_display": draft.sender_display,
        "employee_id": ident.employee_id if ident else None,
        "name": None if name is None else column_text(name, _LIMITS["name"]),
        "department": None if department is None else column_text(department, _LIMITS["department"]),
        "target_seq": draft.target_seq,
        "flags": json.dumps(sorted(draft.flags)),
        "rule": draft.rule,
        "reason": draft.reason,
        "attrs": canonical(draft.attrs).decode("utf-8"),
        "content_sha256": content["sha256"] if content else None,
    }
    row["leaf_hash"] = leaf_hash(row)
    return row, content


def kept_files(conn: Connection, seq: int) -> dict[str, bytes]:
    """The kept (not purged) attachment bytes of record `seq`, by sha256."""
    return {sha: data for sha, data in conn.execute(FILES_OF, {"seq": seq})}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        private.prepare_sqlite(url)
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
            # Writers take the lock up front (a deferred writer can fail to upgrade its lock);
            # readers must not take it at all, or a long export would stall the live bridge.
            write = conn.get_execution_options().get(WRITE_OPTION)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)


class ArchiveStore:
    """The archive database. With a `signer`, the log is signed every `checkpoint_every` records
    (on the append that reaches it) and, through `checkpoint_if_due`, `checkpoint_seconds` after
    the oldest unsigned record was written."""

    def __init__(
        self,
        url: str,
        signer: Signer | None = None,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        checkpoint_log: Path | None = None,
    ) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._writer = self.engine.execution_options(**{WRITE_OPTION: True})
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._hot = HotStatements.compile(self.engine.dialect)
        self.signer = signer
        self.checkpoint_every = max(1, checkpoint_every)
        self.checkpoint_seconds = checkpoint_seconds
        # Size of the newest checkpoint seen; other processes may have signed more since,
        # so it is only a hint that is re-read under the lock before signing.
        self._signed: int | None = None
        # Published only once their transaction committed: a rolled-back checkpoint published
        # would make the witness claim records that were never written.
        self.checkpoint_log = checkpoint_log
        self._unpublished: list[Checkpoint] = []

    @classmethod
    def from_config(cls, config: ArchiveConfig) -> ArchiveStore:
        """The store as configured; ValueError when archive.signing_key names an unusable key."""
        signer = None
        if config.signing_key is not None:
            if not config.signing_key.exists():
                raise ValueError(
                    f"archive.signing_key {config.signing_key} does not exist: "
                    "create it with `switchboard archive keygen`"
                )
            signer = Signer.load(config.signing_key)
        return cls(
            config.url, signer, config.checkpoint_every, config.checkpoint_seconds, config.checkpoint_log
        )

    def migrate(self) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._writer.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            if not self.is_postgres and (conn.execute(MAX_SEQ).scalar() or 0) >= ANALYZE_FROM:
                # Without statistics SQLite may walk a time index instead of the employee's few
                # records (seconds, not milliseconds, at a million records); PostgreSQL's
                # autovacuum keeps its own. Sampled, so it costs milliseconds; `records` only, as
                # statistics on the full-text index's own tables slow its merges down badly.
                conn.exec_driver_sql("PRAGMA analysis_limit=1000")
                conn.exec_driver_sql("ANALYZE records")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        try:
            with self._writer.begin() as conn:
                try:
                    if self._hot.lock is not None:
                        self._hot.lock.run(conn, {"k": PG_LOCK_KEY})
                    yield conn
                finally:
                    # conn.info outlives the transaction (it belongs to the pooled connection)
                    conn.info.pop(NEXT_SEQ, None)
                    release(conn)
        except BaseException:
            self._unpublished.clear()
            self._signed = None  # a checkpoint made in the rolled-back transaction is gone with it
            raise
        if self._unpublished:
            made, self._unpublished = self._unpublished, []
            if self.checkpoint_log is not None:
                try:
                    witness.publish(self.checkpoint_log, made)
                except OSError as exc:  # committed already: the caller's work must not look failed
                    log.error(
                        "could not append %d checkpoints to archive.checkpoint_log %s: %s "
                        "(they are signed and in the database; fix the file so later ones are witnessed)",
                        len(made),
                        self.checkpoint_log,
                        exc,
                    )

    # -- appending -----------------------------------------------------------------

    def _next_seq(self, conn: Connection) -> int:
        # Under the write lock nobody else appends, so within one transaction seq is counted
        # here after the first look; that look is most of the cost of a batched append.
        seq = conn.info.get(NEXT_SEQ)
        if seq is None:
            seq = (self._hot.max_seq.scalar(conn, {}) or 0) + 1
        return seq

    def append_locked(self, conn: Connection, draft: RecordDraft) -> int:
        """Append one record inside a `writing()` transaction; sign the log when N records are due."""
        return self._append_next(conn, fitted(draft))

    def _append_next(self, conn: Connection, draft: RecordDraft) -> int:
        """`append_locked` for a draft already `fitted`."""
        seq = self._next_seq(conn)
        self._append(conn, draft, seq)
        conn.info[NEXT_SEQ] = seq + 1
        self._checkpoint_if_full(conn, seq)
        return seq

    def _append(self, conn: Connection, draft: RecordDraft, seq: int) -> None:
        if draft.target_seq is None and draft.attrs.get("target_native_id"):
            # Edits, deletes and replies name their target natively; the log links them by seq.
            target = self._seq_for(conn, draft.network, draft.room, draft.attrs["target_native_id"])
            draft = replace(draft, target_seq=target)
        if draft.attrs.get("reply_to") and "reply_seq" not in draft.attrs:
            reply_seq = self._seq_for(conn, draft.network, draft.room, draft.attrs["reply_to"])
            draft = replace(draft, attrs={**draft.attrs, "reply_seq": reply_seq})
        row, content = rows_for(draft, seq, datetime.now(UTC))
        if content is not None:
            self._hot.insert_content.run(conn, content)
        self._hot.insert_record.run(conn, row)
        # Keyed by the hash of the bytes themselves, which the content names: one row per file.
        kept = {hashlib.sha256(data).hexdigest(): data for data in draft.files}
        for sha, data in kept.items():
            self._hot.insert_file.run(conn, {"seq": seq, "sha256": sha, "size": len(data), "data": data})

    def append(self, draft: RecordDraft, deliveries: list[OutboxDraft]) -> Appended | None:
        """Archive one inbound event with its outbox rows, atomically.

        Returns None when the event's native id was archived before (a redelivery).
        """
        with self.writing() as conn:
            return self.append_in(conn, draft, deliveries)

    def append_in(
        self, conn: Connection, draft: RecordDraft, deliveries: list[OutboxDraft]
    ) -> Appended | None:
        """`append` inside a `writing()` transaction (several events may share one commit)."""
        draft = fitted(draft)
        if draft.native_id and self._seq_for(conn, draft.network, draft.room, draft.native_id):
            return None
        seq = self._append_next(conn, draft)  # fitted above, for the id map too
        if draft.native_id:
            self._hot.insert_idmap.run(
                conn,
                {"seq": seq, "network": draft.network, "room": draft.room, "native_id": draft.native_id},
            )
        rows = []
        for d in deliveries:
            payload = canonical(d.payload).decode("utf-8")
            row_id = self._hot.insert_outbox.scalar(
                conn,
                {
                    "seq": seq,
                    "portal": draft.portal,
                    "network": d.network,
                    "room": d.room,
                    "payload": payload,
                },
            )
            rows.append(OutboxRow(row_id, seq, draft.portal, d.network, d.room, d.payload, 0))
        return Appended(seq, tuple(rows))

    def append_record(self, draft: RecordDraft) -> int:
        """Archive a record with no deliveries (reviews, holds, exports …)."""
        with self.writing() as conn:
            return self.append_locked(conn, draft)

    # -- checkpoints ---------------------------------------------------------------

    def _checkpoint_if_full(self, conn: Connection, seq: int) -> None:
        if self.signer is None:
            return
        if self._signed is None or seq - self._signed >= self.checkpoint_every:
            self._signed = checkpoints.signed_size(conn)
        if seq - self._signed >= self.checkpoint_every:
            made = checkpoints.make(conn, self.signer, seq, datetime.now(UTC))
            self._unpublished.append(made)
            self._signed = made.tree_size

    def checkpoint_if_due(self, now: datetime | None = None) -> Checkpoint | None:
        """Sign the log if its oldest unsigned record is `checkpoint_seconds` old.

        The running bridge calls this every few seconds; it is cheap when nothing is due.
        """
        if self.signer is None:
            return None
        now = now or datetime.now(UTC)
        with self.engine.connect() as conn:
            oldest = checkpoints.oldest_unsigned(conn)
        if oldest is None or (now - parse_timestamp(oldest)).total_seconds() < self.checkpoint_seconds:
            return None
        return self.checkpoint(now)

    def checkpoint(self, now: datetime | None = None) -> Checkpoint | None:
        """Sign the whole log now (if anything is unsigned); returns the newest checkpoint."""
        if self.signer is None:
            raise ValueError("the archive has no signing key (archive.signing_key)")
        with self.writing() as conn:
            size = self._next_seq(conn) - 1
            if checkpoints.signed_size(conn) < size:
                self._unpublished.append(checkpoints.make(conn, self.signer, size, now or datetime.now(UTC)))
            self._signed = size
            return checkpoints.latest(conn)

    # -- delivering ----------------------------------------------------------------

    def delivered(self, row: OutboxRow, native_id: str) -> int | None:
        """Mark an outbox row delivered, map its native id, archive a delivery record."""
        with self.writing() as conn:
            return self.delivered_in(conn, row, native_id)

    def delivered_in(self, conn: Connection, row: OutboxRow, native_id: str) -> int | None:
        """`delivered` inside a `writing()` transaction."""
        done = self._hot.mark_delivered.run(conn, {"row_id": row.id, "delivered_id": native_id})
        if done.rowcount == 0:
            return None
        if native_id and not self._seq_for(conn, row.network, row.room, native_id):
            self._hot.insert_idmap.run(
                conn, {"seq": row.seq, "network": row.network, "room": row.room, "native_id": native_id}
            )
        return self.append_locked(
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
        )

    def failed(self, row: OutboxRow, error: str, final: bool) -> None:
        with self.writing() as conn:
            values: dict[str, Any] = {"attempts": outbox.c.attempts + 1, "last_error": error[:1024]}
            if final:
                values["status"] = "failed"
            conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))

    def pending(
        self,
        portals: Collection[str],
        room: tuple[str, str] | None = None,
        limit: int | None = None,
        after: int = 0,
    ) -> list[OutboxRow]:
        """Undelivered outbox rows of these portals, oldest first (other processes own the rest);
        only those to `room` (network, room id) if given, after row id `after`, at most `limit`."""
        query = select(outbox).where(
            outbox.c.status == "pending", outbox.c.portal.in_(sorted(portals)), outbox.c.id > after
        )
        if room is not None:
            query = query.where(outbox.c.network == room[0], outbox.c.room == room[1])
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(outbox.c.id).limit(limit))
            return [
                OutboxRow(r.id, r.seq, r.portal, r.network, r.room, json.loads(r.payload), r.attempts)
                for r in rows
            ]

    def files_of(self, seq: int) -> dict[str, bytes]:
        """The kept (not purged) attachment bytes of record `seq`, by sha256."""
        with self.engine.connect() as conn:
            return kept_files(conn, seq)

    # -- id map --------------------------------------------------------------------

    def _seq_for(self, conn: Connection, network: str, room: str, native_id: str) -> int | None:
        """Inside a `writing()` transaction."""
        return self._hot.seq_for.scalar(conn, {"network": network, "room": room, "native_id": native_id})

    def seq_for(self, network: str, room: str, native_id: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(SEQ_FOR, {"network": network, "room": room, "native_id": native_id}).scalar()

    def native_for(self, seq: int, network: str, room: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(NATIVE_FOR, {"seq": seq, "network": network, "room": room}).scalar()

    def captured_at(self, seq: int) -> datetime | None:
        """When record `seq` was archived."""
        with self.engine.connect() as conn:
            value = conn.execute(select(records.c.captured_at).where(records.c.seq == seq)).scalar()
        return datetime.fromisoformat(value) if value else None

    def last_inbound(self, portal: str, network: str, room: str, captured_before: datetime) -> str | None:
        """The native id of the newest event archived from `room` on `network` (not our own
        deliveries there) before `captured_before`: where a network that replays resumes."""
        query = (
            select(records.c.native_id)
            .where(
                records.c.portal == portal,
                records.c.network == network,
                records.c.room == room,
                records.c.kind.in_(CHAT_KINDS),  # what people said there, not our deliveries
                records.c.native_id != "",
                records.c.captured_at < timestamp(captured_before),
            )
            .order_by(records.c.seq.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    # -- connector state -----------------------------------------------------------

    def state_get(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(state.c.value).where(state.c.key == key)).scalar()

    def state_put(self, key: str, value: str, ttl: float | None = None) -> None:
        """Set a key; with `ttl`, `prune_state` may forget it that many seconds from now."""
        with self.writing() as conn:
            self.state_put_in(conn, key, value, ttl)

    def state_put_in(self, conn: Connection, key: str, value: str, ttl: float | None = None) -> None:
        """`state_put` inside a `writing()` transaction."""
        expires = timestamp(datetime.now(UTC) + timedelta(seconds=ttl)) if ttl is not None else None
        if conn.execute(select(state.c.key).where(state.c.key == key)).first():
            conn.execute(update(state).where(state.c.key == key).values(value=value, expires_at=expires))
        else:
            conn.execute(insert(state).values(key=key, value=value, expires_at=expires))

    def prune_state(self, now: datetime | None = None) -> int:
        """Forget the state keys whose time to live has run out; how many were."""
        with self.writing() as conn:
            cutoff = timestamp(now or datetime.now(UTC))
            return conn.execute(delete(state).where(state.c.expires_at < cutoff)).rowcount
