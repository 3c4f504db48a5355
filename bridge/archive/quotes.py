"""The archived message an answer, edit or delete refers to: its words and who sent them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from bridge.archive.schema import contents, idmap, records


@dataclass(frozen=True)
class Quoted:
    name: str  # the directory name, or the sender's own display name
    text: str
    network: str  # where its sender spoke, with their native id there
    sender: str


def quoted(engine: Engine, network: str, room: str, native_id: str) -> Quoted | None:
    """The message with `native_id` on that network (original or relayed copy), or None."""
    query = (
        select(
            records.c.name, records.c.sender_display, records.c.sender, records.c.network, contents.c.plain
        )
        .select_from(idmap)
        .join(records, records.c.seq == idmap.c.seq)
        .outerjoin(contents, contents.c.seq == records.c.seq)
        .where(idmap.c.network == network, idmap.c.room == room, idmap.c.native_id == native_id)
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return Quoted(row.name or row.sender_display or row.sender, row.plain or "", row.network, row.sender)
