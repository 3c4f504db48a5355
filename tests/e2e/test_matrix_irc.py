"""Matrix ↔ IRC through the `switchboard run` command, on a real Synapse and a real ngircd.

Alice is on Matrix (matrix-nio), Bob on IRC (a raw socket client). Both are in
the directory, so each sees the other under their corporate name.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.sandbox.ircd import Ngircd
from tests.e2e.harness import (
    BridgeProcess,
    MatrixUser,
    alice_and_bob,
    irc_matrix_config,
    put_transaction,
    unique,
)
from tests.servers.ircclient import IrcClient, Line
from tests.servers.synapse import SynapseSession

TIMEOUT = 20


@dataclass
class World:
    bridge: BridgeProcess
    alice: MatrixUser
    bob: IrcClient
    ircd: Ngircd
    room_id: str
    channel: str
    relay: str
    synapse: SynapseSession

    @property
    def ghost_bob(self) -> str:
        return f"@_sb_irc_{self.bob.nick}:{self.synapse.server_name}"

    async def irc_line(self, contains: str) -> Line:
        return await self.bob.wait_for(
            lambda line: line.command == "PRIVMSG" and line.nick == self.relay and contains in line.text,
            TIMEOUT,
            f"IRC line containing {contains!r}",
        )

    def relayed(self) -> list[str]:
        return [line.text for line in self.bob.privmsgs(self.channel, nick=self.relay)]

    async def delivered(self, text: str) -> None:
        """Wait until the archive holds a delivery record for the message with `text`."""
        for _ in range(100):
            [message] = await asyncio.to_thread(self.bridge.search, "--text", text, "--kind", "message")
            deliveries = await asyncio.to_thread(self.bridge.search, "--kind", "delivery")
            if any(d["target_seq"] == message["seq"] for d in deliveries):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no delivery recorded for {text!r}")

    async def matrix_event(self, sender: str, contains: str) -> dict[str, Any]:
        def found(events: list[dict[str, Any]]) -> bool:
            return any(e["sender"] == sender and contains in e["content"].get("body", "") for e in events)

        events = await self.alice.wait_for(self.room_id, found, TIMEOUT, f"Matrix event with {contains!r}")
        return next(e for e in events if e["sender"] == sender and contains in e["content"].get("body", ""))


@pytest.fixture(scope="module")
def ircd() -> Iterator[Ngircd]:
    """This module's own IRC server: one test restarts it."""
    with Ngircd() as server:
        yield server


