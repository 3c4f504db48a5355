"""10,000 generated hostile inbound events per network through a running `switchboard run`.

Matrix events are pushed as appservice transactions straight to the bridge's port with the
hs_token (exactly what Synapse would push, only faster); Slack events go through the
emulator's Socket Mode; IRC lines are written raw by a real client through ngircd. The
bridge must stay up, account for every event (archived, or refused with a reason in its
log), never make a source send an event again and again, and still relay a normal message
afterwards on each network.

Each network's events go to a portal whose other side is fast (the Slack emulator without
its rate limit, or IRC), so the run is not paced by Synapse. The generator is seeded
(`SWITCHBOARD_SEED` repeats a run; the seed is printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bridge.sandbox.ircd import Ngircd
from tests.e2e.harness import (
    Archived,
    BridgeProcess,
    MatrixUser,
    archived,
    ngircd_network,
    put_transaction,
    seeded,
    switchboard,
    unique,
    verify_archive,
)
from tests.fakes.slack import SlackEmulator, User
from tests.fakes.slack.delivery import PendingEvent
from tests.servers.ircclient import IrcClient
from tests.servers.synapse import SynapseSession

EVENTS = 10_000
BATCH = 200  # events per appservice transaction, Slack events or IRC lines between waits
SETTLE = 600  # seconds the bridge may take to work through one network's events


# -- what hostile people type -----------------------------------------------------------------

ODD = [
    "\u202e",  # right-to-left override
    "\u200b",  # zero-width space
    "\ufeff",
    "\u0000",
    "\u0007",
    "\x1b[31m",  # a terminal escape
    "\r\n",
    "\r",
    "\n",
    "\t",
    "\x01",
    "\x10",
    "\ud800",  # lone surrogates: JSON may carry them, UTF-8 cannot
    "\udfff",
    "\U0001f600",
    "é",
    "\u0301",
    "𝕏",
    "&amp;",
    "&lt;",
    "<",
    ">",
    "&",
    '"',
    "'",
    "\\",
    "%s",
    "{name}",
    "${HOME}",
    "@room",
    "@channel",
    "<!channel>",
    "<!everyone>",
    "<!here>",
    "<!subteam^S0123|@traders>",
    "<@U0000001>",
    "<#C0000001|general>",
    "<javascript:alert(1)|click>",
    "*",
    "_",
    "~",
    "`",
    "```",
    ">",
]


def hostile_text(rnd: random.Random, longest: int = 400) -> str:
    parts = []
    while sum(map(len, parts)) < rnd.randint(1, longest):
        parts.append(rnd.choice(ODD) if rnd.random() < 0.5 else rnd.choice(["word", "a b", "x" * 7, " "]))
    return "".join(parts)


HTML_BITS = [
    "<b>",
    "</b>",
    "<i>",
    "<a href='https://example.com/?a=1&b=2'>",
    '<a href="javascript:alert(1)">',
    "<a href='https://matrix.to/#/@_sb_slack_=21channel:corp.test'>",
    "<a href='https://matrix.to/#/@_sb_slack_=21everyone:corp.test'>",
    "<a href='https://matrix.to/#/@room'>",
    "</a>",
    "<code>",
    "</code>",
    "<pre><code class='language-x'>",
    "</pre>",
    "<blockquote>",
    "<mx-reply>",
    "</mx-reply>",
    "<img src='mxc://corp.test/x'>",
    "<script>",
    "</script>",
    "<style>",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<![",
    "<!DOCTYPE x>",
    "<?php",
    "<a ",
    "<",
    ">",
    "&amp;",
    "&#0;",
    "&#xD800;",
    "&#x110000;",
    "&bogus;",
    "<br>",
    "<br/>",
    "<ol start='-5'><li>",
    "<font color='#ff0000' data-mx-color='red'>",
    "<span data-mx-spoiler>",
    "<table><tr><td>",
    "<h1>",
    "<del>",
]


def hostile_html(rnd: random.Random) -> str:
    return "".join(
        rnd.choice(HTML_BITS) if rnd.random() < 0.6 else hostile_text(rnd, 20)
        for _ in range(rnd.randint(1, 40))
    )


# -- Matrix -----------------------------------------------------------------------------------

MSGTYPES = ["m.text", "m.notice", "m.emote", "m.location", "m.image", "m.file", "m.audio", "org.example.x", 7]


def matrix_content(rnd: random.Random, case: str, earlier: list[str]) -> Any:
    """The `content` of one hostile m.room.message, of the given `case`."""
    if case == "pill:cdata":
        return {
            "msgtype": "m.text",
            "body": "a <![ b",
            "format": "org.matrix.custom.html",
            "formatted_body": "a <![ b",
        }
    if case == "pill:a-bomb":
        return {
            "msgtype": "m.text",
            "body": "a",
            "format": "org.matrix.custom.html",
            "formatted_body": "<a " * 20000,
        }
    if case == "pill:surrogate":
        return {
            "msgtype": "m.text",
            "body": "x \ud800 y",
            "format": "org.matrix.custom.html",
            "formatted_body": "<b>\udfff</b>",
        }
    if case == "pill:forged-room":
        link = "<a href='https://matrix.to/#/@_sb_slack_=21channel:corp.test'>@channel</a> heads up"
        return {
            "msgtype": "m.text",
            "body": "@channel heads up",
            "format": "org.matrix.custom.html",
            "formatted_body": link,
        }
    if case == "shape":
        return rnd.choice([None, [], "text", 5, {}, {"body": None}, {"body": ["x"]}, {"msgtype": "m.text"},
                           {"msgtype": None, "body": "x"}, {"body": {"nested": "x"}}, {"body": 1e308}])  # fmt: skip
    content: dict[str, Any] = {"msgtype": rnd.choice(MSGTYPES) if case == "msgtype" else "m.text"}
    content["body"] = hostile_text(rnd, 60_000 if rnd.random() < 0.01 else 400)
    if case == "html" or rnd.random() < 0.2:
        content |= {
            "format": rnd.choice(["org.matrix.custom.html", "text/x-unknown"]),
            "formatted_body": hostile_html(rnd),
        }
    if content["msgtype"] in ("m.image", "m.file", "m.audio"):
        content["url"] = rnd.choice(["mxc://corp.test/doesnotexist", "mxc://", "https://127.0.0.1:9/x", 5])
        content["info"] = rnd.choice([{"size": -1}, {"size": 10**12, "mimetype": "text/html"}, "x", {}])
    if content["msgtype"] == "m.location":
        content["geo_uri"] = rnd.choice(["geo:51.5,-0.1", "javascript:alert(1)", 5])
    if case == "relation" and earlier:
        target = rnd.choice([rnd.choice(earlier), "$unknown", "", None, 5])
        content["m.relates_to"] = rnd.choice(
            [
                {"rel_type": "m.replace", "event_id": target},
                {"m.in_reply_to": {"event_id": target}},
                {"m.in_reply_to": target},
                {"rel_type": "m.thread", "event_id": target, "is_falling_back": "yes"},
                {"rel_type": "m.annotation", "event_id": target, "key": hostile_text(rnd, 10)},
                "garbage",
            ]
        )
        if rnd.random() < 0.5:
            content["m.new_content"] = rnd.choice(
                [{"msgtype": "m.text", "body": hostile_text(rnd)}, None, "x", {}]
            )
    if case == "mentions":
        content["m.mentions"] = rnd.choice(
            [
                {"room": True},
                {"room": "yes"},
                {"user_ids": ["@_sb_slack_=21channel:corp.test"]},
                {"user_ids": 5},
                [],
            ]
        )
    return content


MATRIX_CASES = ["plain"] * 40 + ["html"] * 25 + ["msgtype"] * 10 + ["relation"] * 10 + ["mentions"] * 5
MATRIX_CASES += ["shape"] * 5 + ["unmapped"] * 5
PILLS = ["pill:cdata", "pill:a-bomb", "pill:surrogate", "pill:forged-room"]


# -- Slack ------------------------------------------------------------------------------------


def slack_event(
    rnd: random.Random, n: int, channel: str, users: list[str], earlier: list[str]
) -> tuple[str, dict[str, Any]]:
    """(case, event) for one hostile Slack message event; its ts is unique."""
    ts = f"{1_790_000_000 + n}.{rnd.randrange(10**6):06d}"
    case = rnd.choice(
        ["plain"] * 60
        + ["mrkdwn"] * 15
        + ["huge"] * 2
        + ["thread"] * 8
        + ["edit"] * 8
        + ["delete"] * 3
        + ["blocks"] * 4
    )
    if n == 0:
        case = "pill:40k-bold"
    user = rnd.choice(users)
    event: dict[str, Any] = {
        "type": "message",
        "channel": channel,
        "user": user,
        "ts": ts,
        "event_ts": ts,
        "team": "T0",
        "channel_type": "channel",
    }
    text = hostile_text(rnd)
    if case == "pill:40k-bold":
        text = "*a* " * 10_000
    elif case == "mrkdwn":
        text = "".join(
            rnd.choice(["*", "_", "~", "`", "```", "<", ">", "|", "a", " ", "\n", "<@", "<!", "<#"])
            for _ in range(rnd.randint(1, 3000))
        )
    elif case == "huge":
        text = hostile_text(rnd, 40_000)
    event["text"] = text
    if case == "thread" and earlier:
        event["thread_ts"] = rnd.choice([rnd.choice(earlier), "1.000001", ts, 5])
    if case == "blocks":
        event["blocks"] = rnd.choice(
            [
                [{"type": "rich_text", "elements": [{"type": "x"}]}],
                "x",
                [None],
                [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
            ]
        )
    if case == "edit" and earlier:
        target = rnd.choice(earlier)
        event = {"type": "message", "subtype": "message_changed", "channel": channel, "hidden": True, "ts": ts, "event_ts": ts, "channel_type": "channel",
                 "message": {"type": "message", "user": user, "text": text, "ts": target, "edited": {"user": user, "ts": ts}},
                 "previous_message": {"type": "message", "user": user, "text": "before", "ts": target}}  # fmt: skip
    if case == "delete" and earlier:
        target = rnd.choice(earlier)
        event = {"type": "message", "subtype": "message_deleted", "channel": channel, "hidden": True, "ts": ts, "event_ts": ts, "deleted_ts": target, "channel_type": "channel",
                 "previous_message": {"type": "message", "user": user, "text": "before", "ts": target}}  # fmt: skip
    return case, event


# -- IRC --------------------------------------------------------------------------------------

IRC_BYTES = [b"\x01", b"\x01ACTION ", b"\x01PING 123\x01", b"\x10", b"\x10n", b"\x10r", b"\x100", b"\x02", b"\x03", b"\x0304,12",
             b"\x0f", b"\x16", b"\x1d", b"\x1f", b"\x11", b"\x1e", b"\xff", b"\xfe", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80",
             b"\xf0\x9f\x98\x80", "é".encode(), b" ", b":", b"\t", b"\x7f", b"\x1b[2J", b"word ", b"@everyone"]  # fmt: skip
LIMIT = 510  # bytes of an IRC line before CRLF: ngircd cuts off a client that sends more


def irc_line(rnd: random.Random, marker: str, channel: str) -> tuple[str, bytes]:
    """(case, raw line) from the fuzzer: the marker first (so no line is a bare CTCP request), then
    hostile bytes; some lines are ACTIONs, some carry a CR or LF the server splits them at."""
    head = f"PRIVMSG {channel} :".encode()
    case = rnd.choice(["bytes"] * 70 + ["action"] * 10 + ["split"] * 8 + ["huge"] * 7 + ["clean"] * 5)
    budget = LIMIT - len(head) - 20
    size = budget if case == "huge" else rnd.randint(1, 120)
    body = b""
    while len(body) < size:
        body += rnd.choice(IRC_BYTES) if case != "clean" else rnd.choice([b"plain ", b"words ", "é".encode()])
    body = body[:budget]
    if case == "split":
        cut = rnd.randrange(len(body) + 1)
        body = (
            body[:cut] + rnd.choice([b"\r", b"\n"]) + b"x" + body[cut:]
        )  # after the break: an unknown command
    text = marker.encode() + b" " + body
    if case == "action":
        text = b"\x01ACTION " + text + b"\x01"
    return case, head + text


# -- the bridge under fuzz --------------------------------------------------------------------


@dataclass
class Fuzzed:
    bridge: BridgeProcess
    emu: SlackEmulator
    synapse: SynapseSession
    alice: MatrixUser
    carol: User
    mallory: User  # on Slack, not in the directory
    fuzzer: IrcClient  # in the directory, identified by nick (ngircd has no services)
    stranger: IrcClient  # not in the directory
    watch: IrcClient
    room_id: str  # Matrix side of fz-matrix
    slack_a: str  # Slack side of fz-matrix
    slack_b: str  # Slack side of fz-slack
    irc_x: str  # IRC side of fz-slack
    irc_y: str  # IRC side of fz-irc
    slack_c: str  # Slack side of fz-irc
    relay: str

    @property
    def url(self) -> str:
        return str(self.bridge.config["archive"]["url"])

    def alive(self) -> None:
        assert self.bridge.proc is not None and self.bridge.proc.poll() is None, self.bridge.log_tail()
        assert self.bridge.starts == 1


@pytest.fixture(scope="module")
async def fuzzed(
    synapse: SynapseSession, ircd: Ngircd, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fuzzed]:
    emu = await SlackEmulator(post_rate=None, max_retries=2).start()
    alice = await MatrixUser(synapse, unique("alice")).login()
    alias = unique("sb-fuzz-")
    room_id = await alice.create_room(alias)
    carol, mallory = emu.add_user("carol", "carol.w"), emu.add_user("mallory", "mallory")
    slack_a, slack_b, slack_c = (
        emu.add_channel(unique(f"fuzz-{c}-"), [carol.id, mallory.id]).id for c in "abc"
    )
    irc_x, irc_y = f"#{unique('fuzzx')}".lower(), f"#{unique('fuzzy')}".lower()
    clients = []
    try:
        for nick in ("fuzzer", "stranger", "watch"):
            client = await IrcClient("127.0.0.1", ircd.port, unique(nick)).connect()
            clients.append(client)
            for channel in (irc_x, irc_y):
                await client.join(channel)
        fuzzer, stranger, watch = clients
        relay = unique("sb")
        directory = {
            "people": [
                {"employee_id": "E3001", "name": "Alice Smith", "department": "Trading", "handles": {"matrix": alice.user_id}},
                {"employee_id": "E3002", "name": "Carol White", "department": "Trading", "handles": {"slack": carol.id}},
                {"employee_id": "E3003", "name": "Frank Fuzz", "department": "Sales", "handles": {"irc": fuzzer.nick}},
            ]
        }  # fmt: skip
        workdir = tmp_path_factory.mktemp("fuzz")
        config = {
            "matrix": synapse.matrix_options(),
            "networks": {
                "slack": {"type": "slack", "bot_token": emu.bot_token, "app_token": emu.app_token, "api_url": emu.base_url},
                "irc": ngircd_network(ircd.port, relay, flood_burst=1000, flood_rate=2000.0),
            },
            "directory": {"type": "yaml", "path": "directory.yaml", "unmapped": "deny"},
            "archive": {"url": f"sqlite:///{workdir / 'archive.db'}", "signing_key": str(workdir / "archive-signing.key")},
            "rooms": [
                {"id": "fz-matrix", "matrix": f"#{alias}:{synapse.server_name}", "slack": slack_a},
                {"id": "fz-slack", "slack": slack_b, "irc": irc_x},
                {"id": "fz-irc", "irc": irc_y, "slack": slack_c},
            ],
        }  # fmt: skip
        bridge = BridgeProcess(workdir, config, directory)
        bridge.write()
        keygen = switchboard("archive", "keygen", "-c", str(bridge.config_path))
        assert keygen.returncode == 0, keygen.stderr
        world = Fuzzed(
            bridge, emu, synapse, alice, carol, mallory, fuzzer, stranger, watch,
            room_id, slack_a, slack_b, irc_x, irc_y, slack_c, relay,
        )  # fmt: skip
        try:
            await asyncio.to_thread(bridge.start)
            for channel in (irc_x, irc_y):
                await watch.wait_for(
                    lambda line, channel=channel: (
                        line.command == "JOIN" and line.nick == relay and line.text.lower() == channel
                    ),
                    60,
                    f"the relay joins {channel}",
                )
            yield world
        finally:
            print(f"bridge log {bridge.log_path}:\n{bridge.log_tail(60)}")
            await asyncio.to_thread(bridge.stop)
    finally:
        for client in clients:
            await client.close()
        await alice.close()
        await emu.stop()


async def settle(world: Fuzzed, progress: Callable[[], int], goal: int) -> None:
    """Wait while the bridge works through what it was given: until `progress()` reaches `goal`,
    or stops moving for 30 s (then the assertions after say what is missing). It must stay up."""
    last, still = -1, time.monotonic()
    deadline = time.monotonic() + SETTLE
    while (now := await asyncio.to_thread(progress)) < goal and time.monotonic() < deadline:
        world.alive()
        if now != last:
            last, still = now, time.monotonic()
        elif time.monotonic() - still > 30:
            return
        await asyncio.sleep(2)


def refusals(log: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, log))


async def on_slack(world: Fuzzed, channel: str, tag: str) -> None:
    """Wait for the bot's post holding `tag`, polling: after a fuzz run the channel holds thousands
    of posts, and re-reading them on every new one would starve the emulator."""
    deadline = time.monotonic() + SETTLE
    while not any(tag in m.text for m in reversed(world.emu.messages(channel)) if m.bot_id):
        world.alive()
        assert time.monotonic() < deadline, f"{tag} not on Slack {channel} after {SETTLE}s"
        await asyncio.sleep(1)


def assert_no_problems(world: Fuzzed, problems: list[str]) -> None:
    """One assertion for all a run found (each is worth knowing), `archive verify` included."""
    verify = verify_archive(world.bridge.config_path, world.bridge.workdir / "archive-signing.key.pub")
    if verify.returncode != 0:
        problems.append(f"archive verify: {verify.stdout}{verify.stderr}")
    assert not problems, "\n".join(problems)


def carries_surrogate(value: Any) -> bool:
    """Whether a lone surrogate is anywhere in `value` (JSON can carry one, UTF-8 cannot)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def report(
    network: str, cases: dict[str, str], accounted: set[str], started: float, sent: dict[str, Any]
) -> list[tuple[str, int]]:
    """Print and return the unaccounted events by case, those carrying a lone surrogate apart."""
    missing = Counter(
        cases[i] + (" (lone surrogate)" if carries_surrogate(sent.get(i)) else "")
        for i in cases
        if i not in accounted
    )
    print(
        f"{network}: {len(cases)} events in {time.monotonic() - started:.0f}s; unaccounted: {dict(sorted(missing.items()))}"
    )
    return sorted(missing.items())


