"""What a reviewer may do with the archive, for the CLI and the console alike.

Each function here is one action, and it appends the record of that action (a
`review`, `hold`, `release` or `export`, with the actor) in the same call that
reads or changes the archive, before any result leaves it: nobody reads the
archive without leaving a record, whichever front end they came through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.archive import retention
from bridge.archive.audit import Actor, audit_draft
from bridge.archive.conversation import Entry, conversation
from bridge.archive.export.run import WRITERS, ExportResult, run_export
from bridge.archive.jsonform import record_json
from bridge.archive.retention import Hold
from bridge.archive.schema import records
from bridge.archive.search import Filters, search, select_records
from bridge.archive.signing import Signer
from bridge.archive.store import ArchiveStore
from bridge.config import Config

FORMATS = tuple(WRITERS)


@dataclass(frozen=True)
class HoldRequest:
    """A legal hold on one person's or one room's records, optionally in a time span."""

    reason: str
    employee: str | None = None
    portal: str | None = None
    since: str | None = None  # ISO timestamps, as the archive stores them
    until: str | None = None

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("a hold must say why (reason)")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("a hold's since must be before its until")


@dataclass(frozen=True)
class ExportRequest:
    format: str  # one of FORMATS
    out: Path  # a new or empty directory
    filters: Filters

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"'{self.format}' is not an export format ({', '.join(FORMATS)})")


def open_store(config: Config, need_signer: bool = False) -> ArchiveStore:
    """The configured archive, migrated (the caller closes it); its signer only if the key file is
    there (or needed). ValueError saying what is missing."""
    url = config.archive.url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        raise ValueError(f"archive {url} does not exist yet: run the bridge first, or check archive.url")
    key = config.archive.signing_key
    signer = None
    if key is not None and (need_signer or key.exists()):
        try:
            signer = Signer.load(key)
        except ValueError as exc:
            raise ValueError(
                f"archive.signing_key: {exc}; create one with `switchboard archive keygen`"
            ) from None
    elif need_signer:
        raise ValueError("archive.signing_key is not set: exports are signed with it (see `archive keygen`)")
    # Every process that signs writes the witness too: holds, purges, reviews and exports sign.
    store = ArchiveStore(
        url,
        signer,
        config.archive.checkpoint_every,
        config.archive.checkpoint_seconds,
        config.archive.checkpoint_log,
    )
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


def _review(
    store: ArchiveStore,
    actor: Actor,
    command: str,
    portal: str | None = None,
    target_seq: int | None = None,
    **what: Any,
) -> int:
    draft = audit_draft("review", actor, command=command, **what)
    # In the columns, not only in attrs (where record JSON would hide them behind the columns):
    # an auditor asks who read this room, or this record.
    draft.portal = portal or ""
    draft.target_seq = target_seq
    return store.append_record(draft)


def search_records(store: ArchiveStore, actor: Actor, filters: Filters) -> Iterator[dict[str, Any]]:
    """The records matching `filters` in seq order, as record JSON; the search is archived first."""
    _review(store, actor, "search", filters=filters.to_json())
    return search(store.engine, filters)


def read_conversation(
    store: ArchiveStore, actor: Actor, portal: str, around: int | None = None, context: int = 20
) -> list[Entry]:
    """A portal's messages with their edits and deletions (see `conversation`); LookupError when
    `around` is not one of them. The reading is archived first, found or not."""
    if context < 0:
        raise ValueError("context must be 0 or more")
    _review(store, actor, "conversation", portal=portal, around=around)
    return conversation(store.engine, portal, around, context)


def read_record(store: ArchiveStore, actor: Actor, seq: int) -> dict[str, Any]:
    """One record as record JSON; LookupError when there is none. Archived first, found or not."""
    _review(store, actor, "record", target_seq=seq)
    query = select_records(Filters(), store.is_postgres).where(records.c.seq == seq)
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise LookupError(f"there is no record {seq}")
    return record_json(row)


def place_hold(store: ArchiveStore, actor: Actor, hold: HoldRequest) -> int:
    """Place a legal hold; returns its id (the seq of its `hold` record)."""
    return retention.place_hold(store, actor, hold.reason, hold.employee, hold.portal, hold.since, hold.until)


def release_hold(store: ArchiveStore, actor: Actor, hold_id: int, reason: str | None = None) -> int:
    """Release an active hold; returns the seq of the `release` record. ValueError if not active."""
    return retention.release_hold(store, actor, hold_id, reason)


def list_holds(store: ArchiveStore) -> list[Hold]:
    """The holds in force. Not a read of content (the hold records say only who placed what, and
    why), so, as `archive hold list` always was, not archived."""
    with store.engine.connect() as conn:
        return retention.active_holds(conn)


def export(
    store: ArchiveStore,
    actor: Actor,
    request: ExportRequest,
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Write a signed bundle of the matching records; the `export` record names the actor, the
    filters and the manifest's hash. ValueError when it cannot (no key, empty archive, `out` in use)."""
    return run_export(store, request.format, request.out, request.filters, actor, progress)
