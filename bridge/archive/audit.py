"""Records of what compliance did: reviews, exports, holds, releases and purges.

The acting person is an employee id (from `--as` or SWITCHBOARD_ACTOR, or the
console's signed-in person); these records carry it as their sender and in
attrs, with the role and client address when the console knows them, so the log
shows who looked at or changed what, under the same proof as everything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.archive.store import RecordDraft

EMPLOYEE_ID = re.compile(r"[\w.@:+-]{1,64}")


@dataclass(frozen=True)
class Actor:
    """Who reads or acts; refused unless it names an employee, since nobody looks unrecorded."""

    employee_id: str
    role: str | None = None  # the console role the action was taken in
    client: str | None = None  # the console client's address

    def __post_init__(self) -> None:
        if not self.employee_id:
            raise ValueError("no actor: every read of the archive is recorded with who read it")
        if not EMPLOYEE_ID.fullmatch(self.employee_id):
            raise ValueError(f"'{self.employee_id}' is not an employee id")


def audit_draft(kind: str, actor: Actor, **attrs: Any) -> RecordDraft:
    if not isinstance(actor, Actor):  # a caller that lost track of who acts is refused, not recorded blank
        raise TypeError(f"no actor: {kind} needs an Actor, not {actor!r}")
    who = {"actor": actor.employee_id, "role": actor.role, "client": actor.client}
    return RecordDraft(
        kind=kind,
        occurred_at=datetime.now(UTC),
        sender=actor.employee_id,
        sender_display=actor.employee_id,
        attrs={k: v for k, v in {**who, **attrs}.items() if v is not None},
    )