# -- the three runs ---------------------------------------------------------------------------


@pytest.mark.timeout(1500)
async def test_fuzz_matrix(fuzzed: Fuzzed) -> None:
    world, rnd = fuzzed, seeded("fuzz matrix")
    started = time.monotonic()
    cases: dict[str, str] = {}
    events: list[dict[str, Any]] = []
    for n in range(EVENTS):
        case = PILLS[n] if n < len(PILLS) else rnd.choice(MATRIX_CASES)
        sender = f"@mallory{rnd.randrange(50)}:corp.test" if case == "unmapped" else world.alice.user_id
        event_id = f"$fz{n:05d}{rnd.randrange(16**6):06x}"
        content = matrix_content(rnd, case, [e["event_id"] for e in events[-200:]])
        events.append({"type": "m.room.message", "event_id": event_id, "room_id": world.room_id, "sender": sender,
                       "origin_server_ts": 1_790_000_000_000 + n, "content": content})  # fmt: skip
        cases[event_id] = case
    rest = events[len(PILLS) :]
    rnd.shuffle(rest)
    events[len(PILLS) :] = rest  # the known pills open the first transaction
    failed: dict[str, int] = {}
    poisoned: Counter[str] = Counter()  # cases of events that fail their transaction on their own
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def push(txn: str, batch: list[dict[str, Any]], tries: int) -> int:
            status = 0
            for _ in range(tries):  # Synapse would retry forever; a few tries tell a poisoned one apart
                with contextlib.suppress(TimeoutError):
                    status = await put_transaction(world.synapse, txn, batch, world.synapse.hs_token, http)
                if status == 200:
                    break
            return status

        for b in range(0, EVENTS, BATCH):
            txn = f"fz{b}-{unique('')}"
            status = await push(txn, events[b : b + BATCH], 3)
            if status != 200:
                failed[txn] = status
                for event in events[b : b + BATCH]:  # which of them holds the whole transaction up
                    if await push(f"{txn}-{event['event_id']}", [event], 1) != 200:
                        poisoned[cases[event["event_id"]]] += 1
            world.alive()
    ids = set(cases)

    def accounted() -> set[str]:
        archived_ids = {
            r.native_id for r in archived(world.url) if r.network == "matrix" and r.native_id in ids
        }
        refused = refusals(world.bridge.log_text(), r"skipping (?:malformed )?event (\$fz\w+)")
        return archived_ids | refused

    await settle(world, lambda: len(accounted()), EVENTS)
    missing = report("matrix", cases, accounted(), started, {e["event_id"]: e for e in events})
    # A normal message still relays, behind everything the fuzz made the bridge send.
    tag = unique("after-matrix-fuzz")
    await world.alice.send(world.room_id, f"{tag} still here")
    await on_slack(world, world.slack_a, tag)
    world.alive()
    print(f"matrix: {len(failed)} transactions never answered 200; events failing alone: {dict(poisoned)}")
    # A pill to a ghost whose id spells a broadcast is plain text, whoever sent it.
    forged = [p.text for p in world.emu.posted(world.slack_a) if "heads up" in p.text]
    problems = []
    if failed:
        problems.append(f"{len(failed)} transactions never answered 200 (Synapse would retry them forever)")
    if missing:
        problems.append(f"Matrix events neither archived nor refused with a reason: {missing}")
    if not forged or any("<!" in text for text in forged):
        problems.append(f"the forged @channel pill reached Slack as {forged}")
    assert_no_problems(world, problems)


