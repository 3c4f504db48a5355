"""Signed checkpoints, append-only triggers, purge bookkeeping and full-text search.

The triggers make the log append-only for anyone writing SQL, not just for the
bridge: UPDATE, DELETE (and TRUNCATE on PostgreSQL) on `records` and
`checkpoints` fail. `contents` accepts exactly one kind of update, the purge:
body and plain set to NULL, sha256 untouched, and `purged_by` naming a purge
record that is already in the log, so even a raw-SQL purge leaves a signed trace.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

PURGE_ALLOWED = (
    "NEW.seq = OLD.seq AND NEW.sha256 = OLD.sha256 AND NEW.body IS NULL AND NEW.plain IS NULL"
    " AND OLD.purged_by IS NULL AND NEW.purged_by > OLD.seq"
    " AND EXISTS (SELECT 1 FROM records WHERE records.seq = NEW.purged_by AND records.kind = 'purge')"
)

SQLITE = [
    *(
        f"CREATE TRIGGER {table}_no_{op_} BEFORE {op_.upper()} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'archive {table} are append-only: {op_.upper()} is not allowed'); END"
        for table in ("records", "checkpoints")
        for op_ in ("update", "delete")
    ),
    "CREATE TRIGGER contents_no_delete BEFORE DELETE ON contents "
    "BEGIN SELECT RAISE(ABORT, 'archive contents are append-only: only a purge may clear them'); END",
    f"CREATE TRIGGER contents_purge_only BEFORE UPDATE ON contents WHEN NOT ({PURGE_ALLOWED}) "
    "BEGIN SELECT RAISE(ABORT, 'archive contents are append-only: only a purge may clear them'); END",
    # External-content FTS5 index over contents.plain, kept in step by triggers.
    "CREATE VIRTUAL TABLE contents_fts USING fts5(plain, content='contents', content_rowid='seq')",
    "CREATE TRIGGER contents_fts_insert AFTER INSERT ON contents "
    "BEGIN INSERT INTO contents_fts(rowid, plain) VALUES (NEW.seq, NEW.plain); END",
    "CREATE TRIGGER contents_fts_purge AFTER UPDATE ON contents "
    "BEGIN INSERT INTO contents_fts(contents_fts, rowid, plain) VALUES ('delete', OLD.seq, OLD.plain); END",
    "INSERT INTO contents_fts(contents_fts) VALUES ('rebuild')",
]

POSTGRES = [
    """CREATE FUNCTION archive_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'archive % are append-only: % is not allowed', TG_TABLE_NAME, TG_OP;
    END $$""",
    *(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION archive_append_only()"
        for table in ("records", "checkpoints")
    ),
    *(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION archive_append_only()"
        for table in ("records", "checkpoints", "contents")
    ),
    f"""CREATE FUNCTION archive_contents_purge_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND {PURGE_ALLOWED} THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'archive contents are append-only: only a purge may clear them';
    END $$""",
    "CREATE TRIGGER contents_purge_only BEFORE UPDATE OR DELETE ON contents "
    "FOR EACH ROW EXECUTE FUNCTION archive_contents_purge_only()",
    "CREATE INDEX ix_contents_fts ON contents USING GIN (to_tsvector('simple', coalesce(plain, '')))",
]


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.String(27), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("frontier", sa.Text, nullable=False),
    )
    op.add_column("contents", sa.Column("purged_by", sa.BigInteger))
    op.create_index("ix_records_kind", "records", ["kind", "seq"])
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)
