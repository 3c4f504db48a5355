"""Directory over a real OpenLDAP, and policy, through `switchboard run` on real servers.

IRC is the restricted network here: only `sales` and `trading` may be bridged
to it, it gets no files in this room, and card numbers never reach it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from nio import UploadResponse

from bridge.sandbox.ircd import Ngircd
from tests.e2e.harness import BridgeProcess, MatrixUser, ngircd_network, switchboard, unique
from tests.servers.ircclient import IrcClient
from tests.servers.slapd import Person, Slapd
from tests.servers.synapse import SynapseSession

TIMEOUT = 20
NOTICE = "This conversation is archived for compliance."


@dataclass
class World:
    bridge: BridgeProcess
    slapd: Slapd
    alice: MatrixUser  # sales: may reach IRC
    mallory: MatrixUser  # ops: may not
    bob: IrcClient  # sales
    carol: IrcClient  # trading, disabled during a test
    stranger: IrcClient  # in no directory
    room_id: str
    channel: str
    relay: str
    synapse: SynapseSession

    def ghost(self, nick: str) -> str:
        return f"@_sb_irc_{nick}:{self.synapse.server_name}"

    async def on_irc(self, text: str) -> None:
        await self.bob.wait_for(
            lambda line: line.command == "PRIVMSG" and line.nick == self.relay and text in line.text,
            TIMEOUT,
            f"IRC line with {text!r}",
        )

    def irc_texts(self) -> list[str]:
        return [line.text for line in self.bob.privmsgs(self.channel, nick=self.relay)]

    async def on_matrix(self, sender: str, text: str) -> dict[str, Any]:
        def match(e: dict[str, Any]) -> bool:
            return e["sender"] == sender and text in e["content"].get("body", "")

        events = await self.alice.wait_for(self.room_id, lambda es: any(map(match, es)), TIMEOUT, repr(text))
        return next(e for e in events if match(e))

    async def records(self, *args: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.bridge.search, *args)

    async def archived(self, text: str, kind: str) -> dict[str, Any]:
        """Wait for the record of `text`, then read it as `archive search` prints it."""
        seq = await asyncio.to_thread(self.bridge.wait_record, kind, "c.plain LIKE ?", (f"%{text}%",))
        [record] = [r for r in await self.records("--text", text, "--kind", kind) if r["seq"] == seq]
        return record


@pytest.fixture(scope="module")
async def world(synapse: SynapseSession, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    ircd = Ngircd()
    ircd.start()
    alice = await MatrixUser(synapse, unique("alice")).login()
    mallory = await MatrixUser(synapse, unique("mallory")).login()
    bob, carol, stranger = (
        IrcClient("127.0.0.1", ircd.port, unique(n)) for n in ("bob", "carol", "stranger")
    )
    people = [
        Person("alice", "E1001", "Alice Smith", "Sales", matrix=(alice.user_id,)),
        Person("mallory", "E1005", "Mallory Ops", "Operations", matrix=(mallory.user_id,)),
        Person("bob", "E1002", "Bob Jones", "Sales", irc=(bob.nick,)),
        Person("carol", "E1003", "Carol White", "Trading", irc=(carol.nick,)),
    ]
    groups = {"sales": ["alice", "bob"], "trading": ["carol"], "ops": ["mallory"]}
    slapd = Slapd(people=people, groups=groups)
    slapd.start()
    alias = unique("sb-policy-")
    room_id = await alice.create_room(alias)
    await mallory.client.join(room_id)
    channel, relay = f"#{unique('desk')}", unique("sb")
    for client in (bob, carol, stranger):
        await client.connect()
        await client.join(channel)
    config = {
        "matrix": synapse.matrix_options(),
        "networks": {"irc": ngircd_network(ircd.port, relay)},
        "directory": slapd.options(refresh_seconds=1, negative_cache_seconds=1, unmapped="deny"),
        "archive": {"url": "sqlite:///archive.db"},
        "policy": {
            "notice": NOTICE,
            "networks": {"irc": {"allow_groups": ["sales", "trading"]}},
            "rules": [
                {"name": "card-numbers", "detector": "card_number", "action": "block", "networks": ["irc"]},
                {"name": "promises", "keywords": ["guarantee", "risk-free"], "action": "flag"},
            ],
        },
        "rooms": [
            {
                "id": "desk",
                "matrix": f"#{alias}:{synapse.server_name}",
                "irc": channel,
                "policy": {"files": "block"},
            }
        ],
    }
    bridge = BridgeProcess(tmp_path_factory.mktemp("policy"), config, {"people": []})
    await asyncio.to_thread(bridge.start)
    world = World(bridge, slapd, alice, mallory, bob, carol, stranger, room_id, channel, relay, synapse)
    yield world
    print(bridge.log_tail(80))  # shown by pytest only when a test failed
    await asyncio.to_thread(bridge.stop)
    for client in (world.bob, world.carol, world.stranger):
        await client.close()
    await alice.close()
    await mallory.close()
    slapd.close()
    ircd.close()


async def test_recording_notice_is_posted_once_in_every_linked_room(world: World) -> None:
    await world.bob.wait_for(
        lambda line: line.command == "NOTICE" and line.target == world.channel and line.text == NOTICE,
        TIMEOUT,
        "notice on IRC",
    )
    bot = world.synapse.bot_mxid
    events = await world.alice.wait_for(
        world.room_id,
        lambda es: any(e["sender"] == bot and e["content"].get("body") == NOTICE for e in es),
        TIMEOUT,
        "notice on Matrix",
    )
    assert len([e for e in events if e["content"].get("body") == NOTICE]) == 1


async def test_names_on_both_sides_come_from_ldap(world: World) -> None:
    tag = unique("n")
    await world.alice.send(world.room_id, f"{tag} hello irc")
    await world.on_irc(f"<Alice Smith> {tag} hello irc")
    await world.bob.privmsg(world.channel, f"{tag} hello matrix")
    await world.on_matrix(world.ghost(world.bob.nick), f"{tag} hello matrix")
    assert await world.alice.display_name(world.ghost(world.bob.nick)) == "Bob Jones (IRC)"
    [record] = await world.records("--text", f"{tag} hello matrix")
    assert (record["employee_id"], record["name"], record["department"]) == ("E1002", "Bob Jones", "Sales")


async def test_group_member_is_bridged_and_non_member_refused_with_a_notice(world: World) -> None:
    tag = unique("g")
    await world.mallory.send(world.room_id, f"{tag} from ops")
    await world.alice.send(world.room_id, f"{tag} from sales")
    await world.on_irc(f"{tag} from sales")
    bot = world.synapse.bot_mxid
    notice = await world.on_matrix(bot, "not relayed")
    assert world.mallory.user_id in notice["content"]["body"]
    assert not [t for t in world.irc_texts() if f"{tag} from ops" in t]
    refused = await world.archived(f"{tag} from ops", "policy_block")
    assert refused["rule"] == "groups:irc" and refused["employee_id"] == "E1005"
    allowed = await world.archived(f"{tag} from sales", "message")
    assert allowed["employee_id"] == "E1001"


async def _send_file(world: World, data: bytes, body: str, **extra: str) -> None:
    """Alice uploads a PDF and posts it as m.file with `body` (a caption when `filename` differs)."""
    reply, _ = await world.alice.client.upload(
        io.BytesIO(data), content_type="application/pdf", filename="q3.pdf", filesize=len(data)
    )
    assert isinstance(reply, UploadResponse), reply
    info = {"size": len(data), "mimetype": "application/pdf"}
    await world.alice.send(world.room_id, body, msgtype="m.file", url=reply.content_uri, info=info, **extra)


async def test_file_in_a_files_blocked_room_is_not_relayed_but_its_hash_is_archived(world: World) -> None:
    data = b"%PDF-1.4 quarterly numbers " + bytes(range(256)) * 8
    tag = unique("f")
    await _send_file(world, data, f"q3-{tag}.pdf")
    # A bare file has no text to search by: find its record by the rule that refused it.
    seq = await asyncio.to_thread(world.bridge.wait_record, "policy_block", "r.rule LIKE 'files:%'")
    [record] = [r for r in await world.records("--kind", "policy_block") if r["seq"] == seq]
    assert record["sender"] == world.alice.user_id and "files may not be bridged" in record["reason"]
    [attachment] = record["attachments"]  # as `archive search --format json` lists it
    assert (attachment["name"], attachment["content_type"], attachment["size"]) == (
        f"q3-{tag}.pdf",
        "application/pdf",
        len(data),
    )
    assert attachment["sha256"] == hashlib.sha256(data).hexdigest()
    await world.alice.send(world.room_id, f"{tag} after the file")
    await world.on_irc(f"{tag} after the file")
    assert not [t for t in world.irc_texts() if f"q3-{tag}" in t]


async def test_a_captioned_file_reaches_irc_as_its_words_and_the_record_says_the_file_did_not(
    world: World,
) -> None:
    tag = unique("w")
    await _send_file(world, b"%PDF-1.4 forecast", f"{tag} the forecast", filename=f"forecast-{tag}.pdf")
    await world.on_irc(f"<Alice Smith> {tag} the forecast")
    notice = await world.on_matrix(world.synapse.bot_mxid, "files were not relayed to irc")
    assert world.alice.user_id in notice["content"]["body"]
    record = await world.archived(f"{tag} the forecast", "message")
    # The room blocks files on every network, Matrix too: they may not leave it.
    assert record["files_withheld"] == {"irc": "files:matrix"} and record["rule"] == "files:matrix"
    assert record["reason"] == "files withheld from irc: files may not be bridged from matrix here"
    assert not [t for t in world.irc_texts() if f"forecast-{tag}" in t]


async def test_a_card_number_in_a_link_target_is_blocked(world: World) -> None:
    tag = unique("l")
    href = "https://pay.test/checkout?card=4111%201111%201111%201111"
    await world.alice.send(world.room_id, f"{tag} pay here", html=f'{tag} <a href="{href}">pay here</a>')
    await world.alice.send(world.room_id, f"{tag} marker")
    await world.on_irc(f"{tag} marker")
    assert not [t for t in world.irc_texts() if f"{tag} pay here" in t]
    blocked = await world.archived(f"{tag} pay here", "policy_block")
    assert blocked["rule"] == "card-numbers" and blocked["employee_id"] == "E1001"


async def test_card_number_is_blocked_and_a_promise_is_flagged(world: World) -> None:
    tag = unique("d")
    await world.alice.send(world.room_id, f"{tag} card 4111 1111 1111 1111 exp 12/29")
    await world.alice.send(world.room_id, f"{tag} we guarantee the returns")
    await world.on_irc(f"{tag} we guarantee the returns")
    assert not [t for t in world.irc_texts() if "4111" in t]
    blocked = await world.archived(f"{tag} card", "policy_block")
    assert blocked["rule"] == "card-numbers"
    flagged = await world.records("--flag", "promises", "--text", tag)
    assert [r["text"] for r in flagged] == [f"{tag} we guarantee the returns"]
    assert flagged[0]["kind"] == "message" and flagged[0]["flags"] == ["promises"]


async def test_unmapped_irc_nick_is_refused_and_told(world: World) -> None:
    tag = unique("u")
    await world.stranger.privmsg(world.channel, f"{tag} who am i")
    await world.stranger.wait_for(
        lambda line: line.command == "NOTICE" and line.nick == world.relay and "not relayed" in line.text,
        TIMEOUT,
        "refusal notice",
    )
    refused = await world.archived(f"{tag} who am i", "policy_block")
    assert refused["rule"] == "unmapped" and refused["sender"] == world.stranger.nick
    await world.bob.privmsg(world.channel, f"{tag} marker")
    await world.on_matrix(world.ghost(world.bob.nick), f"{tag} marker")
    events = await world.alice.events(world.room_id)
    assert not [e for e in events if f"{tag} who am i" in e["content"].get("body", "")]


async def test_person_disabled_in_ldap_is_refused_after_the_refresh(world: World) -> None:
    tag = unique("x")
    await world.carol.privmsg(world.channel, f"{tag} still employed")
    await world.on_matrix(world.ghost(world.carol.nick), f"{tag} still employed")
    await asyncio.to_thread(world.slapd.disable, "carol")
    await asyncio.sleep(2.5)  # two refresh intervals
    await world.carol.privmsg(world.channel, f"{tag} after leaving")
    refused = await world.archived(f"{tag} after leaving", "policy_block")
    assert refused["rule"] == "disabled" and refused["employee_id"] == "E1003"


async def test_ldap_outage_keeps_known_people_relayed_and_recovers(world: World) -> None:
    tag = unique("o")
    await asyncio.to_thread(world.slapd.stop)
    await asyncio.sleep(1.5)  # the bridge notices at its next refresh
    await world.bob.privmsg(world.channel, f"{tag} during the outage")
    await world.on_matrix(world.ghost(world.bob.nick), f"{tag} during the outage")
    await asyncio.to_thread(world.slapd.start)
    await asyncio.to_thread(world.slapd.enable, "carol")
    await asyncio.sleep(2.5)
    await world.carol.privmsg(world.channel, f"{tag} rehired")
    await world.on_matrix(world.ghost(world.carol.nick), f"{tag} rehired")
    assert "LDAP" in world.bridge.log_text() or "directory" in world.bridge.log_text()
    assert world.bridge.proc is not None and world.bridge.proc.poll() is None


async def test_unmapped_relay_mode_relays_with_a_flag(world: World) -> None:
    # Another deployment's choice: unknown senders relayed (flagged), IRC open to every group.
    world.bridge.config["directory"]["unmapped"] = "relay"
    world.bridge.config["policy"]["networks"] = {}
    await asyncio.to_thread(world.bridge.stop)
    await asyncio.to_thread(world.bridge.start)
    tag = unique("r")
    await world.stranger.privmsg(world.channel, f"{tag} let me in")
    await world.on_matrix(world.ghost(world.stranger.nick), f"{tag} let me in")
    [record] = await world.records("--flag", "unmapped", "--text", tag)
    assert record["employee_id"] is None and record["sender"] == world.stranger.nick


async def test_directory_commands_read_ldap_as_the_bridge_does(world: World) -> None:
    config = str(world.bridge.config_path)
    found = await asyncio.to_thread(
        switchboard, "directory", "lookup", "irc", world.bob.nick.upper(), "-c", config
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("E1002  Bob Jones  Sales  (sales; enabled)")
    missing = await asyncio.to_thread(
        switchboard, "directory", "lookup", "irc", "nobody-at-all", "-c", config
    )
    assert missing.returncode == 1 and "not in the directory" in missing.stdout
    checked = await asyncio.to_thread(switchboard, "directory", "check", "-c", config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[0].endswith("3 groups") and "4 people" in checked.stdout