@pytest.mark.timeout(1500)
async def test_fuzz_slack(fuzzed: Fuzzed) -> None:
    world, rnd = fuzzed, seeded("fuzz slack")
    started = time.monotonic()
    cases: dict[str, str] = {}
    earlier: list[str] = []
    users = [world.carol.id] * 19 + [world.mallory.id]
    emitted: list[PendingEvent] = []
    open_: list[PendingEvent] = []
    for n in range(EVENTS):
        case, event = slack_event(rnd, n, world.slack_b, users, earlier[-200:])
        blank = not str(event.get("text", "x")).strip(" \t\r\n\u200b\ufeff")
        cases[event["ts"]] = "blank" if blank and case == "plain" else case
        if event.get("subtype") is None:
            earlier.append(event["ts"])
        pending = world.emu.deliver_raw(event)
        assert pending is not None
        emitted.append(pending)
        open_.append(pending)
        # Like Slack, which does not run far ahead of an app that falls behind.
        while len(open_) >= BATCH:
            open_ = [p for p in open_ if p.state not in ("acked", "dropped")]
            if len(open_) >= BATCH:
                world.alive()
                await asyncio.sleep(0.05)
    deadline = time.monotonic() + SETTLE
    while any(p.state not in ("acked", "dropped") for p in emitted):  # polled: see on_slack
        world.alive()
        assert time.monotonic() < deadline, "Slack events still unsettled"
        await asyncio.sleep(1)
    del_or_blank = {ts for ts, case in cases.items() if case == "blank"}

    def accounted() -> set[str]:
        return {r.native_id for r in archived(world.url) if r.network == "slack" and r.native_id in cases}

    said = {p.body["event"].get("ts"): p.body["event"] for p in emitted}
    missing = report(
        "slack", {k: v for k, v in cases.items() if k not in del_or_blank}, accounted(), started, said
    )
    dropped = [p.event_id for p in emitted if p.state == "dropped"]
    redelivered = sum(1 for p in emitted if len(p.attempts) > 1)
    print(f"slack: {redelivered} events were delivered more than once, {len(dropped)} given up on")
    tag = unique("after-slack-fuzz")
    world.emu.user_posts(world.slack_b, world.carol.id, f"{tag} still here")
    await world.watch.wait_for(
        lambda line: line.command == "PRIVMSG" and line.nick == world.relay and tag in line.text,
        SETTLE,
        "normal Slack message on IRC",
    )
    world.alive()
    problems = []
    if dropped:
        problems.append(f"Slack gave up on {len(dropped)} events the bridge kept failing")
    if missing:
        problems.append(f"Slack events neither archived nor refused with a reason: {missing}")
    assert_no_problems(world, problems)


