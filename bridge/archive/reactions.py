"""The reaction a removal takes back, for networks whose removals name no reaction id (Slack)."""

from __future__ import annotations

import json

from sqlalchemy import Engine, select

from bridge.archive.schema import contents, idmap, records


def standing_reaction(
    engine: Engine, network: str, room: str, sender: str, target_native_id: str, key: str
) -> str | None:
    """The native id of `sender`'s reaction `key` to the message `target_native_id`, while it
    stands (not yet removed); None when there is none, or the message was never archived."""
    target = (
        select(idmap.c.seq)
        .where(idmap.c.network == network, idmap.c.room == room, idmap.c.native_id == target_native_id)
        .scalar_subquery()
    )
    query = (
        select(records.c.native_id, records.c.attrs)
        .join(contents, contents.c.seq == records.c.seq)
        .where(
            records.c.target_seq == target,
            records.c.kind == "reaction",
            records.c.network == network,
            records.c.sender == sender,
            contents.c.plain == key,
        )
        .order_by(records.c.seq.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None or json.loads(row.attrs).get("removed"):
        return None
    return row.native_id
