"""Connector state may expire: a key put with a time to live is pruned after it.

Seen-transaction ids and similar bookkeeping would otherwise grow by one row per
homeserver transaction forever.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("state", sa.Column("expires_at", sa.String(27)))
    op.create_index("ix_state_expires", "state", ["expires_at"])
