"""Hostile Matrix messages from a real Synapse into the real router and archive, on both engines.

The transaction is answered only after the archive committed, so a message whose record
cannot be written (a lone surrogate in canonical JSON, issue 9 hole 15) or whose HTML
cannot be read (hole 1) stopped all Matrix inbound: each must now be archived, the
transaction acknowledged, and a normal message right after still archived and relayed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import AsyncClient
from sqlalchemy import select

from bridge.archive import AsyncArchive
from bridge.archive.schema import contents, records
from bridge.archive.store import ArchiveStore
from bridge.archive.verify import verify_archive
from bridge.codec import text_from_json
from bridge.connector import Capabilities, ConnectorContext
from bridge.delivery import Delivery
from bridge.directory.yaml import YamlDirectory
from bridge.model import Portal
from bridge.policy import PolicySet
from bridge.router import NetworkInfo, PortalIndex, Router
from bridge.text import Text
from connectors.irc.format import render as irc_render
from connectors.matrix import MatrixConnector
from connectors.matrix.format import MAX_HTML_CHARS
from tests.fakes.state import MemoryState
from tests.integration import test_matrix_connector as base
from tests.integration.test_matrix_connector import HTML, create_room, fake_event, say, wait_for
from tests.integration.test_router_delivery import Recorder
from tests.keys import UNSIGNED
from tests.servers.synapse import SynapseSession, synapse  # noqa: F401 - the session's Synapse

alice = base.alice  # the fixture


@dataclass
class Bridged:
    """A Matrix room bridged to a recorded IRC channel through the real router and archive."""

    matrix: MatrixConnector
    irc: Recorder
    archive: AsyncArchive
    delivery: Delivery
    room_id: str
    hs_token: str

    async def push(self, events: list[dict[str, Any]]) -> int:
        url = f"{self.matrix.config.url}/_matrix/app/v1/transactions/{uuid.uuid4().hex}"
        headers = {"Authorization": f"Bearer {self.hs_token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.put(url, json={"events": events}, headers=headers) as r,
        ):
            return r.status

    def record(self, native_id: str) -> dict[str, Any] | None:
        with self.archive.store.engine.connect() as conn:
            row = conn.execute(
                select(records.c.seq, records.c.flags, contents.c.body, contents.c.plain)
                .join(contents, contents.c.seq == records.c.seq)
                .where(records.c.native_id == native_id, records.c.kind == "message")
            ).one_or_none()
        if row is None:
            return None
        return {
            "seq": row.seq,
            "flags": json.loads(row.flags),
            "body": json.loads(row.body),
            "plain": row.plain,
        }

    async def archived(self, native_id: str) -> dict[str, Any]:
        return await wait_for(lambda: self.record(native_id), f"the record of {native_id}")

    async def relayed(self, native_id: str) -> Text:
        await self.delivery.idle()
        record = await self.archived(native_id)
        [out] = await wait_for(lambda: [o for o in self.irc.sent if o.seq == record["seq"]], "the relay")
        return out.text


@pytest.fixture
async def bridged(
    synapse: SynapseSession,  # noqa: F811
    alice: AsyncClient,
    archive_url: str,
    tmp_path: Path,
) -> AsyncIterator[Bridged]:
    room_id, alias = await create_room(alice)
    (tmp_path / "dir.yaml").write_text(
        "people:\n"
        f'  - {{employee_id: E1001, name: Alice Smith, department: Trading, handles: {{matrix: "{alice.user_id}"}}}}\n'
    )
    directory = YamlDirectory(tmp_path / "dir.yaml")
    directory.load()
    store = ArchiveStore(archive_url)
    store.migrate()
    archive = AsyncArchive(store)
    irc = Recorder("irc")
    matrix = MatrixConnector(ConnectorContext("matrix", synapse.matrix_options(), MemoryState()))
    delivery = Delivery(archive, {"irc": irc, "matrix": matrix}, frozenset({"trading"}))
    portals = PortalIndex()
    portals.add(Portal("trading", (("matrix", room_id), ("irc", "#trading"))))
    networks = {
        "matrix": NetworkInfo("matrix", "Matrix", MatrixConnector.capabilities),
        "irc": NetworkInfo("irc", "IRC", Capabilities()),
    }

    async def notify(network: str, room: str, user: str, text: str) -> None:
        return None

    router = Router(
        archive, directory, portals, networks, PolicySet(unmapped="deny"), delivery.enqueue, notify
    )
    router.ready.set()
    await matrix.start(router)
    await matrix.join(alias)
    try:
        yield Bridged(matrix, irc, archive, delivery, room_id, synapse.hs_token)
    finally:
        await matrix.stop()
        await delivery.stop()
        await archive.close()


def pushed(room_id: str, sender: str, content: dict[str, Any]) -> dict[str, Any]:
    """An event as a homeserver pushes it (Synapse itself refuses lone surrogates from clients)."""
    return {**fake_event(room_id, "", sender), "content": content}


async def test_hostile_messages_are_archived_and_what_follows_still_flows(
    bridged: Bridged, alice: AsyncClient
) -> None:
    room = bridged.room_id
    cdata = await say(
        alice,
        room,
        {
            "msgtype": "m.text",
            "body": "a b",
            "format": HTML,
            "formatted_body": "<b>a</b> <![CDATA[x]]> b <![",
        },
    )
    forged = await say(
        alice,
        room,
        {
            "msgtype": "m.text",
            "body": "hey all",
            "format": HTML,
            "formatted_body": 'hey <a href="https://matrix.to/#/@_sb_slack_=21channel:corp.test">all</a>',
        },
    )
    surrogates = [
        pushed(room, alice.user_id, {"msgtype": "m.text", "body": "lone \ud800 body"}),
        pushed(
            room,
            alice.user_id,
            {"msgtype": "m.text", "body": "x", "format": HTML, "formatted_body": "<i>lone \udfff</i> html"},
        ),
    ]
    over_cap = pushed(
        room,
        alice.user_id,
        {
            "msgtype": "m.text",
            "body": "plain words",
            "format": HTML,
            "formatted_body": "<b>x</b>" * (MAX_HTML_CHARS // 8 + 1),
        },
    )
    assert await bridged.push([*surrogates, over_cap]) == 200
    after = await say(alice, room, {"msgtype": "m.text", "body": "business as usual"})

    cdata_record = await bridged.archived(cdata)
    assert cdata_record["plain"] == "a b" and cdata_record["flags"] == []
    forged_record = await bridged.archived(forged)
    assert text_from_json(forged_record["body"]["text"]) == Text.of("hey all")  # no mention, no broadcast
    body, html = [await bridged.archived(e["event_id"]) for e in surrogates]
    # The record holds the text as sent; only the search column and IRC get U+FFFD.
    assert text_from_json(body["body"]["text"]) == Text.of("lone \ud800 body")
    assert body["plain"] == "lone \ufffd body"
    assert text_from_json(html["body"]["text"]).plain == "lone \udfff html"
    fallback = await bridged.archived(over_cap["event_id"])
    assert fallback["flags"] == ["format_fallback"] and fallback["plain"] == "plain words"
    assert (await bridged.relayed(after)) == Text.of("business as usual")
    relayed = await bridged.relayed(surrogates[0]["event_id"])
    assert irc_render(relayed) == "lone \ufffd body"
    report = await bridged.archive.call(verify_archive, bridged.archive.store.engine, UNSIGNED)
    assert report.failure is None and report.records >= 6