@pytest.mark.timeout(1500)
async def test_fuzz_irc(fuzzed: Fuzzed) -> None:
    world, rnd = fuzzed, seeded("fuzz irc")
    started = time.monotonic()
    cases: dict[str, str] = {}
    sent: dict[str, bytes] = {}
    for b in range(0, EVENTS, BATCH):
        last = ""
        for n in range(b, min(b + BATCH, EVENTS)):
            marker = f"fz{n:05d}"
            case, raw = irc_line(rnd, marker, world.irc_y)
            client = world.stranger if rnd.random() < 0.02 else world.fuzzer
            cases[marker], sent[marker], last = case, raw, marker
            await client.send_raw(raw)
        await world.watch.wait_for(
            lambda line, last=last: last.encode() in line.raw, 60, f"{last} on the server"
        )
        world.alive()
    # What the server relayed to the channel is what the bridge was given: one line, one message.
    marker_re = re.compile(rb"fz\d{5}")
    heard = [
        line
        for line in world.watch.privmsgs(world.irc_y)
        if line.nick in (world.fuzzer.nick, world.stranger.nick)
    ]
    by_marker = {m.group().decode(): line for line in heard if (m := marker_re.search(line.raw))}
    print(
        f"irc: {len(sent)} lines written, {len(heard)} relayed by the server ({len(by_marker)} with their marker)"
    )

    def ours() -> list[Archived]:
        return [r for r in archived(world.url) if r.network == "irc" and r.room == world.irc_y]

    def markers(records: list[Archived]) -> Counter[str]:
        return Counter(m.decode() for r in records for m in set(marker_re.findall(r.text.encode())))

    await settle(world, lambda: len(markers(ours())), len(by_marker))
    records = ours()
    count = markers(records)
    missing = report(
        "irc", {m: cases[m] for m in by_marker}, {m for m in by_marker if count[m] == 1}, started, {}
    )
    extra = [r.text for r in records if not marker_re.search(r.text.encode())]
    print(f"irc: {len(extra)} records without a marker (a line cut in two makes one), e.g. {extra[:3]}")
    # Text is kept as sent: a line in valid UTF-8 without formatting codes or CTCP is archived
    # exactly (tabs, DEL, terminal escapes and the CTCP quote character \x10 included).
    changed = []
    for marker, line in by_marker.items():
        payload = line.raw.split(b" :", 1)[1]
        if payload.startswith(b"\x01ACTION ") and payload.endswith(b"\x01"):
            payload = payload[8:-1]
        if re.search(rb"[\x01\x02\x03\x0f\x11\x16\x1d\x1e\x1f]", payload):
            continue
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            continue
        mine = [r.text for r in records if marker in r.text]
        if mine != [text]:
            changed.append((marker, text, mine))
    tag = unique("after-irc-fuzz")
    await world.fuzzer.privmsg(world.irc_y, f"{tag} still here")
    await on_slack(world, world.slack_c, tag)
    world.alive()
    print(f"irc: {len(changed)} clean lines archived other than sent, e.g. {changed[:3]}")
    problems = []
    if missing:
        problems.append(f"IRC lines not archived exactly once: {missing}")
    if extra:
        problems.append(f"{len(extra)} records are the rest of a line cut in two")
    if changed:
        problems.append(f"{len(changed)} lines archived other than sent: {changed[:5]}")
    assert_no_problems(world, problems)