@pytest.fixture(scope="module")
async def world(
    synapse: SynapseSession, ircd: Ngircd, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    alice = await MatrixUser(synapse, unique("alice")).login()
    alias = unique("sb-e2e-")
    room_id = await alice.create_room(alias)
    channel = f"#{unique('trading')}"
    bob = await IrcClient("127.0.0.1", ircd.port, unique("bob")).connect()
    await bob.join(channel)
    relay = unique("sb")
    directory = alice_and_bob(alice.user_id, bob.nick)
    config = irc_matrix_config(synapse, ircd.port, alias, channel, relay, "sqlite:///archive.db")
    config["archive"]["instance"] = "east"  # one of several bridges that could share this archive
    bridge = BridgeProcess(tmp_path_factory.mktemp("bridge"), config, directory)
    await asyncio.to_thread(bridge.start)
    await bob.wait_for(lambda line: line.command == "JOIN" and line.nick == relay, TIMEOUT, "relay joins")
    world = World(bridge, alice, bob, ircd, room_id, channel, relay, synapse)
    yield world
    print(bridge.log_tail(80))  # shown by pytest only when a test failed
    await asyncio.to_thread(bridge.stop)
    await world.bob.close()
    await alice.close()


async def test_matrix_to_irc_shows_directory_name(world: World) -> None:
    await world.alice.send(world.room_id, "hello from Matrix <b>not bold</b>")
    line = await world.irc_line("hello from Matrix")
    assert line.text == "<Alice Smith> hello from Matrix <b>not bold</b>"


async def test_irc_to_matrix_comes_from_a_ghost_named_from_the_directory(world: World) -> None:
    await world.bob.privmsg(world.channel, "hi from IRC")
    event = await world.matrix_event(world.ghost_bob, "hi from IRC")
    assert event["content"]["body"] == "hi from IRC"
    assert event["content"]["msgtype"] == "m.text"
    assert await world.alice.display_name(world.ghost_bob) == "Bob Jones (IRC)"


async def test_emotes_both_ways(world: World) -> None:
    await world.alice.send(world.room_id, "waves at everyone", msgtype="m.emote")
    line = await world.irc_line("waves at everyone")
    assert line.text == "* Alice Smith waves at everyone"
    await world.bob.action(world.channel, "nods slowly")
    event = await world.matrix_event(world.ghost_bob, "nods slowly")
    assert event["content"]["msgtype"] == "m.emote" and event["content"]["body"] == "nods slowly"


async def test_formatting_survives_both_directions(world: World) -> None:
    html = '<b>bold</b> <i>it</i> <code>x=1</code> <a href="https://example.com/a">site</a> fmt1'
    await world.alice.send(world.room_id, "bold it x=1 site fmt1", html=html)
    line = await world.irc_line("fmt1")
    assert "\x02bold\x02" in line.text
    assert "\x1dit\x1d" in line.text
    assert "\x11x=1\x11" in line.text
    assert "https://example.com/a" in line.text and "site" in line.text

    await world.bob.privmsg(
        world.channel, "\x02strong\x02 \x1dslanted\x1d \x11code\x11 https://example.org/b fmt2"
    )
    event = await world.matrix_event(world.ghost_bob, "fmt2")
    content = event["content"]
    assert content["body"] == "strong slanted code https://example.org/b fmt2"
    formatted = content["formatted_body"]
    assert any(tag in formatted for tag in ("<strong>strong</strong>", "<b>strong</b>"))
    assert any(tag in formatted for tag in ("<em>slanted</em>", "<i>slanted</i>"))
    assert "<code>code</code>" in formatted
    assert '<a href="https://example.org/b">' in formatted


async def test_long_multibyte_message_arrives_complete_and_in_order(world: World) -> None:
    words = [f"{i:03d}-é€😀ß" for i in range(160)]
    text = " ".join(words)
    assert len(text.encode()) > 2000
    await world.alice.send(world.room_id, text)
    await world.irc_line(words[-1])
    lines = [t for t in world.relayed() if any(w in t for w in words)]
    assert len(lines) >= 4
    assert all(t.startswith("<Alice Smith> ") for t in lines)
    rebuilt = " ".join(t.removeprefix("<Alice Smith> ") for t in lines).split()
    assert rebuilt == words
    for raw in (line.raw for line in world.bob.privmsgs(world.channel, nick=world.relay)):
        assert len(raw) + 2 <= 512  # nothing the server had to cut


async def test_crlf_injection_neither_joins_nor_quits(world: World) -> None:
    evil = unique("#evil")
    await world.alice.send(world.room_id, f"innocent\r\nJOIN {evil}")
    await world.alice.send(world.room_id, "bye\nQUIT :pwned")
    await world.irc_line("QUIT :pwned")
    await world.alice.send(world.room_id, "still relaying crlf")
    await world.irc_line("still relaying crlf")
    await world.bob.send_raw(f"NAMES {evil}")
    await world.bob.wait_for(lambda line: line.command == "366" and evil in line.params, TIMEOUT, "NAMES end")
    names = [line for line in world.bob.lines if line.command == "353" and evil in line.params]
    assert all(world.relay not in line.text for line in names)
    assert not [line for line in world.bob.lines if line.command == "QUIT" and line.nick == world.relay]
    assert f"<Alice Smith> JOIN {evil}" in world.relayed()


def _event(world: World, body: str) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": f"$synthetic-{uuid.uuid4().hex}",
        "room_id": world.room_id,
        "sender": world.alice.user_id,
        "origin_server_ts": 1_790_000_000_000,
        "content": {"msgtype": "m.text", "body": body},
    }


