"""Relay benchmark: the bridge's added latency and CPU per message, Matrix ↔ IRC, on real servers.

Run from the repository root:

    .venv/bin/python -m bench.relay [--rate 20] [--count 400] [--json relay.json]

It starts its own Synapse, its own ngircd (penalties off) and `switchboard run`
as a subprocess (SQLite archive, IRC flood control set high so that it is not
what is measured), then runs two phases at a steady, open-loop rate:

- Matrix → IRC: Alice (matrix-nio) sends, Bob (a raw IRC socket) sees the
  relayed line. Synapse pushes every event of the room to the bridge and, at the
  same moment, to a tiny appservice of the bench's own (a second registration),
  so per message: added = (send → seen on IRC) − (send → pushed to the bench's
  appservice) = seen on IRC − pushed.
- IRC → Matrix: Bob sends, Olga (matrix-nio, /sync long-poll) sees the ghost's
  event. The baseline is Synapse's own send → /sync latency, taken from Alice's
  messages of the first phase (same room, same rate); these are different
  messages, so added = e2e − baseline per percentile. The same is reported with
  the bench appservice's push instead of /sync, which is less noisy.
- CPU: user+system time from /proc/<pid>/stat of the bridge, Synapse, ngircd and
  the bench itself before and after each phase, divided by the messages relayed;
  and how many cores processes outside the bench used meanwhile (/proc/stat),
  since on a shared 2-core machine they slow Synapse and the bridge.

Then it reads the archive (`switchboard archive search --format json`): each
record's captured_at, stamped by the bridge just before its commit, splits the
added latency into receiving (push → archived) and relaying (archived → IRC).
All times are wall-clock (time.time()) because captured_at is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import yaml
from aiohttp import web
from nio import (
    AsyncClient,
    AsyncClientConfig,
    RoomCreateResponse,
    RoomPreset,
    RoomSendResponse,
    RoomVisibility,
)

from bridge.sandbox.ircd import Ngircd
from bridge.sandbox.ports import free_port
from bridge.sandbox.synapse import Synapse
from connectors.matrix import MatrixConnector
from tests.e2e.harness import BridgeProcess, switchboard
from tests.servers.ircclient import IrcClient, parse_line

SERVER_NAME = "corp.test"
ALIAS = "bench"
CHANNEL = "#bench"
RELAY_NICK = "switchboard"
OBSERVER_AS = "bench-observer"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_P50_MS, TARGET_P99_MS = 3.0, 15.0
# Every benchmark message carries one token, so all observers pair arrivals by it.
# The kinds after m2i|i2m|wm|wi are bench.slack_relay's (Slack → IRC steady and steps, Slack → Matrix,
# the Matrix baseline, warm-ups).
TOKEN = re.compile(r"\bsb[0-9a-f]{6}-(?:m2i|i2m|wm|wi|s2i|st\d\d|s2m|mb|ws|wl)-\d{5}\b")
FILLER = "price check on the usual, thanks"


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def stats_ms(samples_s: list[float]) -> dict[str, float]:
    if not samples_s:
        return {"n": 0}
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
        "min": round(min(ms), 2),
    }


def minus(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Percentile-wise difference, for latencies of different messages that cannot be paired."""
    if not a.get("n") or not b.get("n"):
        return {"n": 0}
    return {
        "n": min(a["n"], b["n"]),
        "p50": round(a["p50"] - b["p50"], 2),
        "p99": round(a["p99"] - b["p99"], 2),
    }


def token_of(text: str) -> str | None:
    match = TOKEN.search(text)
    return match.group(0) if match else None


