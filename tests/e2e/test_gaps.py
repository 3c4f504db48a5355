"""Capture gaps and backpressure through the `switchboard run` command, on real servers.

Real Synapse, real ngircd and the Slack emulator. When capture stops (the bridge is
SIGKILLed, the Slack socket drops, the IRC server restarts) the archive says so with a
`gap` record per network; what Slack can replay (`conversations.history`) is fetched
again, archived and relayed once, in order, flagged `caught_up`. While the archive is
locked, a flood of IRC lines is held in a bounded inbox and the socket is no longer read.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.codec import parse_timestamp
from bridge.sandbox.ircd import Ngircd
from connectors.matrix.config import DEFAULT_GHOST_PREFIX
from connectors.matrix.ghosts import Ghosts
from tests.e2e.harness import BridgeProcess, MatrixUser, emulator_network, ngircd_network, unique
from tests.fakes.slack import SlackEmulator, User
from tests.servers.ircclient import IrcClient
from tests.servers.synapse import SynapseSession

TIMEOUT = 30
INBOX = 20  # the IRC inbox bound of this bridge: small, so a flood overflows it at once


@dataclass
class World:
    bridge: BridgeProcess
    emu: SlackEmulator
    synapse: SynapseSession
    ircd: Ngircd
    alice: MatrixUser
    bob: IrcClient
    carol: User
    room_id: str
    channel: str  # Slack
    irc: str
    relay: str

    @property
    def archive(self) -> Path:
        return self.bridge.workdir / "archive.db"

    @property
    def ghost_carol(self) -> str:
        return Ghosts(DEFAULT_GHOST_PREFIX, self.synapse.server_name).mxid("slack", self.carol.id)

    def records(self, kind: str, where: str = "1", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with sqlite3.connect(self.archive) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT r.*, c.plain AS text FROM records r LEFT JOIN contents c ON c.seq = r.seq"
                f" WHERE r.kind = ? AND {where} ORDER BY r.seq",
                (kind, *args),
            ).fetchall()
        return [dict(row) for row in rows]

    def messages(self, tag: str) -> list[dict[str, Any]]:
        return self.records("message", "c.plain LIKE ?", (f"%{tag}%",))

    def gaps(self, network: str) -> list[dict[str, Any]]:
        return [{**g, **json.loads(g["attrs"])} for g in self.records("gap", "r.network = ?", (network,))]

    async def wait(self, ready: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := ready()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s\n{self.bridge.log_tail(60)}")
            await asyncio.sleep(0.1)
        return value

    async def on_matrix(self, texts: list[str], what: str) -> list[str]:
        """The bodies of Carol's ghost's messages that carry one of `texts`, once all are there."""
        events = await self.alice.wait_for(
            self.room_id,
            lambda es: {e["content"].get("body") for e in es} >= set(texts),
            TIMEOUT,
            what,
        )
        return [
            e["content"]["body"]
            for e in events
            if e["sender"] == self.ghost_carol and e["content"].get("body") in texts
        ]

    def on_irc(self, tag: str) -> list[str]:
        return [line.text for line in self.bob.privmsgs(self.irc, nick=self.relay) if tag in line.text]

    def relay_joins(self) -> int:
        return sum(
            1
            for line in self.bob.lines
            if line.command == "JOIN" and line.nick == self.relay and line.text.lower() == self.irc.lower()
        )

    async def start_bridge(self) -> None:
        joins = self.relay_joins()
        await asyncio.to_thread(self.bridge.start)
        await self.bob.wait_until(lambda: self.relay_joins() > joins, 60, "relay joins IRC")

    async def spoken(self, tag: str) -> None:
        """Carol says something that reaches Matrix: the archive then holds the channel's last ts."""
        text = f"{tag} before"
        self.emu.user_posts(self.channel, self.carol.id, text)
        await self.on_matrix([text], "Carol's first line")


@pytest.fixture(scope="module")
async def world(
    synapse: SynapseSession, ircd: Ngircd, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    emu = await SlackEmulator(ack_timeout=3.0, post_rate=None).start()
    alice = await MatrixUser(synapse, unique("alice")).login()
    alias = unique("sb-gaps-")
    room_id = await alice.create_room(alias)
    carol = emu.add_user("carol", "carol.w")
    channel = emu.add_channel(unique("gaps-"), [carol.id]).id
    irc = f"#{unique('gaps')}"
    bob = await IrcClient("127.0.0.1", ircd.port, unique("bob")).connect()
    await bob.join(irc)
    relay = unique("sb")
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
            "irc": ngircd_network(ircd.port, relay, flood_burst=1000, flood_rate=1000.0, inbox_size=INBOX),
        },
        "directory": {"type": "yaml", "path": "directory.yaml", "unmapped": "deny"},
        "archive": {"url": "sqlite:///archive.db"},
        "rooms": [{"id": "desk", "matrix": f"#{alias}:{synapse.server_name}", "slack": channel, "irc": irc}],
    }
    bridge = BridgeProcess(tmp_path_factory.mktemp("gaps"), config, directory)
    world = World(bridge, emu, synapse, ircd, alice, bob, carol, room_id, channel, irc, relay)
    try:
        await world.start_bridge()
        yield world
    finally:
        print(f"bridge log {bridge.log_path}:\n{bridge.log_tail(120)}")  # shown when a test failed
        await asyncio.to_thread(bridge.stop)
        await bob.close()
        await alice.close()
        await emu.stop()


