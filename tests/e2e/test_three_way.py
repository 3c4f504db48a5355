"""A three-way room Matrix ↔ Slack ↔ IRC through the `switchboard run` command.

Real Synapse, real ngircd and the Slack emulator (which runs on the test's event
loop; the bridge subprocess reaches it over HTTP and Socket Mode). People:

- Alice Smith on Matrix (matrix-nio),
- Carol White on Slack (an emulator user whose own Slack name is `carol.w`),
- Dave Brown on Slack, who also has a Matrix account (a mapped mention),
- Bob Jones on IRC (a raw socket client),

all in the YAML directory, so everyone appears under their corporate name.
Two bridged rooms: `trading` (the one under test) and `desk` (which must keep
flowing while `trading` is rate-limited on Slack).

The emulator enforces Slack's 1 message/s per channel with 429s throughout, so
the IRC burst test takes about 30 seconds by design.
"""

from __future__ import annotations

import asyncio
import copy
import email
import hashlib
import io
import json
import random
import re
import sqlite3
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import UploadResponse

from bridge.sandbox.ircd import Ngircd
from bridge.sandbox.ports import free_port
from connectors.matrix.config import DEFAULT_GHOST_PREFIX
from connectors.matrix.ghosts import Ghosts
from tests.e2e.harness import (
    BridgeProcess,
    MatrixUser,
    emulator_network,
    ngircd_network,
    put_transaction,
    switchboard,
    unique,
)
from tests.fakes.slack import Posted, SlackEmulator, User, post_signed_event, url_verification_body
from tests.servers.ircclient import IrcClient, Line
from tests.servers.synapse import SynapseSession

TIMEOUT = 20
ICONS = "https://avatars.corp.test/{employee_id}.png"
SIGNING_SECRET = "e2e-signing-secret-8f742231b10e8888abcd"
MEDIA_SECRET = "e2e-media-secret-5b1d0c7e9a"
MEDIA_URL = "http://127.0.0.1:{}"


def icon(employee_id: str) -> str:
    return ICONS.format(employee_id=employee_id)


@dataclass
class World:
    bridge: BridgeProcess
    emu: SlackEmulator
    synapse: SynapseSession
    ircd: Ngircd
    alice: MatrixUser
    dave_mx: MatrixUser
    bob: IrcClient
    carol: User
    dave: User
    room_id: str  # Matrix room of `trading`
    room2_id: str  # Matrix room of `desk`
    channel: str  # Slack channel id of `trading`
    channel2: str  # Slack channel id of `desk`
    channel2_name: str
    irc: str  # IRC channel of `trading`
    irc2: str  # IRC channel of `desk`
    relay: str

    # -- who is who -------------------------------------------------------------------

    def ghost(self, network: str, native_id: str) -> str:
        return Ghosts(DEFAULT_GHOST_PREFIX, self.synapse.server_name).mxid(network, native_id)

    @property
    def ghost_carol(self) -> str:
        return self.ghost("slack", self.carol.id)

    @property
    def ghost_dave(self) -> str:
        return self.ghost("slack", self.dave.id)

    @property
    def ghost_bob(self) -> str:
        return self.ghost("irc", self.bob.nick)

    # -- observing --------------------------------------------------------------------

    async def on_slack(
        self, match: Callable[[Posted], bool], what: str, channel: str | None = None, timeout: float = TIMEOUT
    ) -> Posted:
        """The first bot post in `channel` (default: trading's) for which `match` holds."""
        channel = channel or self.channel

        def found() -> Posted | None:
            return next((p for p in self.emu.posted(channel) if match(p)), None)

        try:
            return await self.emu.wait_for(found, timeout=timeout, what=what)
        except TimeoutError:
            recent = [
                (p.username, p.text, p.thread_ts, [f.name for f in p.files], p.previous_texts)
                for p in self.emu.posted(channel)[-8:]
            ]
            raise AssertionError(
                f"{what}: not on Slack {channel} within {timeout}s; last posts: {recent}"
            ) from None

    async def on_matrix(
        self,
        match: Callable[[dict[str, Any]], bool],
        what: str,
        room: str | None = None,
        timeout: float = TIMEOUT,
    ) -> dict[str, Any]:
        events = await self.alice.wait_for(
            room or self.room_id, lambda es: any(match(e) for e in es), timeout, what
        )
        return next(e for e in events if match(e))

    async def matrix_message(self, sender: str, contains: str, room: str | None = None) -> dict[str, Any]:
        return await self.on_matrix(
            lambda e: (
                e["type"] == "m.room.message"
                and e["sender"] == sender
                and contains in e["content"].get("body", "")
            ),
            f"Matrix message from {sender} with {contains!r}",
            room,
        )

    async def on_irc(
        self, match: Callable[[str], bool], what: str, channel: str | None = None, timeout: float = TIMEOUT
    ) -> str:
        channel = (channel or self.irc).lower()
        line: Line = await self.bob.wait_for(
            lambda line: (
                line.command == "PRIVMSG"
                and line.nick == self.relay
                and line.target.lower() == channel
                and match(line.text)
            ),
            timeout,
            what,
        )
        return line.text

    def irc_texts(self, channel: str | None = None) -> list[str]:
        return [line.text for line in self.bob.privmsgs(channel or self.irc, nick=self.relay)]

    async def record(
        self, kind: str, where: str, args: tuple[Any, ...] = (), timeout: float = TIMEOUT
    ) -> int:
        return await asyncio.to_thread(self.bridge.wait_record, kind, where, args, timeout)

    def messages(self, containing: str) -> list[dict[str, Any]]:
        """The archive's message records whose text contains `containing`, in seq order.

        Read straight from the SQLite archive: `archive search` is a reviewer action now
        (it needs an actor and is itself archived), which a test observing the bridge is not.
        """
        with sqlite3.connect(self.bridge.workdir / "archive.db") as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT r.*, c.plain AS text FROM records r JOIN contents c ON c.seq = r.seq"
                " WHERE r.kind = 'message' AND c.plain LIKE ? ORDER BY r.seq",
                (f"%{containing}%",),
            ).fetchall()
        return [dict(row) for row in rows]

    def content_of(self, seq: int) -> tuple[dict[str, Any], str | None]:
        with sqlite3.connect(self.bridge.workdir / "archive.db") as db:
            body, plain = db.execute("SELECT body, plain FROM contents WHERE seq = ?", (seq,)).fetchone()
        return json.loads(body), plain

    async def slack_message_seq(self, ts: str) -> int:
        return await self.record("message", "r.network = 'slack' AND r.native_id = ?", (ts,))

    # -- acting -----------------------------------------------------------------------

    async def restart(self) -> None:
        """Stop the bridge (SIGTERM; nothing if it is already dead) and start it again; wait until
        the relay is back in both channels."""
        joins = {ch: self._relay_joins(ch) for ch in (self.irc, self.irc2)}
        await asyncio.to_thread(self.bridge.stop)
        await asyncio.to_thread(self.bridge.start)
        for ch, before in joins.items():
            await self.bob.wait_until(
                lambda ch=ch, before=before: self._relay_joins(ch) > before, 60, f"relay rejoins {ch}"
            )

    def _relay_joins(self, channel: str) -> int:
        return sum(
            1
            for line in self.bob.lines
            if line.command == "JOIN" and line.nick == self.relay and line.text.lower() == channel.lower()
        )