def event_token(event: Mapping[str, Any]) -> str | None:
    body = (event.get("content") or {}).get("body")
    return token_of(body) if isinstance(body, str) else None


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU of one process (all its threads), from /proc/<pid>/stat;
    with `thread`, of that one thread only (/proc/<pid>/task/<thread>/stat)."""
    with open(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat") as f:
        # The command name may contain spaces and parentheses: fields start after the last ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_snapshot(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy, all cores (the first line of /proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass
class ObserverAppservice:
    """A second appservice in the same room: when Synapse pushes, without any bridge work."""

    hs_token: str
    port: int = field(default_factory=free_port)
    arrivals: dict[str, float] = field(default_factory=dict)
    transactions: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/_matrix/app/v1/transactions/{txn_id}", self._transaction)
        app.router.add_post("/_matrix/app/v1/ping", self._ok)
        app.router.add_get("/_matrix/app/v1/users/{user_id}", self._not_found)
        app.router.add_get("/_matrix/app/v1/rooms/{alias}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _transaction(self, request: web.Request) -> web.Response:
        # Stamped before the body is read: the bridge's own clock starts when the request arrives too.
        now = time.time()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(token or request.query.get("access_token", ""), self.hs_token):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        body = await request.json()
        self.transactions += 1
        for event in body.get("events", []):
            found = event_token(event)
            if found is not None:
                self.arrivals.setdefault(found, now)
        return web.json_response({})

    async def _ok(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)

    def registration(self, as_token: str) -> dict[str, Any]:
        return {
            "id": OBSERVER_AS,
            "url": f"http://127.0.0.1:{self.port}",
            "as_token": as_token,
            "hs_token": self.hs_token,
            "sender_localpart": OBSERVER_AS,
            # Rooms are pushed because our sender user joins them; we claim no one else.
            "namespaces": {"users": [], "aliases": [], "rooms": []},
            "rate_limited": False,
        }


@dataclass
class TimedIrcClient(IrcClient):
    """The test suite's raw IRC client, also stamping when each token's PRIVMSG arrived."""

    arrivals: dict[str, float] = field(default_factory=dict)

    async def _read(self) -> None:
        assert self._reader is not None and self._writer is not None
        while True:
            raw = await self._reader.readline()
            now = time.time()
            if not raw:
                return
            line = parse_line(raw.rstrip(b"\r\n"))
            if line.command == "PING":
                self._writer.write(f"PONG :{line.text}\r\n".encode())
            elif line.command == "PRIVMSG" and (found := token_of(line.text)) is not None:
                self.arrivals.setdefault(found, now)
            self.lines.append(line)
            self._changed.set()


@dataclass
class SyncWatcher:
    """Olga's /sync long-poll: when each token's event reached a Matrix client, and from whom."""

    client: AsyncClient
    room_id: str
    arrivals: dict[str, float] = field(default_factory=dict)
    senders: dict[str, str] = field(default_factory=dict)
    errors: int = 0

    def sync_filter(self) -> dict[str, Any]:
        # Only this room's messages: the client then does no more work per event than needed.
        return {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {
                "rooms": [self.room_id],
                "timeline": {"types": ["m.room.message"], "limit": 1000},
                "state": {"types": []},
                "ephemeral": {"types": []},
                "account_data": {"types": []},
            },
        }

    async def run(self) -> None:
        first = True
        while True:
            # The first sync returns at once and only sets next_batch; after that each one long-polls.
            try:
                resp = await self.client.sync(timeout=0 if first else 30_000, sync_filter=self.sync_filter())
            except (aiohttp.ClientError, TimeoutError):
                resp = None  # a dead watcher would only show as a timeout much later
            now = time.time()
            if not hasattr(resp, "next_batch"):
                self.errors += 1
                await asyncio.sleep(0.2)
                continue
            room = resp.rooms.join.get(self.room_id)
            if not first and room is not None:
                for event in room.timeline.events:
                    found = event_token(event.source)
                    if found is not None:
                        self.arrivals.setdefault(found, now)
                        self.senders.setdefault(found, event.source.get("sender", ""))
            first = False


@dataclass
class Phase:
    name: str
    tokens: list[str]
    sent: dict[str, float]
    cpu: dict[str, float]  # seconds per process, over the phase
    seconds: float
    # Cores used on average by processes outside the bench (others' builds and tests): on 2 cores
    # they slow Synapse and the bridge, and a number measured beside them must say so.
    other_cores: float = 0.0
    send_rtt: dict[str, float] = field(default_factory=dict)  # Matrix sends only: request → reply
    send_errors: list[str] = field(default_factory=list)


async def paced(tokens: list[str], rate: float, send: Callable[[str], Awaitable[None]]) -> None:
    """Send each token at its slot of a steady rate; open loop, so a slow reply never delays the next."""
    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    for i, token in enumerate(tokens):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        tasks.append(asyncio.create_task(send(token)))
    await asyncio.gather(*tasks)


async def wait_seen(tokens: Iterable[str], where: Mapping[str, Mapping[str, float]], timeout: float) -> None:
    """Until every token was seen by every observer in `where`, or `timeout` passed (then some are missing)."""
    wanted = list(tokens)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(t in seen for seen in where.values() for t in wanted):
            return
        await asyncio.sleep(0.05)
    missing = {name: sum(t not in seen for t in wanted) for name, seen in where.items()}
    print(f"  warning: not everything arrived within {timeout:.0f}s; missing per observer: {missing}")


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.run = f"sb{secrets.token_hex(3)}"
        self.observer = ObserverAppservice(hs_token=secrets.token_hex(16))
        self.synapse = Synapse(root / "synapse", SERVER_NAME)
        self.ircd = Ngircd(penalties=False)
        self.matrix_options = {
            "homeserver": self.synapse.url,
            "server_name": SERVER_NAME,
            "appservice": {
                "id": "switchboard",
                "listen": f"127.0.0.1:{free_port()}",
                "as_token": secrets.token_hex(16),
                "hs_token": secrets.token_hex(16),
                "bot": "switchboard",
            },
        }
        self.alice: AsyncClient | None = None
        self.olga: AsyncClient | None = None
        self.bob: TimedIrcClient | None = None
        self.bridge: BridgeProcess | None = None
        self.watcher: SyncWatcher | None = None
        self.room_id = ""

    def token(self, kind: str, i: int) -> str:
        return f"{self.run}-{kind}-{i:05d}"

    async def setup(self, stack: contextlib.AsyncExitStack) -> None:
        await self.observer.start()
        stack.push_async_callback(self.observer.stop)
        registrations = []
        for name, registration in (
            ("switchboard", MatrixConnector.registration(self.matrix_options)),
            (OBSERVER_AS, self.observer.registration(observer_as_token := secrets.token_hex(16))),
        ):
            path = self.root / f"{name}-registration.yaml"
            path.write_text(yaml.safe_dump(registration, sort_keys=False))
            registrations.append(path)
        self.synapse.appservice_files = registrations
        stack.callback(self.synapse.stop)
        began = time.monotonic()
        await asyncio.to_thread(self.synapse.start)
        print(
            f"Synapse on {self.synapse.url} (pid {self._pid(self.synapse)}) in {time.monotonic() - began:.1f}s"
        )
        stack.callback(self.ircd.close)
        self.ircd.start()
        print(f"ngircd on 127.0.0.1:{self.ircd.port} (pid {self._pid(self.ircd)}), penalties off")

        self.alice = await self._user("alice")
        stack.push_async_callback(self.alice.close)
        self.olga = await self._user("olga")
        stack.push_async_callback(self.olga.close)
        created = await self.alice.room_create(
            visibility=RoomVisibility.public, alias=ALIAS, preset=RoomPreset.public_chat
        )
        assert isinstance(created, RoomCreateResponse), created
        self.room_id = created.room_id
        joined = await self.olga.join(self.room_id)
        assert hasattr(joined, "room_id"), joined
        await self._observer_joins(observer_as_token)

        self.watcher = SyncWatcher(self.olga, self.room_id)
        watching = asyncio.create_task(self.watcher.run())
        stack.push_async_callback(_cancel, watching)

        self.bob = TimedIrcClient("127.0.0.1", self.ircd.port, "bob")
        await self.bob.connect()
        stack.push_async_callback(self.bob.close)
        await self.bob.join(CHANNEL)

        self.bridge = BridgeProcess(self.root / "bridge", self._bridge_config(), self._directory())
        stack.callback(self.bridge.stop)
        began = time.monotonic()
        await asyncio.to_thread(self.bridge.start)
        assert self.bridge.proc is not None
        await self.bob.wait_for(
            lambda line: line.command == "JOIN" and line.nick == RELAY_NICK, 30, "the relay joins"
        )
        print(
            f"bridge running (pid {self.bridge.proc.pid}, log {self.bridge.log_path}) "
            f"in {time.monotonic() - began:.1f}s"
        )

    async def _user(self, name: str) -> AsyncClient:
        user_id, token = await asyncio.to_thread(self.synapse.register_user, name, "bench-password")
        client = AsyncClient(
            self.synapse.url, user_id, config=AsyncClientConfig(max_limit_exceeded=0, max_timeouts=2)
        )
        client.access_token, client.user_id = token, user_id
        return client

    async def _observer_joins(self, as_token: str) -> None:
        """The bench appservice's own user joins the room, so Synapse pushes the room's events to it."""
        headers = {"Authorization": f"Bearer {as_token}"}
        base = f"{self.synapse.url}/_matrix/client/v3"
        async with aiohttp.ClientSession(headers=headers) as http:
            body = {"type": "m.login.application_service", "username": OBSERVER_AS, "inhibit_login": True}
            async with http.post(f"{base}/register", json=body) as reply:
                if reply.status != 200 and (await reply.json()).get("errcode") != "M_USER_IN_USE":
                    raise RuntimeError(f"registering {OBSERVER_AS}: {reply.status} {await reply.text()}")
            async with http.post(f"{base}/rooms/{quote(self.room_id, safe='')}/join", json={}) as reply:
                if reply.status != 200:
                    raise RuntimeError(f"{OBSERVER_AS} joining the room: {reply.status} {await reply.text()}")

    def _bridge_config(self) -> dict[str, Any]:
        return {
            "matrix": self.matrix_options,
            "networks": {
                "irc": {
                    "type": "irc",
                    "host": "127.0.0.1",
                    "port": self.ircd.port,
                    "nick": RELAY_NICK,
                    "identify": "nick",  # ngircd has no services accounts
                    "flood_burst": self.args.flood_burst,
                    "flood_rate": self.args.flood_rate,
                }
            },
            "directory": {"type": "yaml", "path": "directory.yaml", "unmapped": "deny"},
            "archive": {"url": f"sqlite:///{self.root / 'bridge' / 'archive.db'}"},
            "rooms": [{"id": "bench", "matrix": f"#{ALIAS}:{SERVER_NAME}", "irc": CHANNEL}],
        }

    def _directory(self) -> dict[str, Any]:
        assert self.alice is not None
        return {
            "people": [
                {
                    "employee_id": "E0001",
                    "name": "Alice Bench",
                    "department": "Trading",
                    "handles": {"matrix": self.alice.user_id},
                },
                {
                    "employee_id": "E0002",
                    "name": "Bob Bench",
                    "department": "Sales",
                    "handles": {"irc": "bob"},
                },
            ]
        }

    @staticmethod
    def _pid(server: Synapse | Ngircd) -> int:
        proc = server.process if isinstance(server, Synapse) else server._proc
        assert proc is not None
        return proc.pid

    def pids(self) -> dict[str, int]:
        assert self.bridge is not None and self.bridge.proc is not None
        return {
            "bridge": self.bridge.proc.pid,
            "synapse": self._pid(self.synapse),
            "ngircd": self._pid(self.ircd),
            "bench": os.getpid(),
        }

    # -- sending ---------------------------------------------------------------------

    async def matrix_send(self, token: str, phase: Phase) -> None:
        assert self.alice is not None
        began = phase.sent[token] = time.time()
        resp = await self.alice.room_send(
            self.room_id, "m.room.message", {"msgtype": "m.text", "body": f"{token} {FILLER}"}
        )
        phase.send_rtt[token] = time.time() - began
        if not isinstance(resp, RoomSendResponse):
            phase.send_errors.append(f"{token}: {resp}")

    async def irc_send(self, token: str, phase: Phase) -> None:
        assert self.bob is not None
        phase.sent[token] = time.time()
        await self.bob.privmsg(CHANNEL, f"{token} {FILLER}")

    async def warm_up(self) -> None:
        """Ghost registration, joins and first-use costs happen here, not in the measured phases."""
        assert self.bob is not None and self.watcher is not None
        scratch = Phase("warm-up", [], {}, {}, 0.0)
        for i in range(self.args.warmup):
            await self.matrix_send(self.token("wm", i), scratch)
            await wait_seen([self.token("wm", i)], {"IRC": self.bob.arrivals}, 30)
            await self.irc_send(self.token("wi", i), scratch)
            await wait_seen([self.token("wi", i)], {"Matrix /sync": self.watcher.arrivals}, 30)
        if scratch.send_errors:
            raise RuntimeError(f"warm-up sends failed: {scratch.send_errors[:3]}")

    async def phase(
        self,
        name: str,
        kind: str,
        send: Callable[[str, Phase], Awaitable[None]],
        seen_by: dict[str, dict[str, float]],
        *,
        count: int | None = None,
        rate: float | None = None,
    ) -> Phase:
        """`count` messages (default --count) sent by the bench at `rate` per second (default --rate)."""
        tokens = [self.token(kind, i) for i in range(self.args.count if count is None else count)]
        every = self.args.rate if rate is None else rate
        return await self.measured(
            name, tokens, lambda result: paced(tokens, every, lambda token: send(token, result)), seen_by
        )

    async def measured(
        self,
        name: str,
        tokens: list[str],
        drive: Callable[[Phase], Awaitable[None]],
        seen_by: dict[str, dict[str, float]],
    ) -> Phase:
        """CPU and machine busyness around `drive` (which sends `tokens`, filling in `sent`) and the wait
        until every observer in `seen_by` saw them all."""
        result = Phase(name, tokens, {}, {}, 0.0)
        pids = self.pids()
        before, busy_before = cpu_snapshot(pids), machine_busy_seconds()
        began = time.monotonic()
        await drive(result)
        await wait_seen(tokens, seen_by, self.args.timeout)
        after, busy_after = cpu_snapshot(pids), machine_busy_seconds()
        result.seconds = time.monotonic() - began
        result.cpu = {process: after[process] - before[process] for process in pids}
        others = busy_after - busy_before - sum(result.cpu.values())
        result.other_cores = max(0.0, others) / result.seconds
        return result

    async def measure(self) -> dict[str, Any]:
        assert self.bob is not None and self.watcher is not None and self.bridge is not None
        print(f"warm-up: {self.args.warmup} messages each way")
        await self.warm_up()
        print(f"Matrix → IRC: {self.args.count} messages at {self.args.rate:g} msg/s")
        m2i = await self.phase(
            "matrix_to_irc",
            "m2i",
            self.matrix_send,
            {
                "IRC": self.bob.arrivals,
                "observer push": self.observer.arrivals,
                "/sync": self.watcher.arrivals,
            },
        )
        print(f"IRC → Matrix: {self.args.count} messages at {self.args.rate:g} msg/s")
        i2m = await self.phase(
            "irc_to_matrix",
            "i2m",
            self.irc_send,
            {"/sync": self.watcher.arrivals, "observer push": self.observer.arrivals},
        )
        records = await asyncio.to_thread(self.archive_records)
        return self.results(m2i, i2m, records)

    def archive_records(self) -> list[dict[str, Any]]:
        """Every record as `switchboard archive search --format json` prints it; [] if that fails.

        Only the breakdown needs them, so a failure there must not cost the measurements.
        """
        assert self.bridge is not None
        # Compliance commands name who is acting (the search is archived too; harmless here).
        result = switchboard(
            "archive",
            "search",
            "-c",
            str(self.bridge.config_path),
            "--format",
            "json",
            env={"SWITCHBOARD_ACTOR": "bench"},
        )
        try:
            if result.returncode != 0:
                raise ValueError(result.stderr.strip()[-300:])
            return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        except ValueError as exc:
            print(f"  warning: could not read the archive, so no breakdown: {exc}")
            return []

    # -- results ---------------------------------------------------------------------

    def results(self, m2i: Phase, i2m: Phase, records: list[dict[str, Any]]) -> dict[str, Any]:
        assert self.bob is not None and self.watcher is not None
        irc, push, sync = self.bob.arrivals, self.observer.arrivals, self.watcher.arrivals
        m2i_done = [t for t in m2i.tokens if t in irc and t in push]
        i2m_done = [t for t in i2m.tokens if t in sync]
        ghost = f"@_sb_irc_bob:{SERVER_NAME}"
        strangers = sorted({self.watcher.senders[t] for t in i2m_done} - {ghost})

        baseline_sync = stats_ms([sync[t] - m2i.sent[t] for t in m2i.tokens if t in sync])
        baseline_push = stats_ms([push[t] - m2i.sent[t] for t in m2i.tokens if t in push])
        e2e_sync = stats_ms([sync[t] - i2m.sent[t] for t in i2m_done])
        e2e_push = stats_ms([push[t] - i2m.sent[t] for t in i2m.tokens if t in push])
        added_m2i = stats_ms([irc[t] - push[t] for t in m2i_done])

        archived = {
            (r.get("network"), token): epoch(r["captured_at"])
            for r in records
            if r.get("kind") == "message"
            and r.get("captured_at")
            and (token := token_of(r.get("text") or "")) is not None
        }
        # While a backlog lasts, the gap between two deliveries is the bridge's time per message
        # into the room: its one-at-a-time worker waits for each send's reply, then commits.
        i2m_seqs = {
            r.get("seq")
            for r in records
            if r.get("kind") == "message" and r.get("network") == "irc" and "-i2m-" in (r.get("text") or "")
        }
        delivered_at = sorted(
            epoch(r["captured_at"])
            for r in records
            if r.get("kind") == "delivery" and r.get("target_seq") in i2m_seqs and r.get("captured_at")
        )
        breakdown = {
            "matrix_to_irc": {
                "push_to_archived": stats_ms(
                    [archived[("matrix", t)] - push[t] for t in m2i_done if ("matrix", t) in archived]
                ),
                "archived_to_irc": stats_ms(
                    [irc[t] - archived[("matrix", t)] for t in m2i_done if ("matrix", t) in archived]
                ),
            },
            "irc_to_matrix": {
                "irc_send_to_archived": stats_ms(
                    [archived[("irc", t)] - i2m.sent[t] for t in i2m.tokens if ("irc", t) in archived]
                ),
                "interval_between_matrix_deliveries": stats_ms([b - a for a, b in pairwise(delivered_at)]),
                "archived_to_push": stats_ms(
                    [
                        push[t] - archived[("irc", t)]
                        for t in i2m.tokens
                        if ("irc", t) in archived and t in push
                    ]
                ),
            },
        }
        return {
            "settings": {
                "rate_per_second": self.args.rate,
                "count": self.args.count,
                "warmup": self.args.warmup,
                "irc_flood_burst": self.args.flood_burst,
                "irc_flood_rate": self.args.flood_rate,
                "ngircd_penalties": False,
                "archive": "sqlite (WAL, synchronous=FULL)",
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "code": code_version(),
            },
            "matrix_to_irc": {
                "sent": len(m2i.tokens),
                "relayed": sum(t in irc for t in m2i.tokens),
                "send_errors": len(m2i.send_errors),
                "seconds": round(m2i.seconds, 2),
                "throughput_per_second": throughput(m2i, irc),
                "other_processes_cores": round(m2i.other_cores, 2),
                "e2e_ms": stats_ms([irc[t] - m2i.sent[t] for t in m2i_done]),
                "baseline_push_ms": stats_ms([push[t] - m2i.sent[t] for t in m2i_done]),
                "added_ms": added_m2i,
                "matrix_send_rtt_ms": stats_ms(list(m2i.send_rtt.values())),
                "target_ms": {"p50": TARGET_P50_MS, "p99": TARGET_P99_MS},
                "target_met": bool(
                    added_m2i.get("n")
                    and added_m2i["p50"] <= TARGET_P50_MS
                    and added_m2i["p99"] <= TARGET_P99_MS
                ),
            },
            "irc_to_matrix": {
                "sent": len(i2m.tokens),
                "relayed": len(i2m_done),
                "other_senders": strangers,
                "seconds": round(i2m.seconds, 2),
                "throughput_per_second": throughput(i2m, sync),
                "other_processes_cores": round(i2m.other_cores, 2),
                "e2e_sync_ms": e2e_sync,
                "baseline_sync_ms": baseline_sync,
                "added_sync_ms": minus(e2e_sync, baseline_sync),
                "e2e_push_ms": e2e_push,
                "baseline_push_ms": baseline_push,
                "added_push_ms": minus(e2e_push, baseline_push),
            },
            "cpu_ms_per_message": {
                phase.name: {
                    name: round(seconds * 1000 / max(1, count), 3) for name, seconds in phase.cpu.items()
                }
                for phase, count in ((m2i, len(m2i_done)), (i2m, len(i2m_done)))
            },
            "cpu_seconds": {
                phase.name: {k: round(v, 2) for k, v in phase.cpu.items()} for phase in (m2i, i2m)
            },
            "cpu_resolution_ms": 1000 / CLK_TCK,
            "breakdown_ms": breakdown,
        }


def throughput(phase: Phase, seen: Mapping[str, float]) -> float:
    """Messages relayed per second, first send to last arrival: below the rate means a growing backlog."""
    arrived = [seen[t] for t in phase.tokens if t in seen]
    if len(arrived) < 2:
        return 0.0
    return round(len(arrived) / (max(arrived) - min(phase.sent.values())), 2)


def code_version() -> str:
    """HEAD, and whether the bridge's code differs from it: the work tree is shared while others edit it."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "bridge", "connectors"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} + {len(changed)} uncommitted files in bridge/, connectors/" if changed else head


def epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def stats_row(label: str, s: dict[str, float], note: str = "") -> str:
    """One table line of a stats_ms() result: n, p50, p99 and max (when known)."""
    if not s.get("n"):
        return f"  {label:<44} {'-':>6}"
    cells = f"{s['n']:>6} {s['p50']:>9.2f} {s['p99']:>9.2f}"
    cells += f" {s['max']:>9.2f}" if "max" in s else f" {'':>9}"
    return f"  {label:<44} {cells}  {note}".rstrip()


def table(r: dict[str, Any]) -> str:
    row = stats_row
    st, m, i = r["settings"], r["matrix_to_irc"], r["irc_to_matrix"]
    target = f"target ≤ {TARGET_P50_MS:g} / ≤ {TARGET_P99_MS:g}: {'met' if m['target_met'] else 'MISSED'}"
    b = r["breakdown_ms"]
    head = f"  {'':<44} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"
    cpu = r["cpu_ms_per_message"]
    lines = [
        "",
        f"{st['count']} messages per direction at {st['rate_per_second']:g} msg/s; IRC flood control "
        f"flood_burst={st['irc_flood_burst']}, flood_rate={st['irc_flood_rate']:g}/s (set high: not measured); "
        f"ngircd penalties off; SQLite archive; code {st['code']}",
        f"Matrix → IRC: {m['relayed']}/{m['sent']} relayed, {m['throughput_per_second']:g} msg/s; "
        f"other processes on the machine used {m['other_processes_cores']:.2f} of {st['cpus']} cores",
        head,
        row("end to end (Matrix send → IRC)", m["e2e_ms"]),
        row("baseline (Matrix send → appservice push)", m["baseline_push_ms"]),
        row("added by the bridge (per message)", m["added_ms"], target),
        row("  of which: push → archived (captured_at)", b["matrix_to_irc"]["push_to_archived"]),
        row("  of which: archived → seen on IRC", b["matrix_to_irc"]["archived_to_irc"]),
        row("Matrix send round trip (Alice's PUT /send)", m["matrix_send_rtt_ms"]),
        f"IRC → Matrix: {i['relayed']}/{i['sent']} relayed, {i['throughput_per_second']:g} msg/s; "
        f"other processes on the machine used {i['other_processes_cores']:.2f} of {st['cpus']} cores",
        head,
        row("end to end (IRC send → Olga's /sync)", i["e2e_sync_ms"]),
        row("baseline (Matrix send → /sync, phase 1)", i["baseline_sync_ms"]),
        row("added by the bridge (p50/p99 differences)", i["added_sync_ms"]),
        row("end to end (IRC send → appservice push)", i["e2e_push_ms"]),
        row("baseline (Matrix send → push, phase 1)", i["baseline_push_ms"]),
        row("added by the bridge (push; differences)", i["added_push_ms"]),
        row("  of which: IRC send → archived (captured_at)", b["irc_to_matrix"]["irc_send_to_archived"]),
        row("  of which: archived → push (incl. Synapse)", b["irc_to_matrix"]["archived_to_push"]),
        row(
            "interval between the bridge's Matrix sends",
            b["irc_to_matrix"]["interval_between_matrix_deliveries"],
        ),
        f"CPU ms per relayed message (/proc stat, {r['cpu_resolution_ms']:g} ms ticks)",
        f"  {'':<44} {'bridge':>9} {'synapse':>9} {'ngircd':>9} {'bench':>9}",
    ]
    for name, label in (("matrix_to_irc", "Matrix → IRC"), ("irc_to_matrix", "IRC → Matrix")):
        c = cpu[name]
        lines.append(
            f"  {label:<44} {c['bridge']:>9.2f} {c['synapse']:>9.2f} {c['ngircd']:>9.2f} {c['bench']:>9.2f}"
        )
    return "\n".join(lines)


