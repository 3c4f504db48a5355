"""JSON forms of core values, for the archive and the durable outbox.

`canonical` is the one byte encoding that hashes are taken over: sorted keys,
no spaces, UTF-8. Changing it would break every stored proof. Text is kept as
sent, so a lone surrogate (JSON can carry `"\ud800"`, UTF-8 cannot) is written
as its JSON escape: the bytes are valid UTF-8 and read back as the same string.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

from bridge.model import Attachment, Outbound, Sender
from bridge.text import LONE_SURROGATE, Span, Text, paired


def canonical(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # only a string can hold a surrogate, so the escape lands in one
        return LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", paired(text)).encode("utf-8")


def timestamp(moment: datetime) -> str:
    """Fixed-width UTC ISO-8601 with microseconds, e.g. 2026-11-22T03:04:05.000006Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def text_to_json(text: Text) -> dict[str, Any]:
    spans = []
    for s in text.spans:
        d: dict[str, Any] = {"kind": s.kind, "start": s.start, "end": s.end}
        d.update({k: v for k, v in (("url", s.url), ("network", s.network), ("user", s.user)) if v})
        if s.broadcast:
            d["broadcast"] = True
        spans.append(d)
    return {"plain": text.plain, "spans": spans}


def text_from_json(data: dict[str, Any]) -> Text:
    return Text(data["plain"], tuple(Span(**s) for s in data.get("spans", ())))


def attachment_to_json(att: Attachment) -> dict[str, Any]:
    return {
        "name": att.name,
        "mimetype": att.mimetype,
        "size": att.size,
        "sha256": att.sha256,
        "url": att.url,
    }


def outbound_to_json(out: Outbound) -> dict[str, Any]:
    data = {f.name: getattr(out, f.name) for f in fields(out)}
    data["sender"] = asdict(out.sender)
    data["text"] = text_to_json(out.text)
    data["attachments"] = [attachment_to_json(a) for a in out.attachments]
    return data


def outbound_from_json(data: dict[str, Any]) -> Outbound:
    return Outbound(
        **{
            **data,
            "sender": Sender(**data["sender"]),
            "text": text_from_json(data["text"]),
            "attachments": tuple(Attachment(**a) for a in data.get("attachments", ())),
        }
    )
