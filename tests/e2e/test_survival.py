"""What the bridge survives: a storm of SIGKILLs, its PostgreSQL restarted, its disk full.

One portal links a Matrix room (real Synapse), a Slack channel (the emulator) and an IRC
channel (real ngircd). Several people on each network send a mixed stream (text, replies,
edits, files, emotes) while the bridge process is killed, or the archive's database is
restarted, or the disk under the SQLite archive fills up. Every message carries a unique
marker at its end, so each copy of it can be counted exactly: in the archive, among the
ghosts' events in the Matrix room, among the bot's Slack posts and among the relay's IRC lines.

What can be promised differs by network. Synapse retries an appservice transaction until it
is answered 200, and Slack redelivers an envelope until it is acknowledged, so nothing said
there may be lost. IRC cannot redeliver: a line said while the bridge is dead is gone, so only
lines the bridge acknowledged (archived) are held to "relayed once". IRC also has no message
ids: a line written in the instant before a kill may be written again, at most once per kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nio import UploadResponse

from bridge.sandbox.ircd import Ngircd
from connectors.matrix.config import DEFAULT_GHOST_PREFIX
from tests.e2e.harness import (
    Archived,
    BridgeProcess,
    MatrixUser,
    archived,
    emulator_network,
    ngircd_network,
    put_transaction,
    seeded,
    switchboard,
    unique,
    verify_archive,
)
from tests.fakes.slack import SlackEmulator, User
from tests.servers import postgres
from tests.servers.ircclient import IrcClient
from tests.servers.synapse import SynapseSession

WORDS = [
    "desk",
    "rates",
    "curve",
    "hedge",
    "book",
    "spread",
    "basis",
    "swap",
    "yield",
    "bond",
    "note",
    "bill",
    "fund",
    "risk",
    "order",
    "fill",
]
FILLER_CHARS = 48  # more than a quoted reply repeats of its parent, so a quote never holds a marker


@dataclass
class Item:
    """One thing a person does in the stream."""

    marker: str
    network: str  # where it is said: matrix, slack, irc
    sender: int  # index of the person on that network
    kind: str  # text, reply, edit, file, emote
    target: str | None = None  # the marker of the message replied to or edited


@dataclass
class Said:
    """What the stream knows of an item once it was said."""

    native_id: str  # Matrix event id or Slack ts ("" on IRC)
    sender: int
    kind: str


@dataclass
class Portal:
    bridge: BridgeProcess
    emu: SlackEmulator
    synapse: SynapseSession
    matrix: list[MatrixUser]
    slack: list[User]
    irc: list[IrcClient]
    watch: IrcClient  # sees what the relay writes into the channel
    room_id: str
    channel: str  # Slack
    irc_channel: str
    relay: str
    run: str  # every marker of this portal starts with it

    @property
    def archive_url(self) -> str:
        return str(self.bridge.config["archive"]["url"])

    def is_ghost(self, mxid: str) -> bool:
        return mxid.startswith(f"@{DEFAULT_GHOST_PREFIX}")

    def relay_joins(self) -> int:
        return sum(
            1
            for line in self.watch.lines
            if line.command == "JOIN" and line.nick == self.relay and line.text.lower() == self.irc_channel
        )

    async def restart_bridge(self, kill: bool) -> None:
        """Kill (or stop) the bridge, start it again and wait for its relay to be back in the channel."""
        joins = self.relay_joins()
        await asyncio.to_thread(self.bridge.kill if kill else self.bridge.stop)
        await asyncio.to_thread(self.bridge.start)
        await self.watch.wait_until(lambda: self.relay_joins() > joins, 60, "the relay rejoins")


def text_of(rnd: random.Random, marker: str, prefix: str = "") -> str:
    words = prefix
    while len(words) < FILLER_CHARS:
        words += rnd.choice(WORDS) + " "
    return f"{words}{marker}"


def plan_stream(
    run: str, rnd: random.Random, shares: dict[str, tuple[int, int, int, int, int]]
) -> list[Item]:
    """A shuffled stream. `shares[network]` = (senders, texts, replies, edits, files); IRC's "files"
    are emotes. A reply or edit with nothing yet to refer to is said as a plain text."""
    pools: dict[str, list[Item]] = {}
    for network, (senders, texts, replies, edits, files) in shares.items():
        kinds = ["text"] * texts + ["reply"] * replies + ["edit"] * edits
        kinds += ["emote" if network == "irc" else "file"] * files
        rnd.shuffle(kinds)
        pools[network] = [
            Item(f"{run}{network[0]}{i:04d}", network, rnd.randrange(senders), kind)
            for i, kind in enumerate(kinds)
        ]
    items: list[Item] = []
    while any(pools.values()):
        items.append(pools[rnd.choice([n for n, pool in pools.items() if pool])].pop(0))
    return items


@dataclass
class Stream:
    """Says the planned items on their networks, paced, from several people at once."""

    portal: Portal
    items: list[Item]
    rnd: random.Random
    rate: float  # items per second, all networks together
    said: dict[str, Said] = field(default_factory=dict)
    sent: int = 0
    edits: dict[str, str] = field(default_factory=dict)  # edit marker -> marker of the edited message

    async def run(self) -> None:
        queues: list[asyncio.Queue[Item | None]] = [asyncio.Queue() for _ in self.portal.matrix]
        workers = [asyncio.create_task(self._matrix_worker(i, q)) for i, q in enumerate(queues)]
        try:
            started = time.monotonic()
            for n, item in enumerate(self.items):
                await asyncio.sleep(max(0.0, started + n / self.rate - time.monotonic()))
                if item.network == "matrix":
                    queues[item.sender].put_nowait(item)
                elif item.network == "slack":
                    await self._slack(item)
                    self.sent += 1
                else:
                    await self._irc(item)
                    self.sent += 1
            for q in queues:
                q.put_nowait(None)
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()

    def _target(self, item: Item, archived_ids: set[str] | None = None) -> Said | None:
        """An earlier message of this network (of the same person, for an edit) to refer to."""
        candidates = [
            (m, s)
            for m, s in self.said.items()
            if m[len(self.portal.run)] == item.network[0]
            and s.kind in ("text", "reply")  # a quote of a file name would carry its marker
            and (item.kind != "edit" or s.sender == item.sender)
            and (archived_ids is None or s.native_id in archived_ids)
        ]
        if not candidates:
            return None
        marker, said = self.rnd.choice(candidates[-30:])
        item.target = marker
        return said

    async def _matrix_worker(self, index: int, queue: asyncio.Queue[Item | None]) -> None:
        user = self.portal.matrix[index]
        room = self.portal.room_id
        while (item := await queue.get()) is not None:
            text = text_of(self.rnd, item.marker)
            target = self._target(item) if item.kind in ("reply", "edit") else None
            if item.kind == "file":
                data = f"notes {item.marker}\n".encode() * 40
                name = f"notes-{item.marker}.txt"
                reply, _ = await user.client.upload(
                    io.BytesIO(data), content_type="text/plain", filename=name, filesize=len(data)
                )
                assert isinstance(reply, UploadResponse), reply
                info = {"size": len(data), "mimetype": "text/plain"}
                event_id = await user.send(
                    room, name, msgtype="m.file", url=reply.content_uri, filename=name, info=info
                )
            elif item.kind == "edit" and target is not None:
                self.edits[item.marker] = item.target or ""
                new = {"msgtype": "m.text", "body": text}
                relates = {"rel_type": "m.replace", "event_id": target.native_id}
                event_id = await user.send(
                    room, f"* {text}", **{"m.new_content": new, "m.relates_to": relates}
                )
            elif item.kind == "reply" and target is not None:
                relates = {"m.in_reply_to": {"event_id": target.native_id}}
                event_id = await user.send(room, text, **{"m.relates_to": relates})
            else:
                event_id = await user.send(room, text)
            self.said[item.marker] = Said(
                event_id, index, item.kind if target or item.kind == "file" else "text"
            )
            self.sent += 1

    async def _slack(self, item: Item) -> None:
        emu, channel = self.portal.emu, self.portal.channel
        user = self.portal.slack[item.sender].id
        text = text_of(self.rnd, item.marker)
        if item.kind == "edit":
            # Slack may redeliver the original after its edit; an edit of something the bridge never
            # saw is another matter (issue 9 #17), so people here edit what was already archived.
            try:
                ids = {r.native_id for r in await asyncio.to_thread(archived, self.portal.archive_url)}
            except sa.exc.OperationalError:  # the archive's database is down: edit later
                ids = set()
            target = self._target(item, ids)
            if target is not None:
                self.edits[item.marker] = item.target or ""
                emu.user_edits(channel, target.native_id, text)
                self.said[item.marker] = Said(target.native_id, item.sender, "edit")
                return
        if item.kind == "reply":
            target = self._target(item)
            if target is not None:
                msg = emu.user_posts(channel, user, text, thread_ts=target.native_id)
                self.said[item.marker] = Said(msg.ts, item.sender, "reply")
                return
        if item.kind == "file":
            data = f"sheet {item.marker}\n".encode() * 40
            msg = emu.user_shares_file(channel, user, f"sheet-{item.marker}.txt", data, "text/plain")
        else:
            msg = emu.user_posts(channel, user, text)
        self.said[item.marker] = Said(msg.ts, item.sender, "file" if item.kind == "file" else "text")

    async def _irc(self, item: Item) -> None:
        client = self.portal.irc[item.sender]
        text = text_of(self.rnd, item.marker)
        if item.kind == "emote":
            await client.action(self.portal.irc_channel, text)
        else:
            await client.privmsg(self.portal.irc_channel, text)
        self.said[item.marker] = Said("", item.sender, item.kind)


@dataclass
class Tally:
    """How many times each marker is seen where it can be seen."""

    archive: dict[str, list[Archived]]
    matrix: Counter[str]  # ghost events carrying it
    slack: Counter[str]  # bot posts carrying it (text, earlier texts, file names)
    irc: Counter[str]  # relay lines carrying it

    def seen_on(self, network: str) -> Counter[str]:
        return {"matrix": self.matrix, "slack": self.slack, "irc": self.irc}[network]


async def tally(portal: Portal) -> Tally:
    marker = re.compile(rf"{portal.run}[msi]\d{{4}}")
    by_marker: dict[str, list[Archived]] = {}
    for record in await asyncio.to_thread(archived, portal.archive_url):
        if record.kind in ("message", "edit", "policy_block"):
            for m in set(marker.findall(record.body or record.text)):
                by_marker.setdefault(m, []).append(record)
    matrix: Counter[str] = Counter()
    for event in await portal.matrix[0].history(portal.room_id):
        if portal.is_ghost(event["sender"]):
            matrix.update(set(marker.findall(str(event["content"].get("body", "")))))
    slack: Counter[str] = Counter()
    for post in portal.emu.posted(portal.channel):
        seen = " ".join([post.text, *post.previous_texts, *(f.name for f in post.files)])
        slack.update(set(marker.findall(seen)))
    irc: Counter[str] = Counter()
    for line in portal.watch.privmsgs(portal.irc_channel, nick=portal.relay):
        irc.update(set(marker.findall(line.text)))
    return Tally(by_marker, matrix, slack, irc)


def must_arrive(stream: Stream, t: Tally) -> dict[str, list[str]]:
    """Per marker, the networks it must reach: all but its own; for IRC only what was archived."""
    out: dict[str, list[str]] = {}
    for item in stream.items:
        if item.marker not in stream.said:
            continue
        if item.network == "irc" and item.marker not in t.archive:
            continue  # said while the bridge could not hear it: IRC cannot say it again
        out[item.marker] = [n for n in ("matrix", "slack", "irc") if n != item.network]
    return out


def missing(stream: Stream, t: Tally) -> list[tuple[str, str]]:
    gaps = [(m, "archive") for m in must_arrive(stream, t) if m not in t.archive]
    for m, networks in must_arrive(stream, t).items():
        gaps += [(m, n) for n in networks if t.seen_on(n)[m] == 0]
    return gaps


async def drain(portal: Portal, stream: Stream, timeout: float) -> Tally:
    """Wait until everything that must arrive has, and Slack has nothing left to redeliver."""
    deadline = time.monotonic() + timeout
    while True:
        t = await tally(portal)
        gaps = missing(stream, t)
        if not gaps and not portal.emu.unacked:
            await asyncio.sleep(3)  # late doubles, if any, get the chance to show
            return await tally(portal)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(gaps)} not arrived after {timeout:.0f}s, e.g. {gaps[:12]}; "
                f"Slack unacked {len(portal.emu.unacked)}\n{portal.bridge.log_tail(60)}"
            )
        await asyncio.sleep(3)


@dataclass
class Verdict:
    said: dict[str, int]
    irc_heard: int
    lost: list[tuple[str, str]]
    doubled: dict[str, list[str]]
    irc_extra: int
    echoed: list[str]

    def summary(self) -> str:
        said = ", ".join(f"{n} {c}" for n, c in self.said.items())
        doubled = {n: len(v) for n, v in self.doubled.items()}
        return (
            f"said: {said}; IRC lines the bridge heard {self.irc_heard}; lost {len(self.lost)}; "
            f"doubled {doubled}; extra IRC lines {self.irc_extra}; echoed {len(self.echoed)}"
        )


def judge(stream: Stream, t: Tally) -> Verdict:
    arrive = must_arrive(stream, t)
    doubled: dict[str, list[str]] = {"archive": [m for m, rs in t.archive.items() if len(rs) > 1]}
    irc_extra = 0
    for network in ("matrix", "slack", "irc"):
        seen = t.seen_on(network)
        over = [m for m, networks in arrive.items() if network in networks and seen[m] > 1]
        if network == "irc":
            irc_extra = sum(seen[m] - 1 for m in over)
        else:
            doubled[network] = over
    echoed = [m for item in stream.items if t.seen_on(item.network)[m := item.marker]]
    said = Counter(item.network for item in stream.items if item.marker in stream.said)
    heard = sum(1 for m in arrive if m[len(stream.portal.run)] == "i")
    return Verdict(dict(said), heard, missing(stream, t), doubled, irc_extra, echoed)


# -- the portal ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def three_way(
    synapse: SynapseSession,
    ircd: Ngircd,
    workdir: Path,
    archive_url: str,
    people: tuple[int, int, int],
    **emulator: Any,
) -> AsyncIterator[Portal]:
    """A bridge on `archive_url` linking one Matrix room, Slack channel and IRC channel, with
    `people` = (on Matrix, on Slack, on IRC), all in the directory. Everything is stopped after."""
    emu = await SlackEmulator(post_rate=None, max_retries=1000, **emulator).start()
    run = "".join(random.choices("bcdfghjkpqrtvwxz", k=5))
    matrix: list[MatrixUser] = []
    irc: list[IrcClient] = []
    bridge: BridgeProcess | None = None
    try:
        for i in range(people[0]):
            matrix.append(await MatrixUser(synapse, unique(f"m{i}x")).login())
        alias = unique("sb-survive-")
        room_id = await matrix[0].create_room(alias)
        for user in matrix[1:]:
            joined = await user.client.join(room_id)
            assert getattr(joined, "room_id", None) == room_id, joined
        slack = [emu.add_user(f"s{i}{run}", f"s{i}.{run}") for i in range(people[1])]
        channel = emu.add_channel(unique("survive-"), [u.id for u in slack]).id
        irc_channel = f"#{unique('survive')}".lower()
        watch = await IrcClient("127.0.0.1", ircd.port, unique("watch")).connect()
        irc.append(watch)
        await watch.join(irc_channel)
        for i in range(people[2]):
            client = await IrcClient("127.0.0.1", ircd.port, unique(f"i{i}x")).connect()
            irc.append(client)
            await client.join(irc_channel)
        relay = unique("sb")
        directory = {"people": []}
        handles = [("matrix", u.user_id) for u in matrix] + [("slack", u.id) for u in slack]
        handles += [("irc", c.nick) for c in irc[1:]]
        for n, (network, handle) in enumerate(handles):
            directory["people"].append(
                {
                    "employee_id": f"E{2000 + n}",
                    "name": f"Person {n} {network.title()}",
                    "department": "Trading",
                    "handles": {network: handle},
                }
            )
        config = {
            "matrix": synapse.matrix_options(),
            "networks": {
                "slack": emulator_network(emu),
                "irc": ngircd_network(ircd.port, relay, flood_burst=100, flood_rate=100.0),
            },
            "directory": {"type": "yaml", "path": "directory.yaml", "unmapped": "deny"},
            "archive": {"url": archive_url, "signing_key": str(workdir / "archive-signing.key")},
            "rooms": [
                {
                    "id": "survive",
                    "matrix": f"#{alias}:{synapse.server_name}",
                    "slack": channel,
                    "irc": irc_channel,
                }
            ],
        }
        bridge = BridgeProcess(workdir, config, directory)
        bridge.write()
        keygen = switchboard("archive", "keygen", "-c", str(bridge.config_path))
        assert keygen.returncode == 0, keygen.stderr
        portal = Portal(
            bridge, emu, synapse, matrix, slack, irc[1:], watch, room_id, channel, irc_channel, relay, run
        )
        await asyncio.to_thread(bridge.start)
        await watch.wait_until(lambda: portal.relay_joins() > 0, 60, "the relay joins")
        yield portal
    finally:
        if bridge is not None:
            print(f"bridge log {bridge.log_path}:\n{bridge.log_tail(80)}")  # shown when a test failed
            await asyncio.to_thread(bridge.stop)
        for client in irc:
            await client.close()
        for user in matrix:
            await user.close()
        await emu.stop()


def assert_survived(stream: Stream, t: Tally, kills: int) -> Verdict:
    verdict = judge(stream, t)
    print(verdict.summary())
    assert verdict.lost == [], f"lost: {verdict.lost[:20]}"
    assert verdict.doubled == {"archive": [], "matrix": [], "slack": []}, verdict.doubled
    assert verdict.irc_extra <= kills, f"{verdict.irc_extra} IRC lines doubled over {kills} interruptions"
    assert verdict.echoed == [], f"relayed back to where it was said: {verdict.echoed[:20]}"
    assert not stream.portal.emu.dropped  # Slack gave up on nothing
    for marker, target in stream.edits.items():
        assert [r.kind for r in t.archive[marker]] == ["edit"], marker
        [original] = t.archive[target]
        assert t.archive[marker][0].target_seq == original.seq, (marker, target)
    return verdict


def assert_verifies(portal: Portal) -> None:
    result = verify_archive(portal.bridge.config_path, portal.bridge.workdir / "archive-signing.key.pub")
    assert result.returncode == 0, result.stdout + result.stderr


# -- the kill storm ------------------------------------------------------------------------

KILLS = 20
STORM = {  # network: (senders, texts, replies, edits, files or emotes)  = 1,000 in all
    "matrix": (4, 355, 20, 20, 5),
    "slack": (2, 310, 20, 15, 5),
    "irc": (2, 240, 0, 0, 10),
}


@pytest.mark.timeout(1200)
async def test_kill_storm_loses_and_doubles_nothing(
    synapse: SynapseSession, ircd: Ngircd, tmp_path: Path
) -> None:
    rnd = seeded("kill storm")
    async with three_way(
        synapse, ircd, tmp_path, f"sqlite:///{tmp_path / 'archive.db'}", (4, 2, 2)
    ) as portal:
        items = plan_stream(portal.run, rnd, STORM)
        assert len(items) == 1000
        stream = Stream(portal, items, rnd, rate=7.0)
        started = time.monotonic()
        sending = asyncio.create_task(stream.run())
        try:
            for k in range(KILLS):
                # Spread over the stream: the k-th kill once a (k+1)/(KILLS+1) share was sent.
                while stream.sent < (k + 1) * len(items) // (KILLS + 1) and not sending.done():
                    await asyncio.sleep(0.05)
                await asyncio.sleep(rnd.uniform(0, 0.5))
                await portal.restart_bridge(kill=True)
            await sending
        finally:
            sending.cancel()
        streamed = time.monotonic() - started
        t = await drain(portal, stream, timeout=600)
        verdict = assert_survived(stream, t, KILLS)
        assert verdict.irc_heard >= 60  # enough IRC lines were heard for the IRC promises to be tested
        assert len(stream.edits) >= 20  # edits were made, and checked against their originals above
        # The kills hit a flowing stream: Slack had to deliver late, or again, what each outage missed.
        late = sum(
            1 for p in portal.emu.delivery.pending.values() if any(a.retry_attempt for a in p.attempts)
        )
        print(f"Slack events delivered late or again because of the kills: {late}")
        assert late >= KILLS
        assert portal.bridge.starts == KILLS + 1
        assert_verifies(portal)
        print(
            f"kill storm: {KILLS} kills, {len(items)} items in {streamed:.0f}s, drained after "
            f"{time.monotonic() - started:.0f}s"
        )


# -- PostgreSQL restarted mid-stream ---------------------------------------------------------

OUTAGES = 3
STEADY = {  # a shorter stream for the database's failures: 300 in all
    "matrix": (2, 100, 5, 5, 2),
    "slack": (2, 90, 5, 5, 2),
    "irc": (2, 84, 0, 0, 2),
}


def probe_event(portal: Portal, body: str) -> dict[str, Any]:
    """A Matrix event pushed by hand, as Synapse pushes it: its answer shows whether it was taken."""
    return {
        "type": "m.room.message",
        "event_id": f"$probe-{unique('')}",
        "room_id": portal.room_id,
        "sender": portal.matrix[0].user_id,
        "origin_server_ts": int(time.time() * 1000),
        "content": {"msgtype": "m.text", "body": body},
    }


async def unacked_while(portal: Portal, since: float) -> list[str]:
    """Slack events raised after `since` that are not acknowledged (Slack will redeliver them)."""
    ids = [e["event_id"] for e in portal.emu.events if e["event_time"] >= since]
    return [i for i in ids if portal.emu.pending_event(i).state != "acked"]


@pytest.mark.timeout(900)
async def test_postgres_restarted_mid_stream_loses_and_doubles_nothing(
    synapse: SynapseSession, ircd: Ngircd, tmp_path: Path
) -> None:
    rnd = seeded("postgres restart")
    with postgres.private_cluster() as cluster:
        async with three_way(synapse, ircd, tmp_path, cluster.url, (2, 2, 2)) as portal:
            items = plan_stream(portal.run, rnd, STEADY)
            stream = Stream(portal, items, rnd, rate=7.0)
            sending = asyncio.create_task(stream.run())
            probes: list[tuple[str, dict[str, Any]]] = []
            try:
                for k in range(OUTAGES):
                    while stream.sent < (k + 1) * len(items) // (OUTAGES + 1) and not sending.done():
                        await asyncio.sleep(0.05)
                    await asyncio.to_thread(cluster.stop, "immediate")  # a crash, as the bridge sees it
                    down = time.time()
                    await asyncio.sleep(4)  # the stream goes on meanwhile
                    # Nothing is acknowledged that could not be committed: Synapse would retry this
                    # transaction, Slack redelivers what it sent meanwhile.
                    txn, event = unique("probe"), probe_event(portal, f"probe {k} {portal.run}")
                    status = await put_transaction(synapse, txn, [event], synapse.hs_token)
                    assert status >= 500, f"a transaction was answered {status} while the archive was down"
                    probes.append((txn, event))
                    waiting = [e["event_id"] for e in portal.emu.events if e["event_time"] >= down + 1]
                    assert waiting and await unacked_while(portal, down + 1) == waiting
                    await asyncio.to_thread(cluster.start)
                await sending
            finally:
                sending.cancel()
            for txn, event in probes:  # Synapse's retry, now that the archive is back
                assert await put_transaction(synapse, txn, [event], synapse.hs_token) == 200
            t = await drain(portal, stream, timeout=300)
            # The bridge never died: every IRC line it was sent was held and archived, none lost.
            irc_said = [i.marker for i in items if i.network == "irc"]
            assert [m for m in irc_said if m not in t.archive] == []
            assert_survived(stream, t, kills=OUTAGES)
            records = await asyncio.to_thread(archived, portal.archive_url)
            for _, event in probes:
                assert [r.kind for r in records if r.native_id == event["event_id"]] == ["message"]
            assert "the archive is unavailable" in portal.bridge.log_text()  # the outages were felt
            assert portal.bridge.starts == 1
            assert_verifies(portal)
            assert_in_order(stream, t)


# -- the disk under the SQLite archive full --------------------------------------------------


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` mounted on `path` (we are root in this sandbox); unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"cannot mount a tmpfs here: {done.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the filesystem has no byte left."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    assert shutil.disk_usage(disk).free < 4096
    return filler


@pytest.mark.timeout(900)
async def test_a_full_disk_holds_every_source_until_space_returns(
    synapse: SynapseSession, ircd: Ngircd, tmp_path: Path
) -> None:
    rnd = seeded("disk full")
    with small_disk(tmp_path / "disk", 24) as disk:
        url = f"sqlite:///{disk / 'archive.db'}"
        async with three_way(synapse, ircd, tmp_path, url, (2, 2, 2)) as portal:
            items = plan_stream(portal.run, rnd, STEADY)
            stream = Stream(portal, items, rnd, rate=7.0)
            sending = asyncio.create_task(stream.run())
            try:
                while stream.sent < len(items) // 4 and not sending.done():
                    await asyncio.sleep(0.05)
                filler = await asyncio.to_thread(fill, disk)
                full_since = time.time()
                log_mark = len(portal.bridge.log_text())
                deadline = time.monotonic() + 60
                while "the archive is unavailable" not in portal.bridge.log_text()[log_mark:]:
                    assert time.monotonic() < deadline, "the archive never felt the full disk"
                    assert not sending.done() or sending.result() is None
                    await asyncio.sleep(0.2)
                failed_at = time.time()
                await asyncio.sleep(6)  # the stream goes on meanwhile
                # While nothing can be written, nothing is acknowledged: Synapse's transactions are
                # answered 500 and retried, Slack's envelopes are not acked.
                txn, event = unique("probe"), probe_event(portal, f"probe {portal.run}")
                status = await put_transaction(synapse, txn, [event], synapse.hs_token)
                assert status >= 500, f"a transaction was answered {status} on a full disk"
                waiting = [e["event_id"] for e in portal.emu.events if e["event_time"] >= failed_at + 1]
                assert waiting and await unacked_while(portal, failed_at + 1) == waiting
                assert portal.bridge.proc is not None and portal.bridge.proc.poll() is None  # still up
                filler.unlink()  # space returns
                print(f"the disk was full for {time.time() - full_since:.0f}s")
                await sending
            finally:
                sending.cancel()
            assert await put_transaction(synapse, txn, [event], synapse.hs_token) == 200
            t = await drain(portal, stream, timeout=300)
            irc_said = [i.marker for i in items if i.network == "irc"]
            assert [m for m in irc_said if m not in t.archive] == []  # held, not dropped
            assert_survived(stream, t, kills=0)
            assert portal.bridge.starts == 1
            assert_verifies(portal)
            assert_in_order(stream, t)


def assert_in_order(stream: Stream, t: Tally) -> None:
    """Each person's messages are archived in the order they said them (and so relayed in it:
    each destination room's deliveries follow the archive's order)."""
    late = []
    for network in ("matrix", "slack", "irc"):
        for sender in range(3):
            said = [
                i.marker
                for i in stream.items
                if i.network == network and i.sender == sender and i.marker in stream.said
            ]
            seqs = [t.archive[m][0].seq for m in said]
            late += [
                (m, seq) for m, seq, before in zip(said[1:], seqs[1:], seqs, strict=False) if seq < before
            ]
    assert late == [], f"archived before what was said earlier by the same person: {late[:10]}"
