"""Legal holds and retention: which content may be cleared, and clearing it.

Holds are records (`hold`, and `release` pointing at the hold's seq), so the
set of active holds is rebuilt from the log and a hold cannot be dropped
without a trace. A purge clears `contents.body` and `contents.plain` of records
whose retention has run out and that no hold covers, with the bytes of their
attached files; the records stay, and the purge record commits to the exact
list of seqs it cleared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from bridge.archive.audit import Actor, audit_draft
from bridge.archive.hashing import seqs_sha256
from bridge.archive.schema import contents, files, records
from bridge.archive.store import ArchiveStore
from bridge.codec import timestamp
from bridge.config import parse_duration

DEFAULT_RETENTION = "7y"
PURGE_BATCH = 500


@dataclass(frozen=True)
class Hold:
    id: int  # the seq of the hold record
    actor: str
    reason: str
    placed_at: str
    employee: str | None = None
    portal: str | None = None
    since: str | None = None
    until: str | None = None

    def covers(self, employee_id: str | None, portal: str, occurred_at: str) -> bool:
        if self.employee is not None and employee_id != self.employee:
            return False
        if self.portal is not None and portal != self.portal:
            return False
        if self.since is not None and occurred_at < self.since:
            return False
        return self.until is None or occurred_at < self.until

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Retention:
    """Seconds to keep content: per room (portal id) over per network over the default."""

    default: float
    networks: Mapping[str, float]
    rooms: Mapping[str, float]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Retention:
        return cls(
            parse_duration(config.get("default", DEFAULT_RETENTION)),
            {k: parse_duration(v) for k, v in (config.get("networks") or {}).items()},
            {k: parse_duration(v) for k, v in (config.get("rooms") or {}).items()},
        )

    def period(self, network: str, portal: str) -> float:
        if portal in self.rooms:
            return self.rooms[portal]
        return self.networks.get(network, self.default)

    def shortest(self) -> float:
        return min([self.default, *self.networks.values(), *self.rooms.values()])


@dataclass(frozen=True)
class PurgeResult:
    seqs: list[int]  # content cleared (or, in a dry run, that would be)
    held: list[int]  # past retention but kept by a hold
    purge_seq: int | None  # the purge record; None in a dry run


def active_holds(conn: Connection) -> list[Hold]:
    holds: dict[int, Hold] = {}
    for row in conn.execute(
        select(records.c.seq, records.c.kind, records.c.target_seq, records.c.captured_at, records.c.attrs)
        .where(records.c.kind.in_(("hold", "release")))
        .order_by(records.c.seq)
    ):
        attrs = json.loads(row.attrs)
        if row.kind == "release":
            holds.pop(row.target_seq, None)
            continue
        holds[row.seq] = Hold(
            row.seq,
            attrs["actor"],
            attrs["reason"],
            row.captured_at,
            attrs.get("employee"),
            attrs.get("portal"),
            attrs.get("since"),
            attrs.get("until"),
        )
    return list(holds.values())


def place_hold(
    store: ArchiveStore,
    actor: Actor,
    reason: str,
    employee: str | None = None,
    portal: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> int:
    if not (employee or portal):
        raise ValueError("a hold needs an employee or a portal")
    draft = audit_draft(
        "hold", actor, reason=reason, employee=employee, portal=portal, since=since, until=until
    )
    draft.portal = portal or ""
    return store.append_record(draft)


def release_hold(store: ArchiveStore, actor: Actor, hold_id: int, reason: str | None = None) -> int:
    with store.writing() as conn:
        if hold_id not in {h.id for h in active_holds(conn)}:
            raise ValueError(f"there is no active hold {hold_id} (see `switchboard archive hold list`)")
        draft = audit_draft("release", actor, reason=reason)
        draft.target_seq = hold_id
        return store.append_locked(conn, draft)


def purge(
    store: ArchiveStore,
    actor: Actor,
    retention: Retention,
    before: datetime,
    now: datetime,
    dry_run: bool = False,
) -> PurgeResult:
    """Clear content captured before `before` (never after `now`) and past its retention, unless held."""
    as_of = min(before, now)
    with store.writing() as conn:
        seqs, held = _expired(conn, retention, as_of)
        if dry_run:
            return PurgeResult(seqs, held, None)
        draft = audit_draft(
            "purge",
            actor,
            before=timestamp(before),
            count=len(seqs),
            seqs_sha256=seqs_sha256(seqs),
            held=len(held),
        )
        purge_seq = store.append_locked(conn, draft)
        for i in range(0, len(seqs), PURGE_BATCH):
            batch = seqs[i : i + PURGE_BATCH]
            conn.execute(
                update(contents)
                .where(contents.c.seq.in_(batch))
                .values(body=None, plain=None, purged_by=purge_seq)
            )
            conn.execute(
                update(files)
                .where(files.c.seq.in_(batch), files.c.purged_by.is_(None))
                .values(data=None, purged_by=purge_seq)
            )
        return PurgeResult(seqs, held, purge_seq)


def _expired(conn: Connection, retention: Retention, as_of: datetime) -> tuple[list[int], list[int]]:
    holds = active_holds(conn)
    # Retention runs from capture, the bridge's own clock: a sender cannot date a message back.
    latest = timestamp(as_of - timedelta(seconds=retention.shortest()))
    seqs, held = [], []
    for row in conn.execute(
        select(records.c.seq, records.c.network, records.c.portal, records.c.employee_id)
        .add_columns(records.c.occurred_at, records.c.captured_at)
        .join(contents, contents.c.seq == records.c.seq)
        .where(contents.c.body.is_not(None), records.c.captured_at < latest)
        .order_by(records.c.seq)
    ):
        if row.captured_at >= timestamp(as_of - timedelta(seconds=retention.period(row.network, row.portal))):
            continue
        if any(h.covers(row.employee_id, row.portal, row.occurred_at) for h in holds):
            held.append(row.seq)
        else:
            seqs.append(row.seq)
    return seqs, held