async def test_wrong_hs_token_is_refused_and_nothing_is_kept(world: World) -> None:
    forged = _event(world, "forged-by-attacker")
    assert await put_transaction(world.synapse, unique("t"), [forged], "not-the-hs-token") == 403
    assert await put_transaction(world.synapse, unique("t"), [forged], "") in (401, 403)
    await world.alice.send(world.room_id, "after the forgery")
    await world.irc_line("after the forgery")
    assert not [t for t in world.relayed() if "forged-by-attacker" in t]
    assert await asyncio.to_thread(world.bridge.search, "--text", "forged-by-attacker") == []


async def test_same_transaction_twice_is_processed_once(world: World) -> None:
    txn = unique("t")
    event = _event(world, f"once-only {txn}")
    for _ in range(2):
        assert await put_transaction(world.synapse, txn, [event], world.synapse.hs_token) == 200
    # A different transaction carrying the same event (a homeserver retry) is deduplicated too.
    assert await put_transaction(world.synapse, unique("t"), [event], world.synapse.hs_token) == 200
    await world.irc_line(f"once-only {txn}")
    await world.alice.send(world.room_id, f"marker after {txn}")
    await world.irc_line(f"marker after {txn}")
    assert len([t for t in world.relayed() if f"once-only {txn}" in t]) == 1
    records = await asyncio.to_thread(world.bridge.search, "--text", f"once-only {txn}", "--kind", "message")
    assert len(records) == 1 and records[0]["native_id"] == event["event_id"]


async def test_sigkill_loses_and_duplicates_nothing(world: World) -> None:
    tag = unique("k")
    await world.alice.send(world.room_id, f"{tag} before crash")
    await world.irc_line(f"{tag} before crash")
    # "Relayed" means the bridge recorded the delivery; IRC has no message ids, so a crash in
    # the instant between writing a line and recording it could repeat that one line.
    await world.delivered(f"{tag} before crash")
    await asyncio.to_thread(world.bridge.kill)
    for i in range(5):
        await world.alice.send(world.room_id, f"{tag} while down {i}")
    await asyncio.to_thread(world.bridge.start)
    await world.irc_line(f"{tag} while down 4")
    ours = [t for t in world.relayed() if tag in t]
    assert ours == [f"<Alice Smith> {tag} before crash"] + [
        f"<Alice Smith> {tag} while down {i}" for i in range(5)
    ]
    # Messages from IRC flow again too.
    await world.bob.privmsg(world.channel, f"{tag} from irc after restart")
    await world.matrix_event(world.ghost_bob, f"{tag} from irc after restart")


async def test_expired_connector_state_is_forgotten(world: World) -> None:
    """Handled transaction ids expire after a day instead of piling up one row per transaction."""
    tag = unique("t")
    await world.alice.send(world.room_id, f"{tag} remembered")
    await world.delivered(f"{tag} remembered")
    archive = world.bridge.workdir / "archive.db"
    with sqlite3.connect(archive) as db:
        txns = db.execute("SELECT expires_at FROM state WHERE key LIKE 'east/matrix:txn:%'").fetchall()
        assert txns and all(expires for (expires,) in txns)  # every one will expire
        # Everything this bridge keeps is under its instance name, apart from other bridges' state.
        keys = [key for (key,) in db.execute("SELECT key FROM state")]
        assert keys and all(key.startswith("east/") for key in keys), keys
    await asyncio.to_thread(world.bridge.stop)
    with sqlite3.connect(archive) as db:
        db.execute(
            "INSERT INTO state (key, value, expires_at) VALUES ('east/matrix:txn:stale', 'done', '2026-01-01T00:00:00.000000Z')"
        )
    await asyncio.to_thread(world.bridge.start)

    def stale() -> list[tuple[str]]:
        with sqlite3.connect(archive) as db:
            return db.execute("SELECT key FROM state WHERE key = 'east/matrix:txn:stale'").fetchall()

    deadline = time.monotonic() + TIMEOUT
    while stale() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert stale() == []
    assert "forgot 1 expired connector state keys" in world.bridge.log_text()


