"""Records of what compliance did: reviews, exports, holds, releases and purges.

The acting person is an employee id from `--as` or SWITCHBOARD_ACTOR; these
records carry it as their sender and in attrs, so the log shows who looked at
or changed what, under the same proof as everything else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.archive.store import RecordDraft


def audit_draft(kind: str, actor: str, **attrs: Any) -> RecordDraft:
    return RecordDraft(
        kind=kind,
        occurred_at=datetime.now(UTC),
        sender=actor,
        sender_display=actor,
        attrs={"actor": actor, **{k: v for k, v in attrs.items() if v is not None}},
    )
