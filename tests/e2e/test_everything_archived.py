"""Everything a person sends is archived and relayed in the best form each network allows.

Real Synapse (Alice sends with matrix-nio), real ngircd (Bob watches with a raw socket),
the Slack emulator (Carol), and `switchboard run` on each archive engine. Reactions,
locations, unknown message types, stickers and polls: each is a record, reaches IRC as
lines and Slack as posts; a Slack reaction is an `m.reaction` on Matrix, and taking a
reaction back (a redaction on Matrix, `reaction_removed` on Slack) removes it where it
was relayed.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nio import MessageDirection, RoomRedactResponse, UploadResponse

from bridge.archive.verify import verify_archive
from bridge.sandbox.ircd import Ngircd
from connectors.matrix.config import DEFAULT_GHOST_PREFIX
from connectors.matrix.ghosts import Ghosts
from tests.e2e.harness import BridgeProcess, MatrixUser, emulator_network, ngircd_network, unique
from tests.fakes.slack import Posted, SlackEmulator, User
from tests.keys import UNSIGNED
from tests.servers.ircclient import IrcClient
from tests.servers.synapse import SynapseSession

TIMEOUT = 30
# A 1x1 PNG: the sticker's image.
STICKER = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


@dataclass
class World:
    bridge: BridgeProcess
    archive_url: str
    emu: SlackEmulator
    alice: MatrixUser
    bob: IrcClient
    carol: User
    room_id: str
    channel: str
    irc: str
    relay: str
    ghost_carol: str

    async def on_irc(self, match: Callable[[str], bool], what: str) -> str:
        line = await self.bob.wait_for(
            lambda line: line.command == "PRIVMSG" and line.nick == self.relay and match(line.text),
            TIMEOUT,
            what,
        )
        return line.text

    async def on_slack(self, match: Callable[[Posted], bool], what: str) -> Posted:
        def found() -> Posted | None:
            return next((p for p in self.emu.posted(self.channel) if match(p)), None)

        return await self.emu.wait_for(found, timeout=TIMEOUT, what=what)

    async def matrix_events(self, match: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The first room event (any type, as raw JSON) for which `match` holds."""
        assert self.alice.client
        for _ in range(TIMEOUT * 10):
            resp = await self.alice.client.room_messages(
                self.room_id, direction=MessageDirection.back, limit=100
            )
            found = [e.source for e in getattr(resp, "chunk", ()) if match(e.source)]
            if found:
                return found[0]
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what}: not seen on Matrix")

    async def record(self, where: str, *args: Any) -> dict[str, Any]:
        """The first archive record matching `where`, with its content parsed (any engine)."""
        query = sa.text(
            "SELECT r.*, c.body, c.plain FROM records r LEFT JOIN contents c ON c.seq = r.seq"
            f" WHERE {where} ORDER BY r.seq"
        )
        params = {f"a{n}": arg for n, arg in enumerate(args)}
        engine = sa.create_engine(self.archive_url)
        try:
            for _ in range(TIMEOUT * 10):
                with engine.connect() as conn:
                    row = conn.execute(query, params).mappings().first()
                if row is not None:
                    record = dict(row)
                    record["content"] = json.loads(record["body"]) if record["body"] else None
                    record["flags"] = json.loads(record["flags"])
                    record["attrs"] = json.loads(record["attrs"])
                    return record
                await asyncio.sleep(0.1)
        finally:
            engine.dispose()
        raise AssertionError(f"no record where {where} {args}")

    async def verified(self) -> None:
        """The log, reactions and native contents included, verifies."""
        engine = sa.create_engine(self.archive_url)
        try:
            report = await asyncio.to_thread(verify_archive, engine, UNSIGNED, workers=1)
        finally:
            engine.dispose()
        assert report.failures == [] and report.records > 0

    async def alice_sends(self, event_type: str, content: dict[str, Any]) -> str:
        assert self.alice.client
        resp = await self.alice.client.room_send(self.room_id, event_type, content)
        assert hasattr(resp, "event_id"), resp
        return resp.event_id


