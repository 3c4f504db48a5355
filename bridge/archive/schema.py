"""Tables of the archive database.

`records` is the append-only log (one row per archived fact, gap-free `seq`);
`contents` holds what a record said, apart from the log so that retention can
clear it while the log, which commits to its sha256, still verifies.
`files` holds the bytes of attachments, one row per record and file, apart
for the same reason. `checkpoints` holds the signed tree heads of the log.
Triggers (migrations 0002, 0003) keep these four append-only; a purge is the
one update `contents` and `files` allow. The other tables are working state: `outbox` (deliveries still to make), `idmap`
(native ids on every network for each archived event) and `state` (small
connector state such as seen transaction ids).

Times are fixed-width ISO-8601 UTC strings: exact, sortable, engine-neutral.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

RECORD_KINDS = (
    "message",
    "edit",
    "delete",
    "reaction",
    "policy_block",
    "delivery",
    "hold",
    "release",
    "purge",
    "review",
    "export",
    "gap",  # capture was not running, or a network unreachable: attrs `from`, `until`; `reason`
)

records = Table(
    "records",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("occurred_at", String(27), nullable=False),
    Column("captured_at", String(27), nullable=False),
    Column("network", String(64), nullable=False, server_default=""),
    Column("room", String(255), nullable=False, server_default=""),
    Column("native_id", String(255), nullable=False, server_default=""),
    Column("portal", String(255), nullable=False, server_default=""),
    Column("sender", String(255), nullable=False, server_default=""),
    Column("sender_display", String(255), nullable=False, server_default=""),
    Column("employee_id", String(64)),
    Column("name", String(255)),
    Column("department", String(255)),
    Column("target_seq", BigInteger),
    Column("flags", String(1024), nullable=False, server_default="[]"),
    Column("rule", String(255)),
    Column("reason", String(1024)),
    Column("attrs", Text, nullable=False, server_default="{}"),
    Column("content_sha256", String(64)),
    Column("leaf_hash", String(64), nullable=False),
    Index("ix_records_employee", "employee_id", "seq"),
    Index("ix_records_portal", "portal", "seq"),
    Index("ix_records_occurred", "occurred_at"),
    Index("ix_records_target", "target_seq"),
    Index("ix_records_kind", "kind", "seq"),
)

contents = Table(
    "contents",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("sha256", String(64), nullable=False),
    Column("body", Text),  # canonical JSON; NULL once purged
    Column("plain", Text),  # searchable text; NULL once purged
    Column("purged_by", BigInteger),  # seq of the purge record that cleared body and plain
)

files = Table(
    "files",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("sha256", String(64), primary_key=True),  # of data; the record's content lists it
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary),  # NULL once purged
    Column("purged_by", BigInteger),  # seq of the purge record that cleared data
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", String(64), nullable=False),
    Column("signed_at", String(27), nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    # The compact range at tree_size (hex list): lets the next checkpoint start here. Not signed;
    # a tampered frontier yields a root that verify then rejects.
    Column("frontier", Text, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False),
    Column("portal", String(255), nullable=False),
    Column("network", String(64), nullable=False),
    Column("room", String(255), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("native_id", String(255)),
    Column("last_error", String(1024)),
    Index("ix_outbox_pending", "status", "network", "room", "id"),
)

idmap = Table(
    "idmap",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False),
    Column("network", String(64), nullable=False),
    Column("room", String(255), nullable=False),
    Column("native_id", String(255), nullable=False),
    UniqueConstraint("network", "room", "native_id", name="uq_idmap_native"),
    Index("ix_idmap_seq", "seq", "network"),
)

state = Table(
    "state",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Column("expires_at", String(27)),  # NULL: kept until overwritten
    Index("ix_state_expires", "expires_at"),
)
