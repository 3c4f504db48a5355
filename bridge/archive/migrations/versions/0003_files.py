"""The bytes of attached files, kept with the record that carried them.

One row per (record, file). The record's content lists each attachment with
its sha256 and marks the ones whose bytes are kept (`"stored": true`), so the
log commits to every file through the content hash. Like `contents`, the
table is append-only except for the purge, which clears `data` under a purge
record that is already in the log.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

PURGE_ALLOWED = (
    "NEW.seq = OLD.seq AND NEW.sha256 = OLD.sha256 AND NEW.size = OLD.size AND NEW.data IS NULL"
    " AND OLD.purged_by IS NULL AND NEW.purged_by > OLD.seq"
    " AND EXISTS (SELECT 1 FROM records WHERE records.seq = NEW.purged_by AND records.kind = 'purge')"
)
REFUSED = "archive files are append-only: only a purge may clear them"

SQLITE = [
    f"CREATE TRIGGER files_no_delete BEFORE DELETE ON files BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END",
    f"CREATE TRIGGER files_purge_only BEFORE UPDATE ON files WHEN NOT ({PURGE_ALLOWED}) "
    f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END",
]

POSTGRES = [
    f"""CREATE FUNCTION archive_files_purge_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND {PURGE_ALLOWED} THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION '{REFUSED}';
    END $$""",
    "CREATE TRIGGER files_purge_only BEFORE UPDATE OR DELETE ON files "
    "FOR EACH ROW EXECUTE FUNCTION archive_files_purge_only()",
    "CREATE TRIGGER files_no_truncate BEFORE TRUNCATE ON files "
    "FOR EACH STATEMENT EXECUTE FUNCTION archive_append_only()",
]


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary),  # NULL once purged
        sa.Column("purged_by", sa.BigInteger),
    )
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)