@pytest.fixture
async def world(synapse: SynapseSession, archive_url: str, tmp_path: Path) -> AsyncIterator[World]:
    with Ngircd() as ircd:
        emu = await SlackEmulator(ack_timeout=3.0).start()
        alice = await MatrixUser(synapse, unique("alice")).login()
        alias = unique("sb-all-")
        room_id = await alice.create_room(alias)
        carol = emu.add_user("carol", "carol.w")
        channel = emu.add_channel(unique("all-"), [carol.id]).id
        irc, relay = f"#{unique('all')}", unique("sb")
        bob = await IrcClient("127.0.0.1", ircd.port, unique("bob")).connect()
        await bob.join(irc)
        directory = {
            "people": [
                {"employee_id": "E1001", "name": "Alice Smith", "handles": {"matrix": alice.user_id}},
                {"employee_id": "E1002", "name": "Bob Jones", "handles": {"irc": bob.nick}},
                {"employee_id": "E1003", "name": "Carol White", "handles": {"slack": carol.id}},
            ]
        }
        config = {
            "matrix": synapse.matrix_options(),
            "networks": {
                "slack": emulator_network(emu),
                "irc": ngircd_network(ircd.port, relay, flood_burst=50),
            },
            "directory": {"type": "yaml", "path": "directory.yaml", "unmapped": "deny"},
            "archive": {"url": archive_url},
            "rooms": [
                {"id": "all", "matrix": f"#{alias}:{synapse.server_name}", "slack": channel, "irc": irc}
            ],
        }
        bridge = BridgeProcess(tmp_path / "bridge", config, directory)
        ghost_carol = Ghosts(DEFAULT_GHOST_PREFIX, synapse.server_name).mxid("slack", carol.id)
        world = World(bridge, archive_url, emu, alice, bob, carol, room_id, channel, irc, relay, ghost_carol)
        try:
            await asyncio.to_thread(bridge.start)
            await bob.wait_until(
                lambda: any(line.command == "JOIN" and line.nick == relay for line in bob.lines),
                TIMEOUT,
                "the relay joins",
            )
            yield world
        finally:
            print(f"bridge log:\n{bridge.log_tail(120)}")  # shown when the test failed
            await asyncio.to_thread(bridge.stop)
            await bob.close()
            await alice.close()
            await emu.stop()


