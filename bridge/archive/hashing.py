"""What the log's hashes are taken over; standard library only (the offline verifier uses it)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bridge.codec import canonical
from bridge.text import well_formed

# The same bytes as bridge.codec.canonical (a unit test holds them equal), from one reused
# encoder: json.dumps builds a new encoder per call, a third of the cost of verifying a record.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def leaf_hash(record: dict[str, Any]) -> str:
    """RFC 6962 leaf hash of a record's canonical JSON (everything but the hash itself)."""
    body = {k: v for k, v in record.items() if k != "leaf_hash"}
    return hashlib.sha256(b"\x00" + _ENCODER.encode(body).encode("utf-8")).hexdigest()


def content_sha256(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def column_text(value: str, limit: int | None = None) -> str:
    """`value` as a text column can hold it: a lone surrogate (UTF-8 cannot encode one) and NUL
    (PostgreSQL refuses it) become U+FFFD, and at most `limit` characters (a varchar's length)
    are kept, marked `…`. Only columns get this; the canonical content keeps what was sent."""
    value = well_formed(value).replace("\x00", "\ufffd")
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def searchable_text(content: dict[str, Any]) -> str:
    """What `contents.plain` holds for a content body: the text a search matches (a column,
    see `column_text`; the body keeps the original)."""
    text = content.get("text")
    return column_text(text.get("plain", "")) if isinstance(text, dict) else ""


def seqs_sha256(seqs: list[int]) -> str:
    """A commitment to an exact set of seqs (what a purge cleared, what an export holds)."""
    return hashlib.sha256(canonical(sorted(seqs))).hexdigest()