def relation(event: dict[str, Any]) -> dict[str, Any]:
    return event["content"].get("m.relates_to") or {}


def png(width: int, height: int, seed: int) -> bytes:
    """A valid, incompressible RGB PNG (random pixels), so its size is about width*height*3."""
    rnd = random.Random(seed)
    raw = b"".join(b"\x00" + rnd.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def ircd() -> Iterator[Ngircd]:
    with Ngircd() as server:
        yield server


@pytest.fixture(scope="module")
async def world(
    synapse: SynapseSession, ircd: Ngircd, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    emu = await SlackEmulator(ack_timeout=3.0).start()  # post_rate: Slack's 1 msg/s per channel
    alice = await MatrixUser(synapse, unique("alice")).login()
    dave_mx = await MatrixUser(synapse, unique("dave")).login()
    alias, alias2 = unique("sb-3way-"), unique("sb-3way-desk-")
    room_id = await alice.create_room(alias)
    room2_id = await alice.create_room(alias2)

    carol = emu.add_user("carol", "carol.w")
    dave = emu.add_user("dave", "dave.b")
    channel_name, channel2_name = unique("trading-"), unique("desk-")
    channel = emu.add_channel(channel_name, [carol.id, dave.id]).id
    channel2 = emu.add_channel(channel2_name, [carol.id, dave.id]).id

    irc, irc2 = f"#{unique('trading')}", f"#{unique('desk')}"
    bob = await IrcClient("127.0.0.1", ircd.port, unique("bob")).connect()
    await bob.join(irc)
    await bob.join(irc2)
    relay = unique("sb")
    media_port = free_port()

    directory = {
        "people": [
            {
                "employee_id": "E1001",
                "name": "Alice Smith",
                "department": "Trading",
                "handles": {"matrix": alice.user_id},
            },
            {
                "employee_id": "E1002",
                "name": "Bob Jones",
                "department": "Sales",
                "handles": {"irc": bob.nick},
            },
            {
                "employee_id": "E1003",
                "name": "Carol White",
                "department": "Trading",
                "handles": {"slack": carol.id},
            },
            {
                "employee_id": "E1004",
                "name": "Dave Brown",
                "department": "Sales",
                "handles": {"slack": dave.id, "matrix": dave_mx.user_id},
            },
        ]
    }
    config = {
        "matrix": synapse.matrix_options(),
        "networks": {
            "slack": emulator_network(emu, icon_url_template=ICONS),
            "irc": ngircd_network(ircd.port, relay, flood_burst=50),
        },
        "directory": {"type": "yaml", "path": "directory.yaml", "unmapped": "deny"},
        "archive": {"url": "sqlite:///archive.db", "signing_key": "archive-signing.key"},
        "media": {
            "listen": f"127.0.0.1:{media_port}",
            "public_url": MEDIA_URL.format(media_port),
            "secret": MEDIA_SECRET,
        },
        "rooms": [
            {"id": "trading", "matrix": f"#{alias}:{synapse.server_name}", "slack": channel, "irc": irc},
            {"id": "desk", "matrix": f"#{alias2}:{synapse.server_name}", "slack": channel2, "irc": irc2},
        ],
    }
    bridge = BridgeProcess(tmp_path_factory.mktemp("three-way"), config, directory)
    world = World(
        bridge, emu, synapse, ircd, alice, dave_mx, bob, carol, dave,
        room_id, room2_id, channel, channel2, channel2_name, irc, irc2, relay,
    )  # fmt: skip
    try:
        bridge.write()
        keygen = switchboard("archive", "keygen", "-c", str(bridge.config_path))
        assert keygen.returncode == 0, keygen.stderr
        await asyncio.to_thread(bridge.start)
        for ch in (irc, irc2):
            await bob.wait_until(lambda ch=ch: world._relay_joins(ch) > 0, TIMEOUT, f"relay joins {ch}")
        yield world
    finally:
        print(f"bridge log {bridge.log_path}:\n{bridge.log_tail(120)}")  # shown when a test failed
        await asyncio.to_thread(bridge.stop)
        await world.bob.close()
        await alice.close()
        await dave_mx.close()
        await emu.stop()


# -- all six directions ---------------------------------------------------------------


async def test_matrix_message_reaches_slack_and_irc_under_directory_names(world: World) -> None:
    tag = unique("m")
    await world.alice.send(world.room_id, f"{tag} hello from Matrix")
    post = await world.on_slack(lambda p: tag in p.text, "Alice's message")
    assert post.text == f"{tag} hello from Matrix"
    assert post.username == "Alice Smith (Matrix)"  # her own name, not the bot with a prefix
    assert post.icon_url == icon("E1001")
    assert post.thread_ts is None
    line = await world.on_irc(lambda t: tag in t, "Alice's line on IRC")
    assert line == f"<Alice Smith> {tag} hello from Matrix"
    # The bot's own Slack post comes back as an event: it must not be relayed again.
    await world.emu.wait_acked(len(world.emu.events), timeout=TIMEOUT)
    marker = unique("mark")
    world.emu.user_posts(world.channel, world.carol.id, marker)
    await world.matrix_message(world.ghost_carol, marker)
    await world.on_irc(lambda t: marker in t, "marker on IRC")
    events = await world.alice.events(world.room_id)
    assert [e["sender"] for e in events if tag in e["content"].get("body", "")] == [world.alice.user_id]
    assert [t for t in world.irc_texts() if tag in t] == [line]
    assert len([p for p in world.emu.posted(world.channel) if tag in p.text]) == 1
    [record] = world.messages(tag)
    assert (record["network"], record["employee_id"], record["name"]) == ("matrix", "E1001", "Alice Smith")


async def test_slack_message_reaches_matrix_and_irc_under_directory_names(world: World) -> None:
    tag = unique("s")
    msg = world.emu.user_posts(world.channel, world.carol.id, f"{tag} hello from Slack")
    event = await world.matrix_message(world.ghost_carol, tag)
    assert event["content"]["body"] == f"{tag} hello from Slack"
    assert event["content"]["msgtype"] == "m.text"
    assert await world.alice.display_name(world.ghost_carol) == "Carol White (Slack)"
    line = await world.on_irc(lambda t: tag in t, "Carol's line on IRC")
    assert line == f"<Carol White> {tag} hello from Slack"
    seq = await world.slack_message_seq(msg.ts)
    [record] = world.messages(tag)
    assert record["seq"] == seq
    assert (record["network"], record["room"], record["sender"]) == ("slack", world.channel, world.carol.id)
    assert (record["employee_id"], record["name"], record["department"]) == (
        "E1003",
        "Carol White",
        "Trading",
    )


async def test_irc_message_reaches_matrix_and_slack_under_directory_names(world: World) -> None:
    tag = unique("i")
    await world.bob.privmsg(world.irc, f"{tag} hello from IRC")
    event = await world.matrix_message(world.ghost_bob, tag)
    assert event["content"]["body"] == f"{tag} hello from IRC"
    assert await world.alice.display_name(world.ghost_bob) == "Bob Jones (IRC)"
    post = await world.on_slack(lambda p: tag in p.text, "Bob's message")
    assert post.text == f"{tag} hello from IRC"
    assert post.username == "Bob Jones (IRC)"
    assert post.icon_url == icon("E1002")
    [record] = world.messages(tag)
    assert (record["network"], record["sender"], record["employee_id"]) == ("irc", world.bob.nick, "E1002")


# -- threads and replies --------------------------------------------------------------


def _thread(world: World, tag: str) -> tuple[str, list[tuple[User, str]]]:
    """Carol asks in a new message; Dave, Carol and Dave answer in its Slack thread."""
    root_text = f"{tag} should we hedge the euro exposure before the Friday close"
    root = world.emu.user_posts(world.channel, world.carol.id, root_text)
    replies = [
        (world.dave, f"reply one {tag}"),
        (world.carol, f"reply two {tag}"),
        (world.dave, f"reply three {tag}"),
    ]
    for user, text in replies:
        world.emu.user_posts(world.channel, user.id, text, thread_ts=root.ts)
    return root.ts, [(u, t) for u, t in replies]


async def test_slack_thread_is_a_matrix_thread(world: World) -> None:
    tag = unique("t")
    root_ts, replies = _thread(world, tag)
    root = await world.matrix_message(world.ghost_carol, f"{tag} should we hedge")
    assert "m.relates_to" not in root["content"]
    for user, text in replies:
        event = await world.matrix_message(world.ghost(("slack"), user.id), text)
        rel = relation(event)
        assert rel.get("rel_type") == "m.thread", f"{text!r} is not in a thread: {event['content']}"
        assert rel.get("event_id") == root["event_id"]
        # Clients without threads see a reply to the thread instead.
        assert rel.get("is_falling_back") is True and "event_id" in rel.get("m.in_reply_to", {})
        assert event["content"]["body"].endswith(text)
    # Alice answers in the Matrix thread: it lands in the same Slack thread.
    answer = f"alice in thread {tag}"
    last = await world.matrix_message(world.ghost_dave, replies[-1][1])
    await world.alice.send(
        world.room_id,
        answer,
        **{
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": root["event_id"],
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": last["event_id"]},
            }
        },
    )
    post = await world.on_slack(lambda p: answer in p.text, "Alice's thread reply")
    assert post.thread_ts == root_ts and post.text == answer


async def test_slack_thread_replies_are_quoted_on_irc(world: World) -> None:
    tag = unique("q")
    root_ts, replies = _thread(world, tag)
    root_line = await world.on_irc(
        lambda t: f"{tag} should we hedge" in t and "↪" not in t, "thread root on IRC"
    )
    assert root_line.startswith(f"<Carol White> {tag} should we hedge")
    root_text = world.emu.message(world.channel, root_ts).text
    names = {world.carol.id: "Carol White", world.dave.id: "Dave Brown"}
    for user, text in replies:
        line = await world.on_irc(lambda t, text=text: text in t, f"quoted reply {text!r} on IRC")
        # <Replier> ↪ Quoted author: first words… | reply
        m = re.fullmatch(rf"<{names[user.id]}> ↪ Carol White: (.+?) \| {re.escape(text)}", line)
        assert m, f"not a quoted reply: {line!r}"
        quoted = m.group(1).removesuffix("…").rstrip()
        assert quoted and root_text.startswith(quoted), line


async def test_matrix_reply_to_a_slack_message_lands_in_its_thread(world: World) -> None:
    tag = unique("r")
    msg = world.emu.user_posts(world.channel, world.carol.id, f"{tag} who has the Q3 numbers?")
    event = await world.matrix_message(world.ghost_carol, tag)
    answer = f"I do, sending them now {tag}"
    await world.alice.send(
        world.room_id, answer, **{"m.relates_to": {"m.in_reply_to": {"event_id": event["event_id"]}}}
    )
    post = await world.on_slack(lambda p: answer in p.text, "Alice's reply")
    assert post.thread_ts == msg.ts, f"reply posted with thread_ts={post.thread_ts!r}, wanted {msg.ts!r}"
    assert post.text == answer and post.username == "Alice Smith (Matrix)"
    [record] = world.messages(answer)
    assert record["network"] == "matrix"


# -- edits and deletes ----------------------------------------------------------------


async def _slack_edit_and_delete(world: World, tag: str, before: Callable[[], Any] | None = None) -> None:
    """Carol says something, (optionally something happens), edits it, then deletes it."""
    original = f"{tag} the spread is 12bp"
    msg = world.emu.user_posts(world.channel, world.carol.id, original)
    event = await world.matrix_message(world.ghost_carol, tag)
    await world.on_irc(lambda t: original in t, "original on IRC")
    seq = await world.slack_message_seq(msg.ts)
    await world.record("delivery", "r.target_seq = ? AND r.network = 'matrix'", (seq,))
    if before is not None:
        await before()

    fixed = f"{tag} the spread is 21bp"
    world.emu.user_edits(world.channel, msg.ts, fixed)
    edit = await world.on_matrix(
        lambda e: (
            e["type"] == "m.room.message"
            and relation(e).get("rel_type") == "m.replace"
            and relation(e).get("event_id") == event["event_id"]
        ),
        "m.replace of Carol's message",
    )
    assert edit["sender"] == world.ghost_carol
    assert edit["content"]["m.new_content"]["body"] == fixed
    line = await world.on_irc(lambda t: "21bp" in t and tag in t, "correction line on IRC")
    assert line == f"* Carol White: {fixed}"
    edit_seq = await world.record("edit", "r.network = 'slack' AND r.target_seq = ?", (seq,))

    world.emu.user_deletes(world.channel, msg.ts)
    redaction = await world.on_matrix(
        lambda e: (
            e["type"] == "m.room.redaction"
            and (e.get("redacts") or e["content"].get("redacts")) == event["event_id"]
        ),
        "redaction of Carol's message",
    )
    assert redaction["sender"] in (world.ghost_carol, world.synapse.bot_mxid)
    delete_seq = await world.record("delete", "r.network = 'slack' AND r.target_seq = ?", (seq,))
    assert seq < edit_seq < delete_seq
    # The original stays in the archive as it was said.
    _, plain = world.content_of(seq)
    assert plain == original


async def test_slack_edit_and_delete_reach_matrix_and_irc(world: World) -> None:
    await _slack_edit_and_delete(world, unique("e"))


async def _matrix_edit(world: World, tag: str, before: Callable[[], Any] | None = None) -> None:
    draft, final = f"{tag} draft: buy 100", f"{tag} final: buy 150"
    event_id = await world.alice.send(world.room_id, draft)
    post = await world.on_slack(lambda p: tag in p.text, "Alice's draft")
    assert post.text == draft
    seq = await world.record("message", "r.network = 'matrix' AND r.native_id = ?", (event_id,))
    await world.record("delivery", "r.target_seq = ? AND r.network = 'slack'", (seq,))
    if before is not None:
        await before()
    await world.alice.send(
        world.room_id,
        f"* {final}",
        **{
            "m.new_content": {"msgtype": "m.text", "body": final},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        },
    )
    updated = await world.on_slack(
        lambda p: p.ts == post.ts and p.text == final, "chat.update of Alice's post"
    )
    assert updated.previous_texts == (draft,)
    assert len([p for p in world.emu.posted(world.channel) if tag in p.text]) == 1  # updated, not re-posted
    line = await world.on_irc(lambda t: "final: buy 150" in t and tag in t, "Alice's correction on IRC")
    assert line == f"* Alice Smith: {final}"
    await world.record("edit", "r.network = 'matrix' AND r.target_seq = ?", (seq,))


async def test_matrix_edit_updates_the_slack_message(world: World) -> None:
    await _matrix_edit(world, unique("me"))


async def test_edits_and_deletes_work_across_a_bridge_restart(world: World) -> None:
    await _slack_edit_and_delete(world, unique("re"), before=world.restart)
    await _matrix_edit(world, unique("rm"), before=world.restart)


async def _alice_says(world: World, text: str) -> tuple[str, Posted, int]:
    """Alice's message, once Slack and IRC have it: (event id, Slack post, record seq)."""
    event_id = await world.alice.send(world.room_id, text)
    post = await world.on_slack(lambda p: p.text == text, "Alice's message")
    await world.on_irc(lambda t: text in t, "Alice's line on IRC")
    seq = await world.record("message", "r.network = 'matrix' AND r.native_id = ?", (event_id,))
    await world.record("delivery", "r.target_seq = ? AND r.network = 'slack'", (seq,))
    return event_id, post, seq


def _replace(event_id: str, text: str) -> dict[str, Any]:
    return {
        "m.new_content": {"msgtype": "m.text", "body": text},
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }


async def test_a_forged_edit_or_redaction_of_alices_message_is_archived_and_relayed_nowhere(
    world: World,
) -> None:
    tag = unique("fg")
    said = f"{tag} the spread is 12bp"
    event_id, post, seq = await _alice_says(world, said)
    dave = world.dave_mx
    await dave.client.join(world.room_id)

    # Synapse takes Dave's m.replace of Alice's event: it does not check who edits.
    forged = f"{tag} the spread is 99bp"
    forged_id = await dave.send(world.room_id, f"* {forged}", **_replace(event_id, forged))
    block = await world.record("policy_block", "r.native_id = ? AND r.rule = 'not_author'", (forged_id,))
    # It refuses Dave's redaction of it, but pushes one it accepted over federation: as here.
    refused = await dave.client.room_redact(world.room_id, event_id)
    assert getattr(refused, "status_code", "") == "M_FORBIDDEN", refused
    redaction = {
        "type": "m.room.redaction",
        "event_id": f"$forged-{uuid.uuid4().hex}",
        "room_id": world.room_id,
        "sender": dave.user_id,
        "origin_server_ts": int(time.time() * 1000),
        "content": {"redacts": event_id},
    }
    assert await put_transaction(world.synapse, unique("t"), [redaction], world.synapse.hs_token) == 200
    await world.record("policy_block", "r.native_id = ? AND r.rule = 'not_author'", (redaction["event_id"],))

    # Alice's own edit comes after both and goes out: the forgeries would have gone before it.
    fixed = f"{tag} the spread is 12.5bp"
    await world.alice.send(world.room_id, f"* {fixed}", **_replace(event_id, fixed))
    updated = await world.on_slack(lambda p: p.ts == post.ts and p.text == fixed, "Alice's edit on Slack")
    assert updated.previous_texts == (said,)  # never Dave's words under Alice's name
    assert not world.emu.message(world.channel, post.ts).deleted
    await world.on_irc(lambda t: fixed in t, "Alice's correction on IRC")
    assert not [t for t in world.irc_texts() if "99bp" in t]
    assert not [p for p in world.emu.posted(world.channel) if "99bp" in p.text]

    attempts = [
        r
        for r in await asyncio.to_thread(world.bridge.search, "--kind", "policy_block")
        if r.get("target_seq") == seq
    ]
    assert [(r["event_kind"], r["rule"], r["employee_id"]) for r in attempts] == [
        ("edit", "not_author", "E1004"),
        ("delete", "not_author", "E1004"),
    ]
    assert attempts[0]["seq"] == block and attempts[0]["text"] == forged
    assert "Dave Brown may not edit a message sent by Alice Smith" in attempts[0]["reason"]
    await world.record(
        "edit", "r.network = 'matrix' AND r.target_seq = ? AND r.employee_id = 'E1001'", (seq,)
    )


async def test_a_room_moderators_redaction_is_relayed(world: World) -> None:
    tag = unique("md")
    dave = world.dave_mx
    await dave.client.join(world.room_id)
    event_id = await dave.send(world.room_id, f"{tag} off the record")
    post = await world.on_slack(lambda p: tag in p.text, "Dave's message")
    seq = await world.record("message", "r.network = 'matrix' AND r.native_id = ?", (event_id,))
    await world.record("delivery", "r.target_seq = ? AND r.network = 'slack'", (seq,))
    # Alice created the room: she outranks its redact level.
    redacted = await world.alice.client.room_redact(world.room_id, event_id)
    assert hasattr(redacted, "event_id"), redacted
    await world.emu.wait_for(
        lambda: world.emu.message(world.channel, post.ts).deleted, timeout=TIMEOUT, what="deleted on Slack"
    )
    await world.record("delete", "r.native_id = ? AND r.employee_id = 'E1001'", (redacted.event_id,))


# -- files ----------------------------------------------------------------------------


def _share_image(world: World, tag: str) -> tuple[str, bytes, str]:
    """Carol drops a 40 KB PNG into the channel; returns (name, bytes, message ts)."""
    data = png(116, 117, seed=len(tag) + int(tag[-6:], 16))
    assert 38_000 < len(data) < 44_000  # about 40 KB
    name = f"chart-{tag}.png"
    msg = world.emu.user_shares_file(world.channel, world.carol.id, name, data, "image/png")
    return name, data, msg.ts


async def _alice_shares_file(world: World, name: str, data: bytes, mimetype: str) -> None:
    """Alice uploads a file to the media repository and posts it in the room as m.file."""
    reply, _ = await world.alice.client.upload(
        io.BytesIO(data), content_type=mimetype, filename=name, filesize=len(data)
    )
    assert isinstance(reply, UploadResponse), reply
    await world.alice.send(
        world.room_id,
        name,
        msgtype="m.file",
        url=reply.content_uri,
        filename=name,
        info={"size": len(data), "mimetype": mimetype},
    )


async def _linked_file(world: World, line: str) -> tuple[str, bytes]:
    """The bridge's link in an IRC file line, and what it serves."""
    match = re.search(r"(http://\S+/media/\S+)", line)
    assert match, line
    async with aiohttp.ClientSession() as http, http.get(match.group(1)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Disposition"].startswith("attachment;")  # never rendered as a page
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        return match.group(1), await resp.read()


async def test_slack_image_is_linked_on_irc(world: World) -> None:
    name, data, _ = _share_image(world, unique("irc"))
    # IRC cannot carry files: a line names the file and links to the bridge's archived copy.
    line = await world.on_irc(lambda t: name in t, f"a line naming {name} on IRC")
    assert line.startswith("<Carol White> [file] "), line
    url, served = await _linked_file(world, line)
    assert served == data
    # The link is signed: change it and it opens nothing.
    seq, _, signature, _ = url.split("/media/")[1].split("/", 3)
    forged = url.replace(f"/{signature}/", f"/{signature[::-1]}/")
    async with aiohttp.ClientSession() as http, http.get(forged) as resp:
        assert resp.status == 403
    other_record = url.replace(f"/media/{seq}/", f"/media/{int(seq) + 1}/")
    async with aiohttp.ClientSession() as http, http.get(other_record) as resp:
        assert resp.status == 403


async def test_a_matrix_file_is_linked_on_irc(world: World) -> None:
    tag = unique("mf")
    data = b"desk notes for IRC " + bytes(range(256)) * 8
    name = f"notes-{tag}.txt"
    await _alice_shares_file(world, name, data, "text/plain")
    line = await world.on_irc(lambda t: f"[file] {name}" in t, f"{name} linked on IRC")
    assert line.startswith("<Alice Smith> ")
    _, served = await _linked_file(world, line)
    assert served == data


async def test_slack_image_is_viewable_in_matrix(world: World) -> None:
    name, data, ts = _share_image(world, unique("img"))
    # The archive knows the file: name, type, size and hash.
    seq = await world.slack_message_seq(ts)
    body, _ = world.content_of(seq)
    [attachment] = body["attachments"]
    assert (attachment["name"], attachment["mimetype"], attachment["size"]) == (name, "image/png", len(data))
    assert attachment["sha256"] == hashlib.sha256(data).hexdigest()
    image = await world.on_matrix(
        lambda e: (
            e["type"] == "m.room.message"
            and e["sender"] == world.ghost_carol
            and e["content"].get("msgtype") == "m.image"
            and e["content"].get("body") == name
        ),
        f"m.image {name} from Carol",
    )
    content = image["content"]
    assert content["url"].startswith("mxc://"), content
    server, _, media_id = content["url"].removeprefix("mxc://").partition("/")
    url = f"{world.synapse.url}/_matrix/client/v1/media/download/{server}/{media_id}"
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {world.alice.client.access_token}"}
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            got = await resp.read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert content["info"]["mimetype"] == "image/png" and content["info"]["size"] == len(data)


async def test_a_slack_file_is_exported_inline_from_the_live_archive(world: World, tmp_path: Path) -> None:
    """A reviewer exports while the bridge keeps relaying: the EML carries the file itself."""
    name, data, ts = _share_image(world, unique("eml"))
    seq = await world.slack_message_seq(ts)
    out = tmp_path / "export"
    exported = await asyncio.to_thread(
        switchboard,
        *("archive", "export", "-c", str(world.bridge.config_path), "--as", "E9001"),
        *("--format", "eml", "--out", str(out), "--employee", "E1003", "--kind", "message"),
    )
    assert exported.returncode == 0, exported.stderr
    message = email.message_from_bytes((out / "eml" / f"{seq:010d}.eml").read_bytes(), policy=policy.default)
    [part] = [p for p in message.iter_attachments() if p.get_filename() == name]
    assert part.get_content_type() == "image/png"
    assert hashlib.sha256(part.get_content()).hexdigest() == hashlib.sha256(data).hexdigest()
    public_key = str(world.bridge.workdir / "archive-signing.key.pub")  # what the reviewer was given
    verified = await asyncio.to_thread(
        switchboard, "archive", "verify", "--bundle", str(out), "--key", public_key
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # The bridge went on relaying during the export.
    tag = unique("after")
    await world.alice.send(world.room_id, f"{tag} after the export")
    await world.on_irc(lambda t: f"{tag} after the export" in t, "a message after the export")


async def test_matrix_file_arrives_on_slack(world: World) -> None:
    tag = unique("f")
    data = b"%PDF-1.4 desk notes " + bytes(range(256)) * 24
    name = f"notes-{tag}.pdf"
    await _alice_shares_file(world, name, data, "application/pdf")
    post = await world.on_slack(lambda p: any(f.name == name for f in p.files), f"{name} shared on Slack")
    [shared] = [f for f in post.files if f.name == name]
    assert hashlib.sha256(shared.data).hexdigest() == hashlib.sha256(data).hexdigest()
    assert shared.mimetype == "application/pdf"
    assert "Alice Smith" in post.text  # the share names who sent it


async def test_a_slack_message_too_big_for_one_matrix_event_still_arrives(world: World) -> None:
    tag = unique("big")
    text = f"{tag} " + '"é' * 19_000  # within Slack's 40,000 characters; over 64 KB as a Matrix event
    msg = world.emu.user_posts(world.channel, world.carol.id, text)
    event = await world.on_matrix(
        lambda e: e["sender"] == world.ghost_carol and e["content"].get("body", "").startswith(tag),
        "the long message on Matrix",
    )
    body = event["content"]["body"]
    assert body.endswith(" …") and text.startswith(body[:-2]) and len(body) > 10_000  # cut, and marked
    _, plain = world.content_of(await world.slack_message_seq(msg.ts))
    assert plain == text  # the archive keeps every character


# -- Slack's rate limits --------------------------------------------------------------


async def test_irc_burst_reaches_slack_in_order_despite_429s_while_another_channel_flows(
    world: World,
) -> None:
    """30 lines at once from IRC; Slack takes 1/s per channel, so this drains in ~30 s."""
    tag = unique("b")
    texts = [f"{tag} line {i:02d}" for i in range(30)]
    hits_before = world.emu.rate_limit_hits(world.channel)
    started = time.monotonic()
    for text in texts:
        await world.bob.privmsg(world.irc, text)

    def on_slack_trading() -> list[Posted]:
        return [p for p in world.emu.posted(world.channel) if tag in p.text]

    # Matrix is not held up by Slack's limit: all 30 are there while Slack is still draining.
    await world.alice.wait_for(
        world.room_id,
        lambda es: (
            sum(1 for e in es if e["sender"] == world.ghost_bob and tag in e["content"].get("body", "")) == 30
        ),
        TIMEOUT,
        "the burst on Matrix",
    )
    assert len(on_slack_trading()) < 30, "Slack was not rate-limited at all; the test proves nothing"

    # Another Slack channel keeps flowing meanwhile.
    other = f"{tag} meanwhile on the desk"
    await world.alice.send(world.room2_id, other)
    post = await world.on_slack(
        lambda p: other in p.text, "the desk message", channel=world.channel2, timeout=10
    )
    assert post.username == "Alice Smith (Matrix)"
    waiting = 30 - len(on_slack_trading())
    assert waiting > 0, "the desk message waited for the whole trading burst"

    posts = await world.emu.wait_for(
        lambda: found if len(found := on_slack_trading()) >= 30 else None,
        timeout=120,
        what="the whole burst on Slack",
    )
    elapsed = time.monotonic() - started
    print(f"burst of 30 drained to Slack in {elapsed:.1f}s; desk message overtook {waiting} of them")
    assert [p.text for p in posts] == texts  # all, once, in order
    assert {p.username for p in posts} == {"Bob Jones (IRC)"}
    assert world.emu.rate_limit_hits(world.channel) > hits_before  # 429s were served and honoured
    records = [r for r in world.messages(tag) if r["network"] == "irc"]
    assert [r["text"] for r in records] == texts


# -- connection loss ------------------------------------------------------------------


async def _stream_through_a_drop(world: World, abrupt: bool) -> None:
    tag = unique("ws")
    texts = [f"{tag} tick {i:02d}" for i in range(20)]
    opened = world.emu.connections_opened
    for i, text in enumerate(texts):
        if i == 7:
            assert world.emu.disconnect(abrupt=abrupt) >= 1
        if i == 14:
            await world.emu.wait_for(
                lambda: world.emu.connections_opened > opened and world.emu.connection_count >= 1,
                timeout=TIMEOUT,
                what="the bridge reconnects",
            )
        world.emu.user_posts(world.channel, world.carol.id, text)
        await asyncio.sleep(0.05)  # a stream, not a batch
    await world.on_irc(lambda t: texts[-1] in t, "last tick on IRC", timeout=40)
    await world.alice.wait_for(
        world.room_id,
        lambda es: any(texts[-1] == e["content"].get("body") for e in es),
        40,
        "last tick on Matrix",
    )
    # Let stragglers (redeliveries of envelopes whose ack was lost) arrive before counting.
    await world.emu.wait_for(lambda: not world.emu.unacked, timeout=TIMEOUT, what="every event acknowledged")
    marker = unique("after")
    world.emu.user_posts(world.channel, world.carol.id, marker)
    await world.on_irc(lambda t: marker in t, "marker on IRC")
    await world.matrix_message(world.ghost_carol, marker)
    # An event whose envelope went down with the socket is redelivered (after Slack's ack
    # timeout), so it may arrive after later ones: each once, not necessarily in order.
    events = await world.alice.events(world.room_id)
    on_matrix = [
        e["content"]["body"]
        for e in events
        if e["sender"] == world.ghost_carol and tag in e["content"].get("body", "")
    ]
    assert sorted(on_matrix) == texts
    assert sorted(t for t in world.irc_texts() if tag in t) == [f"<Carol White> {t}" for t in texts]
    records = world.messages(tag)
    assert sorted(r["text"] for r in records) == texts
    assert len({r["native_id"] for r in records}) == 20
    assert not world.emu.dropped


async def test_the_bridge_killed_mid_stream_from_slack_loses_and_doubles_nothing(world: World) -> None:
    """SIGKILL while Slack streams: what was not acked comes again and is archived and relayed once."""
    tag = unique("kill")
    texts = [f"{tag} tick {i:02d}" for i in range(12)]
    for i, text in enumerate(texts):
        if i == 6:
            await asyncio.to_thread(world.bridge.kill)  # some archived, some in flight, some not yet sent
        world.emu.user_posts(world.channel, world.carol.id, text)
        await asyncio.sleep(0.05)
    await world.restart()
    await world.alice.wait_for(
        world.room_id,
        lambda es: {e["content"].get("body") for e in es} >= set(texts),
        40,
        "every tick on Matrix",
    )
    await world.emu.wait_for(lambda: not world.emu.unacked, timeout=TIMEOUT, what="every event acknowledged")
    marker = unique("after")
    world.emu.user_posts(world.channel, world.carol.id, marker)
    await world.matrix_message(world.ghost_carol, marker)
    await world.on_irc(lambda t: marker in t, "marker on IRC")
    events = await world.alice.events(world.room_id)
    on_matrix = [
        e["content"]["body"]
        for e in events
        if e["sender"] == world.ghost_carol and tag in e["content"].get("body", "")
    ]
    assert sorted(on_matrix) == texts  # Matrix sends carry a txnId from the outbox row: never twice
    records = world.messages(tag)
    assert sorted(r["text"] for r in records) == texts and len({r["native_id"] for r in records}) == 12
    on_irc = [t for t in world.irc_texts() if tag in t]
    # IRC has no message ids: a line written in the instant before the kill may come again.
    assert set(on_irc) == {f"<Carol White> {t}" for t in texts} and len(on_irc) <= len(texts) + 1


async def test_websocket_dropped_mid_stream_loses_and_doubles_nothing(world: World) -> None:
    await _stream_through_a_drop(world, abrupt=True)


async def test_disconnect_request_mid_stream_loses_and_doubles_nothing(world: World) -> None:
    await _stream_through_a_drop(world, abrupt=False)


# -- mrkdwn and mentions: Slack → Matrix → Slack ------------------------------------------


def _everything(w: World) -> str:
    return (
        f"*bold* _it_ ~gone~ `x = 1` <https://example.com/a?b=1&amp;c=2|the docs> <@{w.carol.id}> "
        f"<@{w.dave.id}> <#{w.channel2}|{w.channel2_name}> <!here> <!channel> a &amp; b &lt;c&gt;"
    )


MRKDWN: dict[str, Callable[[World], str]] = {
    "bold": lambda w: "*bold words*",
    "italic": lambda w: "_leaning words_",
    "strike": lambda w: "~struck words~",
    "code": lambda w: "`x = 1`",
    "link-with-label": lambda w: "<https://example.com/docs?a=1&amp;b=2|the docs>",
    "bare-link": lambda w: "<https://example.com/plain>",
    "mention-slack-only-user": lambda w: f"ping <@{w.carol.id}>",
    "mention-user-also-on-matrix": lambda w: f"ping <@{w.dave.id}>",
    "channel-mention": lambda w: f"see <#{w.channel2}|{w.channel2_name}>",
    "escapes": lambda w: "a &amp; b &lt;tag&gt; c &gt; d",
    "pre": lambda w: "look:\n```def f():\n    return 1```",
    "here": lambda w: "<!here> heads up",
    "channel": lambda w: "<!channel> heads up",
    "everything": _everything,
}


@pytest.mark.parametrize("construct", list(MRKDWN))
async def test_mrkdwn_survives_slack_to_matrix_to_slack(world: World, construct: str) -> None:
    tag = unique("rt")
    wire = f"{tag} {MRKDWN[construct](world)}"
    world.emu.user_posts(world.channel, world.carol.id, wire)
    event = await world.matrix_message(world.ghost_carol, tag)
    # Alice sends back exactly what her client shows.
    content = {
        k: v
        for k, v in event["content"].items()
        if k in ("msgtype", "body", "format", "formatted_body", "m.mentions")
    }
    resp = await world.alice.client.room_send(world.room_id, "m.room.message", content)
    assert hasattr(resp, "event_id"), resp
    post = await world.on_slack(
        lambda p: p.username == "Alice Smith (Matrix)" and tag in p.text, f"{construct} back on Slack"
    )
    assert post.text == wire, f"Matrix content was {content}"


# -- Events API mode ------------------------------------------------------------------


async def test_events_api_refuses_bad_signatures_and_stale_requests(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second bridge receiving through the Events API (its own workspace, channel and relay)."""
    emu = await SlackEmulator(post_rate=None).start()
    erin = emu.add_user("erin", "erin.g")
    channel = emu.add_channel(unique("ops-"), [erin.id]).id
    irc, relay = f"#{unique('ops')}", unique("sbe")
    await world.bob.join(irc)
    port = free_port()
    url = f"http://127.0.0.1:{port}/slack/events"
    matrix = copy.deepcopy(world.synapse.matrix_options())
    matrix["appservice"]["listen"] = f"127.0.0.1:{free_port()}"  # not the main bridge's port
    config = {
        "matrix": matrix,
        "networks": {
            "slack": {
                "type": "slack",
                "bot_token": emu.bot_token,
                "api_url": emu.base_url,
                "receive": "events",
                "signing_secret": SIGNING_SECRET,
                "listen": f"127.0.0.1:{port}",
            },
            "irc": ngircd_network(world.ircd.port, relay),
        },
        "directory": {"type": "yaml", "path": "directory.yaml", "unmapped": "deny"},
        "archive": {"url": "sqlite:///archive.db"},
        "rooms": [{"id": "ops", "slack": channel, "irc": irc}],
    }
    people = {
        "people": [
            {"employee_id": "E1005", "name": "Erin Gray", "department": "Ops", "handles": {"slack": erin.id}}
        ]
    }
    bridge = BridgeProcess(tmp_path_factory.mktemp("events-api"), config, people)
    tag = unique("ev")

    def relayed(text: str) -> Callable[[Line], bool]:
        return lambda line: line.command == "PRIVMSG" and line.nick == relay and text in line.text

    def archived(text: str) -> int:
        with sqlite3.connect(bridge.workdir / "archive.db") as db:
            return db.execute("SELECT count(*) FROM contents WHERE plain LIKE ?", (f"%{text}%",)).fetchone()[
                0
            ]

    try:
        await asyncio.to_thread(bridge.start)
        await world.bob.wait_for(
            lambda line: line.command == "JOIN" and line.nick == relay, TIMEOUT, "events relay joins"
        )
        async with aiohttp.ClientSession() as http:
            # Slack's check of the Request URL is answered.
            verify = await post_signed_event(
                url, url_verification_body("chal-" + tag, emu.verification_token), SIGNING_SECRET
            )
            assert (verify.status, verify.body) == (200, "chal-" + tag)

            # A real, signed delivery goes through: archived and relayed.
            emu.use_events_api(url, SIGNING_SECRET)
            good = emu.user_posts(channel, erin.id, f"{tag} signed and fresh")
            await asyncio.to_thread(bridge.wait_record, "message", "r.native_id = ?", (good.ts,), TIMEOUT)
            await world.bob.wait_for(
                relayed(f"<Erin Gray> {tag} signed and fresh"), TIMEOUT, "signed event on IRC"
            )
            delivered = emu.pending_event(emu.events[-1]["event_id"])
            await emu.wait_for(
                lambda: delivered.state == "acked", timeout=TIMEOUT, what="the 200 reaches Slack"
            )
            assert [e.http_status for e in delivered.attempts] == [200]
            template = copy.deepcopy(emu.events[-1])

            def forged(text: str) -> dict[str, Any]:
                body = copy.deepcopy(template)
                ts = f"{time.time():.6f}"
                body["event_id"] = "Ev" + unique("").upper()
                body["event"].update({"text": text, "ts": ts, "event_ts": ts})
                body["event"].pop("blocks", None)
                body["event"].pop("client_msg_id", None)
                return body

            wrong_key = await post_signed_event(url, forged(f"{tag} forged"), "not-the-signing-secret")
            assert wrong_key.status == 401
            stale = await post_signed_event(
                url, forged(f"{tag} replayed"), SIGNING_SECRET, timestamp=int(time.time()) - 6 * 60
            )
            assert stale.status == 401
            raw = json.dumps(forged(f"{tag} unsigned")).encode()
            async with http.post(url, data=raw, headers={"Content-Type": "application/json"}) as unsigned:
                assert unsigned.status == 401
            # The same hand-made body, correctly signed, is accepted: the 401s were the signature's doing.
            control = await post_signed_event(url, forged(f"{tag} hand-made but signed"), SIGNING_SECRET)
            assert control.status == 200
        await world.bob.wait_for(
            relayed(f"{tag} hand-made but signed"), TIMEOUT, "signed hand-made event on IRC"
        )
        for refused in ("forged", "replayed", "unsigned"):
            assert archived(f"{tag} {refused}") == 0, refused
            assert not [ln for ln in world.bob.lines if f"{tag} {refused}" in ln.text], refused
        assert archived(f"{tag} signed and fresh") == 1 and archived(f"{tag} hand-made but signed") == 1
    finally:
        print(f"events-api bridge log {bridge.log_path}:\n{bridge.log_tail(60)}")
        await asyncio.to_thread(bridge.stop)
        await emu.stop()