async def test_reactions_travel_as_reactions_or_lines_and_their_removal_follows(world: World) -> None:
    tag = unique("r")
    # Carol's message, on Matrix as her ghost's event: what Alice reacts to.
    carol_msg = world.emu.user_posts(world.channel, world.carol.id, f"{tag} rates are up")
    carol_copy = await world.matrix_events(
        lambda e: e["sender"] == world.ghost_carol and tag in e["content"].get("body", ""), "Carol's copy"
    )
    reaction_id = await world.alice_sends(
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": carol_copy["event_id"], "key": "👍"}},
    )
    reaction = await world.record("r.kind = 'reaction' AND r.native_id = :a0", reaction_id)
    target = await world.record("r.kind = 'message' AND r.native_id = :a0", carol_msg.ts)
    assert reaction["target_seq"] == target["seq"]
    assert (reaction["network"], reaction["employee_id"]) == ("matrix", "E1001")
    assert reaction["content"] == {"text": {"plain": "👍", "spans": []}}
    assert "removed" not in reaction["attrs"]
    # IRC has no reactions; Slack's would be the bot's, not Alice's: both get her line.
    line = await world.on_irc(lambda t: "reacted" in t and tag in t, "Alice's reaction on IRC")
    assert line == f'* Alice Smith reacted 👍 to "{tag} rates are up"'
    post = await world.on_slack(lambda p: "reacted" in p.text and tag in p.text, "Alice's reaction on Slack")
    assert post.username == "Alice Smith (Matrix)"
    assert post.text == f'_Alice Smith reacted 👍 to "{tag} rates are up"_'

    # Alice takes it back: a redaction of the reaction, archived, and her Slack line goes.
    assert world.alice.client
    redacted = await world.alice.client.room_redact(world.room_id, reaction_id)
    assert isinstance(redacted, RoomRedactResponse), redacted
    removal = await world.record("r.kind = 'delete' AND r.native_id = :a0", redacted.event_id)
    assert removal["target_seq"] == reaction["seq"]
    await world.emu.wait_for(
        lambda: next((p for p in world.emu.posted(world.channel) if p.ts == post.ts and p.deleted), None),
        timeout=TIMEOUT,
        what="Alice's reaction line deleted on Slack",
    )

    # Carol reacts on Slack to Alice's message: an m.reaction by Carol's ghost on Alice's event.
    alice_event = await world.alice_sends(
        "m.room.message", {"msgtype": "m.text", "body": f"{tag} from Alice"}
    )
    alice_post = await world.on_slack(lambda p: f"{tag} from Alice" in p.text, "Alice's message on Slack")
    world.emu.user_reacts(world.channel, alice_post.ts, world.carol.id, "tada")
    on_matrix = await world.matrix_events(
        lambda e: e["type"] == "m.reaction" and e["sender"] == world.ghost_carol, "Carol's m.reaction"
    )
    assert on_matrix["content"]["m.relates_to"] == {
        "rel_type": "m.annotation",
        "event_id": alice_event,
        "key": "🎉",
    }
    line = await world.on_irc(lambda t: "reacted 🎉" in t, "Carol's reaction on IRC")
    assert line == f'* Carol White reacted 🎉 to "{tag} from Alice"'
    slack_reaction = await world.record("r.kind = 'reaction' AND r.network = 'slack'")
    assert slack_reaction["employee_id"] == "E1003" and slack_reaction["plain"] == "🎉"

    # Carol takes hers back: archived as a removal of that reaction, redacted on Matrix.
    world.emu.user_unreacts(world.channel, alice_post.ts, world.carol.id, "tada")
    taken_back = await world.record(
        "r.kind = 'reaction' AND r.network = 'slack' AND r.seq > :a0", slack_reaction["seq"]
    )
    assert (taken_back["plain"], taken_back["attrs"]["removed"]) == ("🎉", True)
    assert taken_back["attrs"]["removes"] == slack_reaction["native_id"]
    # A reviewer's search lists both, the removal saying so and naming what it took back.
    found = await asyncio.to_thread(world.bridge.search, "--kind", "reaction", "--network", "slack")
    assert [(r["text"], r["target_seq"], r.get("removed"), r.get("removes")) for r in found] == [
        ("🎉", slack_reaction["target_seq"], None, None),
        ("🎉", slack_reaction["target_seq"], True, slack_reaction["native_id"]),
    ]
    await world.matrix_events(
        lambda e: e["event_id"] == on_matrix["event_id"] and "redacted_because" in e.get("unsigned", {}),
        "Carol's m.reaction redacted",
    )
    await world.verified()


