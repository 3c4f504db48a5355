"""A conversation as a reviewer reads it: each message with its edits and deletion inline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from bridge.archive.jsonform import record_json
from bridge.archive.schema import contents, records
from bridge.terminal import visible

CHAT_KINDS = ("message", "edit", "delete", "policy_block")


@dataclass
class Entry:
    message: dict[str, Any]
    edits: list[dict[str, Any]] = field(default_factory=list)
    deletion: dict[str, Any] | None = None

    @property
    def seqs(self) -> Iterator[int]:
        yield self.message["seq"]
        yield from (e["seq"] for e in self.edits)
        if self.deletion:
            yield self.deletion["seq"]

    def to_json(self) -> dict[str, Any]:
        return {**self.message, "edits": self.edits, "deleted": self.deletion}


def conversation(engine: Engine, portal: str, around: int | None = None, context: int = 20) -> list[Entry]:
    """The portal's messages in order; with `around`, the `context` messages either side of that seq."""
    entries: list[Entry] = []
    by_seq: dict[int, Entry] = {}
    query = (
        select(records, contents.c.plain, contents.c.purged_by, contents.c.body)
        .outerjoin(contents, contents.c.seq == records.c.seq)
        .where(records.c.portal == portal, records.c.kind.in_(CHAT_KINDS))
        .order_by(records.c.seq)
    )
    with engine.connect() as conn:
        for row in conn.execute(query):
            record = record_json(row)
            kind = _event_kind(record, row.attrs)
            # Edits of edits point at an edit; the reader wants them under the first message.
            entry = by_seq.get(record.get("target_seq") or 0) if kind in ("edit", "delete") else None
            if entry is None:
                entry = Entry(record)
                entries.append(entry)
            elif kind == "edit":
                entry.edits.append(record)
            else:
                entry.deletion = record
            by_seq[record["seq"]] = entry
    if around is None:
        return entries
    target = by_seq.get(around)
    if target is None:
        raise LookupError(f"seq {around} is not a message, edit or delete in portal {portal}")
    i = entries.index(target)
    return entries[max(0, i - context) : i + context + 1]


def _event_kind(record: dict[str, Any], attrs: str) -> str:
    if record["kind"] == "policy_block":
        return json.loads(attrs).get("event_kind", "message")
    return record["kind"]


def render(entry: Entry) -> Iterator[str]:
    """Lines of text for one entry, as `switchboard archive conversation` prints them, with
    whatever could act on a terminal escaped."""
    m = _shown(entry.message)
    who = _who(m)
    text = _text(m)
    blocked = f" [blocked: {m.get('reason') or m.get('rule')}]" if m["kind"] == "policy_block" else ""
    flags = f" [flagged: {', '.join(m['flags'])}]" if m["flags"] else ""
    yield f"#{m['seq']:<6} {m['occurred_at'][:19].replace('T', ' ')}  {m['network']:<7} {who}: {text}{blocked}{flags}"
    for a in m["attachments"]:
        where = "kept in the archive" if a["kept"] else "not kept (only described)"
        yield f"        [file] {a['name']} ({a['content_type']}, {a['size']} bytes) sha256 {a['sha256'][:12]}… {where}"
    for e in map(_shown, entry.edits):
        yield f"    #{e['seq']:<6} edited {e['occurred_at'][11:19]} by {_who(e)}: {_text(e)}"
    d = _shown(entry.deletion) if entry.deletion else None
    if d:
        yield f"    #{d['seq']:<6} deleted {d['occurred_at'][11:19]} by {_who(d)} (the text above is kept)"


def _shown(record: dict[str, Any]) -> dict[str, Any]:
    def safe(value: Any, keep_newlines: bool = False) -> Any:
        return visible(value, keep_newlines) if isinstance(value, str) else value

    out = {k: safe(v, keep_newlines=k == "text") for k, v in record.items()}
    out["flags"] = [safe(f) for f in record["flags"]]
    out["attachments"] = [{k: safe(v) for k, v in a.items()} for a in record.get("attachments", ())]
    return out


def _who(record: dict[str, Any]) -> str:
    if record["employee_id"]:
        return f"{record['name']} <{record['employee_id']}> ({record['sender']})"
    return f"{record['sender_display'] or record['sender']} (unmapped)"


def _text(record: dict[str, Any]) -> str:
    if record["purged"]:
        return "[content purged by retention]"
    return (record["text"] or "").replace("\n", "\n        ")