def covers(gap: dict[str, Any], moment: datetime) -> bool:
    return parse_timestamp(gap["from"]) <= moment <= parse_timestamp(gap["until"])


async def test_bridge_killed_slack_said_meanwhile_is_caught_up_and_every_network_has_a_gap(
    world: World,
) -> None:
    tag = unique("down")
    await world.spoken(tag)
    texts = [f"{tag} said while the bridge was down {i}" for i in range(5)]
    await asyncio.to_thread(world.bridge.kill)
    await world.emu.wait_for(lambda: world.emu.connection_count == 0, timeout=TIMEOUT, what="socket gone")
    down = datetime.now(UTC)
    world.emu.drop_without_socket = True  # Slack gave up on these events: only history has them
    try:
        for text in texts:
            world.emu.user_posts(world.channel, world.carol.id, text)
        await world.start_bridge()
    finally:
        world.emu.drop_without_socket = False

    assert await world.on_matrix(texts, "what Carol said while the bridge was down") == texts
    await world.wait(lambda: len(world.on_irc(f"{tag} said")) >= len(texts), "caught up on IRC")
    assert world.on_irc(f"{tag} said") == [f"<Carol White> {t}" for t in texts]
    records = world.messages(f"{tag} said")
    assert [r["text"] for r in records] == texts  # archived once each, in the order said
    assert all("caught_up" in json.loads(r["flags"]) for r in records)
    for network in ("matrix", "slack", "irc"):
        gaps = [g for g in world.gaps(network) if covers(g, down)]
        assert len(gaps) == 1, (network, world.gaps(network))
        assert gaps[0]["reason"].startswith("bridge not running")
    # Carol's first line was live, not caught up: the flag says how a record was captured.
    assert json.loads(world.messages(f"{tag} before")[0]["flags"]) == []


async def test_a_clean_stop_records_an_exact_gap(world: World) -> None:
    before = {n: len(world.gaps(n)) for n in ("matrix", "slack", "irc")}
    await asyncio.to_thread(world.bridge.stop)
    stopped = datetime.now(UTC)
    await world.start_bridge()
    for network, count in before.items():
        gaps = world.gaps(network)
        assert len(gaps) == count + 1
        assert gaps[-1]["reason"] == "bridge stopped" and covers(gaps[-1], stopped)
    # What a reviewer sees: `archive search --kind gap`, with network, from, until and reason.
    found = await asyncio.to_thread(world.bridge.search, "--kind", "gap", "--network", "irc")
    last = found[-1]
    assert (last["kind"], last["network"], last["reason"]) == ("gap", "irc", "bridge stopped")
    assert parse_timestamp(last["from"]) <= stopped <= parse_timestamp(last["until"])


async def test_slack_socket_dropped_what_was_said_meanwhile_is_caught_up(world: World) -> None:
    tag = unique("ws")
    await world.spoken(tag)
    texts = [f"{tag} said while the socket was down {i}" for i in range(4)]
    slack_gaps = len(world.gaps("slack"))
    losses = world.bridge.log_text().count("Slack Socket Mode lost")
    opened = world.emu.connections_opened
    world.emu.refuse_connections = True
    world.emu.drop_without_socket = True
    try:
        assert world.emu.disconnect(abrupt=True) >= 1
        await world.emu.wait_for(lambda: world.emu.connection_count == 0, timeout=TIMEOUT, what="socket gone")
        await world.wait(
            lambda: world.bridge.log_text().count("Slack Socket Mode lost") > losses, "the bridge notices"
        )
        for text in texts:
            world.emu.user_posts(world.channel, world.carol.id, text)
        said = datetime.now(UTC)
    finally:
        world.emu.refuse_connections = False
        world.emu.drop_without_socket = False
    await world.emu.wait_for(lambda: world.emu.connections_opened > opened, timeout=60, what="reconnected")

    assert await world.on_matrix(texts, "what Carol said while the socket was down") == texts
    records = world.messages(f"{tag} said")
    assert [r["text"] for r in records] == texts
    assert all("caught_up" in json.loads(r["flags"]) for r in records)
    gaps = await world.wait(
        lambda: [g for g in world.gaps("slack")[slack_gaps:] if covers(g, said)], "a gap record for slack"
    )
    assert len(gaps) == 1 and "Slack Socket Mode lost" in gaps[0]["reason"]
    assert world.gaps("matrix")[-1]["until"] < gaps[0]["from"]  # only Slack was down