async def test_locations_unknown_types_stickers_and_polls_are_records_and_relayed(world: World) -> None:
    tag = unique("x")
    location = await world.alice_sends(
        "m.room.message", {"msgtype": "m.location", "body": f"{tag} Big Ben", "geo_uri": "geo:51.5008,0.1247"}
    )
    unknown = await world.alice_sends(
        "m.room.message", {"msgtype": "com.example.forecast", "body": f"{tag} rain at 3", "mm": 4}
    )
    assert world.alice.client
    upload, _ = await world.alice.client.upload(
        io.BytesIO(STICKER), content_type="image/png", filename="sticker.png", filesize=len(STICKER)
    )
    assert isinstance(upload, UploadResponse), upload
    sticker = await world.alice_sends(
        "m.sticker",
        {
            "body": f"{tag} waving cat",
            "url": upload.content_uri,
            "info": {"mimetype": "image/png", "size": len(STICKER)},
        },
    )
    poll = await world.alice_sends(
        "org.matrix.msc3381.poll.start",
        {
            "org.matrix.msc3381.poll.start": {
                "question": {"org.matrix.msc1767.text": f"{tag} lunch?"},
                "kind": "org.matrix.msc3381.poll.disclosed",
                "max_selections": 1,
                "answers": [
                    {"id": "p", "org.matrix.msc1767.text": "Pizza"},
                    {"id": "s", "org.matrix.msc1767.text": "Sushi"},
                ],
            },
            "org.matrix.msc1767.text": f"{tag} lunch?\n1. Pizza\n2. Sushi",
        },
    )
    reference = {"rel_type": "m.reference", "event_id": poll}
    vote = await world.alice_sends(
        "org.matrix.msc3381.poll.response",
        {"m.relates_to": reference, "org.matrix.msc3381.poll.response": {"answers": ["p"]}},
    )
    end = await world.alice_sends(
        "org.matrix.msc3381.poll.end",
        {
            "m.relates_to": reference,
            "org.matrix.msc3381.poll.end": {},
            "org.matrix.msc1767.text": f"{tag} Pizza won",
        },
    )

    # Each one is a record, its native content kept whole.
    located = await world.record("r.native_id = :a0", location)
    assert located["kind"] == "message"
    assert located["plain"] == f"{tag} Big Ben\ngeo:51.5008,0.1247"
    assert located["content"]["native"]["content"]["geo_uri"] == "geo:51.5008,0.1247"
    odd = await world.record("r.native_id = :a0", unknown)
    assert odd["plain"] == f"{tag} rain at 3" and "unknown_msgtype" in odd["flags"]
    assert odd["content"]["native"]["content"] == {
        "msgtype": "com.example.forecast",
        "body": f"{tag} rain at 3",
        "mm": 4,
    }
    stuck = await world.record("r.native_id = :a0", sticker)
    [attachment] = stuck["content"]["attachments"]
    assert (attachment["name"], attachment["size"], attachment.get("stored")) == (
        f"{tag} waving cat",
        len(STICKER),
        True,
    )
    assert stuck["content"]["native"]["type"] == "m.sticker"
    started = await world.record("r.native_id = :a0", poll)
    assert started["plain"] == f"📊 Poll: {tag} lunch?\n1. Pizza\n2. Sushi"
    voted = await world.record("r.native_id = :a0", vote)
    assert voted["plain"] == "🗳 voted: p" and "poll_response" in voted["flags"]
    assert voted["attrs"]["reply_seq"] == started["seq"]
    ended = await world.record("r.native_id = :a0", end)
    assert ended["plain"] == f"📊 Poll ended: {tag} Pizza won"

    # IRC: lines, one per line of text; the sticker as a file line; the vote nowhere.
    await world.on_irc(lambda t: t == f"<Alice Smith> {tag} Big Ben", "the location's name")
    await world.on_irc(lambda t: t == "<Alice Smith> geo:51.5008,0.1247", "the location's URI")
    await world.on_irc(lambda t: t == f"<Alice Smith> {tag} rain at 3", "the unknown type's body")
    await world.on_irc(lambda t: t.startswith(f"<Alice Smith> [file] {tag} waving cat"), "the sticker")
    await world.on_irc(lambda t: t == f"<Alice Smith> 📊 Poll: {tag} lunch?", "the poll")
    await world.on_irc(lambda t: t == "<Alice Smith> 2. Sushi", "the poll's last answer")
    await world.on_irc(lambda t: tag in t and "Pizza won" in t, "the poll's end")
    # Slack: posts under Alice's name, the sticker as an upload.
    await world.on_slack(lambda p: f"{tag} Big Ben" in p.text and "geo:51.5008,0.1247" in p.text, "location")
    await world.on_slack(lambda p: p.text == f"{tag} rain at 3", "the unknown type on Slack")
    shared = await world.on_slack(lambda p: any(f.data == STICKER for f in p.files), "the sticker on Slack")
    assert shared.files[0].name == f"{tag} waving cat"
    await world.on_slack(lambda p: p.text.startswith(f"📊 Poll: {tag} lunch?"), "the poll on Slack")
    await world.on_slack(lambda p: "Pizza won" in p.text, "the poll's end on Slack")
    relayed = [line.text for line in world.bob.privmsgs(world.irc, nick=world.relay)]
    assert not any("voted" in text for text in relayed)
    assert not any("voted" in p.text for p in world.emu.posted(world.channel))
    await world.verified()
