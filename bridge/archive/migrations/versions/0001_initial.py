"""The log, its contents, the outbox, the id map and connector state.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("occurred_at", sa.String(27), nullable=False),
        sa.Column("captured_at", sa.String(27), nullable=False),
        sa.Column("network", sa.String(64), nullable=False, server_default=""),
        sa.Column("room", sa.String(255), nullable=False, server_default=""),
        sa.Column("native_id", sa.String(255), nullable=False, server_default=""),
        sa.Column("portal", sa.String(255), nullable=False, server_default=""),
        sa.Column("sender", sa.String(255), nullable=False, server_default=""),
        sa.Column("sender_display", sa.String(255), nullable=False, server_default=""),
        sa.Column("employee_id", sa.String(64)),
        sa.Column("name", sa.String(255)),
        sa.Column("department", sa.String(255)),
        sa.Column("target_seq", sa.BigInteger),
        sa.Column("flags", sa.String(1024), nullable=False, server_default="[]"),
        sa.Column("rule", sa.String(255)),
        sa.Column("reason", sa.String(1024)),
        sa.Column("attrs", sa.Text, nullable=False, server_default="{}"),
        sa.Column("content_sha256", sa.String(64)),
        sa.Column("leaf_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_records_employee", "records", ["employee_id", "seq"])
    op.create_index("ix_records_portal", "records", ["portal", "seq"])
    op.create_index("ix_records_occurred", "records", ["occurred_at"])
    op.create_index("ix_records_target", "records", ["target_seq"])
    op.create_table(
        "contents",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("body", sa.Text),
        sa.Column("plain", sa.Text),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("portal", sa.String(255), nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("room", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("native_id", sa.String(255)),
        sa.Column("last_error", sa.String(1024)),
    )
    op.create_index("ix_outbox_pending", "outbox", ["status", "network", "room", "id"])
    op.create_table(
        "idmap",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("room", sa.String(255), nullable=False),
        sa.Column("native_id", sa.String(255), nullable=False),
        sa.UniqueConstraint("network", "room", "native_id", name="uq_idmap_native"),
    )
    op.create_index("ix_idmap_seq", "idmap", ["seq", "network"])
    op.create_table(
        "state",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