async def test_irc_lines_said_while_the_archive_is_locked_are_held_not_lost(world: World) -> None:
    """IRC never repeats a line: when the archive cannot take one, the bridge holds it, in order."""
    tag = unique("l")
    lock = sqlite3.connect(world.bridge.workdir / "archive.db", isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # e.g. a backup tool, or a disk that stopped answering
        for i in range(3):
            await world.bob.privmsg(world.channel, f"{tag} said while locked {i}")
        deadline = time.monotonic() + 40  # the bridge waits out SQLite's busy timeout first
        while "holding IRC lines until the archive is back" not in world.bridge.log_text():
            assert time.monotonic() < deadline, world.bridge.log_tail()
            await asyncio.sleep(0.2)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    for i in range(3):
        await world.matrix_event(world.ghost_bob, f"{tag} said while locked {i}")
    events = await world.alice.wait_for(world.room_id, lambda es: True, TIMEOUT, "the room")
    order = [e["content"]["body"] for e in events if tag in e["content"].get("body", "")]
    assert order == [f"{tag} said while locked {i}" for i in range(3)]
    with sqlite3.connect(world.bridge.workdir / "archive.db") as db:
        archived = db.execute("SELECT count(*) FROM contents WHERE plain LIKE ?", (f"{tag}%",)).fetchone()
    assert archived == (3,)


async def test_irc_server_restart_reconnects_rejoins_and_delivers_in_order(world: World) -> None:
    tag = unique("r")
    await asyncio.to_thread(world.ircd.stop)
    await world.bob.close()
    for i in range(5):
        await world.alice.send(world.room_id, f"{tag} queued {i}")
    await asyncio.sleep(1.5)  # the bridge has tried and failed to deliver meanwhile
    await asyncio.to_thread(world.ircd.start)
    world.bob = await IrcClient("127.0.0.1", world.ircd.port, world.bob.nick).connect()
    await world.bob.join(world.channel)
    await world.bob.wait_for(
        lambda line: line.command == "JOIN" and line.nick == world.relay, 60, "relay rejoins after restart"
    )
    await world.irc_line(f"{tag} queued 4")
    assert [t for t in world.relayed() if tag in t] == [f"<Alice Smith> {tag} queued {i}" for i in range(5)]


async def test_archive_holds_each_message_once_with_identity_and_deliveries(world: World) -> None:
    tag = unique("a")
    await world.alice.send(world.room_id, f"{tag} from matrix")
    await world.irc_line(f"{tag} from matrix")
    await world.bob.privmsg(world.channel, f"{tag} from irc")
    event = await world.matrix_event(world.ghost_bob, f"{tag} from irc")
    records = await asyncio.to_thread(world.bridge.search, "--text", tag)
    assert [r["kind"] for r in records] == ["message", "message"]
    m, i = records
    assert (m["network"], m["portal"], m["employee_id"], m["name"], m["department"]) == (
        "matrix",
        "trading",
        "E1001",
        "Alice Smith",
        "Trading",
    )
    assert (
        m["room"] == world.room_id and m["sender"] == world.alice.user_id and m["native_id"].startswith("$")
    )
    assert (i["network"], i["room"], i["sender"], i["employee_id"]) == (
        "irc",
        world.channel,
        world.bob.nick,
        "E1002",
    )
    for r in records:
        for key in (
            "seq",
            "kind",
            "network",
            "room",
            "portal",
            "native_id",
            "sender",
            "employee_id",
            "name",
            "department",
            "text",
            "occurred_at",
            "captured_at",
        ):
            assert key in r, key
        assert r["occurred_at"] <= r["captured_at"]
    deliveries = await asyncio.to_thread(world.bridge.search, "--kind", "delivery")
    to_irc = [d for d in deliveries if d["target_seq"] == m["seq"]]
    to_matrix = [d for d in deliveries if d["target_seq"] == i["seq"]]
    assert [(d["network"], d["room"]) for d in to_irc] == [("irc", world.channel)]
    assert [(d["network"], d["native_id"]) for d in to_matrix] == [("matrix", event["event_id"])]
    # Nothing was archived twice anywhere in this module's traffic.
    everything = await asyncio.to_thread(world.bridge.search, "--kind", "message")
    ids = [(r["network"], r["native_id"]) for r in everything]
    assert len(ids) == len(set(ids))
    assert json.dumps(everything)  # the JSON form is serialisable as documented