async def test_irc_server_restarted_leaves_a_gap_for_irc(world: World) -> None:
    irc_gaps, slack_gaps = len(world.gaps("irc")), len(world.gaps("slack"))
    await world.bob.close()
    restarted = datetime.now(UTC)
    await asyncio.to_thread(world.ircd.restart)
    world.bob = await IrcClient("127.0.0.1", world.ircd.port, world.bob.nick).connect()
    await world.bob.join(world.irc)
    gaps = await world.wait(lambda: world.gaps("irc")[irc_gaps:], "a gap record for irc", 60)
    assert len(gaps) == 1 and "IRC connection lost" in gaps[0]["reason"]
    assert parse_timestamp(gaps[0]["until"]) > restarted
    assert not [g for g in world.gaps("slack")[slack_gaps:] if covers(g, restarted)]  # Slack was up
    tag = unique("back")
    for attempt in range(30):  # until the relay is back in the channel to hear it
        await world.bob.privmsg(world.irc, f"{tag} after the restart {attempt}")
        if world.messages(tag):
            break
        await asyncio.sleep(1)
    assert world.messages(tag)
    assert len(world.gaps("irc")) == irc_gaps + 1


def unread_bytes(pid: int, port: int) -> int:
    """What the kernel holds unread on `pid`'s TCP connections to `port` (its receive queue)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if fields[9] in inodes and remote_port == port:
            total += int(fields[4].split(":")[1], 16)
    return total


async def test_irc_flood_while_the_archive_is_locked_is_held_bounded_then_archived(world: World) -> None:
    """With the archive locked the IRC inbox fills to its bound and the bridge stops reading: the
    lines wait in the kernel (and the server), not in the bridge's memory. Once the archive is back,
    every line the server delivered is archived once, in order, or the loss is on the record."""
    tag = unique("flood")
    count = 300
    irc_gaps = len(world.gaps("irc"))
    assert world.bridge.proc is not None
    pid = world.bridge.proc.pid
    lock = sqlite3.connect(world.archive, isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        for i in range(count):
            await world.bob.privmsg(world.irc, f"{tag} line {i:03d} " + "x" * 200)
        await world.wait(lambda: "IRC inbox full" in world.bridge.log_text(), "the inbox fills", 60)
        # The rest is in the socket's receive queue, unread: far more than the inbox holds.
        await world.wait(lambda: unread_bytes(pid, world.ircd.port) > 20_000, "unread bytes")
        # Held lines: the bound, plus what one read had already taken from the socket.
        assert world.bridge.log_text().count("IRC inbox full") == 1
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    texts = [f"{tag} line {i:03d} " + "x" * 200 for i in range(count)]

    def archived() -> list[str]:
        return [r["text"] for r in world.messages(tag)]

    def settled() -> bool:
        got = archived()
        return len(got) == count or bool(world.gaps("irc")[irc_gaps:])

    await world.wait(settled, "the flood is archived", 120)
    got = archived()
    assert got == texts[: len(got)]  # once each, in order
    if len(got) < count:  # the server cut us off for not reading: that is on the record
        assert world.gaps("irc")[irc_gaps:]


async def test_a_relay_cut_off_by_the_server_for_not_reading_leaves_a_gap_from_when_it_stopped(
    world: World,
) -> None:
    """Held long enough, the server gives up on a relay that does not read (ngircd: its write
    buffer for us is exhausted): what it sent meanwhile is lost on IRC's side. The gap on record
    starts when the bridge stopped reading, and every line it had read is archived once."""
    tag = unique("cut")
    irc_gaps = len(world.gaps("irc"))

    def relay_quit() -> bool:
        return any(line.command == "QUIT" and line.nick == world.relay for line in world.bob.lines)

    assert not relay_quit()
    line = f"{tag} " + "y" * 400
    began = datetime.now(UTC)
    lock = sqlite3.connect(world.archive, isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        sent = 0
        while not relay_quit() and sent < 100_000:
            for _ in range(500):
                await world.bob.privmsg(world.irc, f"{line} {sent:06d}")
                sent += 1
            await asyncio.sleep(0.05)
        assert relay_quit()  # the server dropped the relay that stopped reading
        cut = datetime.now(UTC)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    gaps = await world.wait(lambda: world.gaps("irc")[irc_gaps:], "a gap record for irc", 90)
    assert len(gaps) == 1 and "the bridge not reading" in gaps[0]["reason"]
    assert began <= parse_timestamp(gaps[0]["from"]) <= cut <= parse_timestamp(gaps[0]["until"])
    archived = await world.wait(lambda: world.messages(tag), "the lines read before the cut")
    texts = [r["text"] for r in archived]
    assert texts == [f"{line} {i:06d}" for i in range(len(texts))]  # a prefix: once each, in order
    assert len(texts) < sent  # the rest the server threw away, inside the recorded gap
