"""The documented JSON shape of a record (DESIGN.md, `archive search`); standard library only."""

from __future__ import annotations

import json
from typing import Any


def record_json(row: Any) -> dict[str, Any]:
    """The documented JSON shape of one record (see DESIGN.md, `archive search`)."""
    attrs = json.loads(row.attrs or "{}")
    out: dict[str, Any] = {
        "seq": row.seq,
        "kind": row.kind,
        "network": row.network,
        "room": row.room,
        "portal": row.portal,
        "native_id": row.native_id,
        "sender": row.sender,
        "sender_display": row.sender_display,
        "employee_id": row.employee_id,
        "name": row.name,
        "department": row.department,
        "text": row.plain,
        "occurred_at": row.occurred_at,
        "captured_at": row.captured_at,
        "flags": json.loads(row.flags or "[]"),
        "content_sha256": row.content_sha256,
        "purged": getattr(row, "purged_by", None) is not None,
        "attachments": [attachment_json(a) for a in attachments(_content(row))],
    }
    if row.target_seq is not None:
        out["target_seq"] = row.target_seq
    if row.rule is not None:
        out["rule"] = row.rule
    if row.reason is not None:
        out["reason"] = row.reason
    out.update({k: v for k, v in attrs.items() if k not in out})
    return out


def attachment_json(attachment: dict[str, Any]) -> dict[str, Any]:
    """An attachment as record JSON lists it; `kept` says whether the archive holds its bytes."""
    return {
        "name": attachment.get("name"),
        "content_type": attachment.get("mimetype"),
        "size": attachment.get("size"),
        "sha256": attachment.get("sha256"),
        "kept": kept(attachment),
    }


def _content(row: Any) -> dict[str, Any] | None:
    body = getattr(row, "body", None)  # absent where only the records columns were read
    return json.loads(body) if body else None


def attachments(content: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The attachments a record's content lists (none for purged or file-less content)."""
    return list((content or {}).get("attachments", ()))


def kept(attachment: dict[str, Any]) -> bool:
    """Whether the archive keeps the attachment's bytes (in `files`, under its sha256)."""
    return bool(attachment.get("stored"))