class Measurable(Protocol):
    async def setup(self, stack: contextlib.AsyncExitStack) -> None: ...

    async def measure(self) -> dict[str, Any]: ...


async def in_workdir(
    args: argparse.Namespace, make: Callable[[argparse.Namespace, Path], Measurable], prefix: str
) -> dict[str, Any]:
    """Set up and measure a bench in a fresh work directory (kept with --keep)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        async with contextlib.AsyncExitStack() as stack:
            bench = make(args, root)
            await bench.setup(stack)
            return await bench.measure()
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every relay bench takes: stragglers' timeout, IRC flood control, output."""
    add = parser.add_argument
    add(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for stragglers after a phase (default 60)",
    )
    add("--flood-burst", type=int, default=10_000, help="the bridge's IRC flood_burst (default 10000)")
    add(
        "--flood-rate",
        type=float,
        default=10_000.0,
        help="the bridge's IRC flood_rate, lines/s (default 10000)",
    )
    add("--json", type=Path, help="also write the results as JSON to this file")
    add("--keep", action="store_true", help="keep the work directory (logs, archive)")


def run_and_report(
    args: argparse.Namespace,
    make: Callable[[argparse.Namespace, Path], Measurable],
    prefix: str,
    render: Callable[[dict[str, Any]], str],
) -> None:
    """Run the bench, print its table and wall time, and write --json."""
    began = time.monotonic()
    try:
        results = asyncio.run(in_workdir(args, make, prefix))
    except (RuntimeError, TimeoutError, subprocess.SubprocessError, aiohttp.ClientError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(1)
    results["settings"]["wall_seconds"] = round(time.monotonic() - began, 1)
    print(render(results))
    print(f"whole run: {results['settings']['wall_seconds']:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.relay",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second, each way (default 20)")
    parser.add_argument("--count", type=int, default=400, help="messages per direction (default 400)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="unmeasured messages each way first (default 5)"
    )
    add_common_arguments(parser)
    args = parser.parse_args()
    if args.rate <= 0 or args.count < 1:
        parser.error("--rate must be above 0 and --count at least 1")
    run_and_report(args, Bench, "switchboard-bench-", table)


if __name__ == "__main__":
    main()
