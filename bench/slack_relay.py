"""Slack relay benchmark: Slack → IRC messages/s and bridge CPU per message, Slack → Matrix latency.

Run from the repository root:

    .venv/bin/python -m bench.slack_relay [--rate 100] [--count 2000] [--json slack_relay.json]

It starts its own Synapse, its own ngircd (penalties off), the Slack emulator
(tests/fakes/slack) in a child process of its own, and `switchboard run` as a
subprocess (SQLite archive; IRC flood control set high so that it is not what is
measured). The emulator has no chat.postMessage limit (`post_rate=None`, no 429s)
and Slack's own 3 s ack timeout (--ack-timeout). It is one process, so its CPU is
neither the bridge's nor the bench's. One bridge serves two bridged rooms:

- `slack-irc`: Slack channel bench-irc ↔ IRC #bench. No Matrix room, so Synapse
  is not in this path. `switchboard run` cannot run without one, though: the
  `matrix` section is required (bridge/config.py) and the Matrix connector
  registers its bot user with the homeserver at start. So Synapse runs, idle,
  during the Slack → IRC phases (its CPU is shown, to prove it idle).
- `slack-matrix`: Slack channel bench-matrix ↔ Matrix room #bench:corp.test.

Carol (a Slack user of the emulator, in the directory as Carol Bench) posts every
message: the emulator's `user_posts()`, called at each message's slot of a
steady, open-loop rate by the emulator process itself (so a slow bridge never
delays the next post), stamped with time.time() just before the call. That call
stores the message and queues its `events_api` envelope on the bridge's Socket
Mode socket. Phases, in order:

1. Idle: every process's CPU over a few seconds with no traffic (what the
   bridge spends doing nothing: Socket Mode pings, checkpoint timer).
2. Slack → IRC, steady: --count messages at --rate msg/s into bench-irc; Bob (a
   raw IRC socket, relay.TimedIrcClient) stamps each relayed PRIVMSG. Reported:
   relayed/lost/doubled (on IRC and in the archive), achieved post rate,
   throughput (relayed messages / first post → last IRC arrival), post → IRC
   latency, and CPU (user + system, /proc/<pid>/stat, from the first post until
   the last message was seen) of every process divided by the messages relayed.
   Bridge CPU per message is the issue's number: each of these messages was
   received over Socket Mode, archived (one SQLite transaction with its outbox
   row, then acked to Slack), sent to IRC and its delivery recorded.
3. Slack → Matrix: first Synapse's own baseline (Alice, matrix-nio, sends
   --matrix-count messages at --matrix-rate into the room), then Carol posts
   --matrix-count messages at --matrix-rate into bench-matrix and the bridge
   relays them as her ghost. The bench runs a second appservice in the room
   (relay.ObserverAppservice), to which Synapse pushes every event at the same
   moment it pushes it to the bridge. Per message: post → pushed to the observer
   (end to end), and Olga's /sync long-poll as a second observer. Added by the
   bridge = end to end − Synapse's baseline (send → push of Alice's messages,
   same room, same rate), per percentile since they are different messages. The
   split uses the archive: captured_at (stamped by the bridge just before its
   commit) gives post → archived (receiving: Socket Mode, router, archive) and
   archived → pushed (the delivery worker's PUT to Synapse plus Synapse's own
   send → push). The emulator's ack time gives post → acked (after the commit).
4. Slack → IRC, stepped (last, so an overload disturbs nothing else): rates from
   --rate × --step-factor upwards, each step max(--count, rate × --step-seconds)
   messages, until a step is not sustained: a message lost or doubled, an event
   redelivered by the emulator (an ack later than --ack-timeout), post → IRC p99
   above --max-lag-ms or a throughput (relayed / first post → last arrival) below
   95% of the posted rate (a backlog growing), or the emulator itself not posting at
   the offered rate (then the limit found is the emulator's, and it says so).
   The sustained maximum is the highest offered rate that passed; the throughput
   of the first failing step (relayed / first post → last arrival, with a backlog)
   is the bridge's capacity at saturation.

Machine busyness: the cores used by processes outside the bench's own (other
engineers' tests on a shared 2-core machine) are reported per phase, from
/proc/stat; numbers measured beside them are slower than on an idle machine.
All times are wall-clock (time.time()) because captured_at and the emulator's
stamps are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from nio import MessageDirection, RoomMessagesResponse

from bench.relay import (
    ALIAS,
    CHANNEL,
    CLK_TCK,
    FILLER,
    RELAY_NICK,
    SERVER_NAME,
    Bench,
    Phase,
    add_common_arguments,
    code_version,
    cpu_seconds,
    cpu_snapshot,
    epoch,
    event_token,
    machine_busy_seconds,
    minus,
    paced,
    run_and_report,
    stats_ms,
    stats_row,
    throughput,
    token_of,
    wait_seen,
)
from bridge.httpserver import HttpServer
from connectors.matrix.config import DEFAULT_GHOST_PREFIX
from connectors.matrix.ghosts import Ghosts
from tests.fakes.slack import SlackEmulator

ROOT = Path(__file__).resolve().parent.parent
TARGET_CPU_US = 150.0  # issue 3: bridge CPU per relayed and archived message
CHANNELS = ("irc", "matrix")  # the emulator's channels bench-irc and bench-matrix
PROCESSES = ("bridge", "emulator", "ngircd", "synapse", "bench")
# The bridge's CPU split: its main thread (the event loop) and the rest (the archive's writer thread).
BRIDGE_SPLIT = ("bridge_loop", "bridge_threads")
IDLE_SECONDS = 3.0


# -- the emulator's process ----------------------------------------------------------------


async def serve_emulator(ack_timeout: float) -> None:
    """The Slack emulator plus a control endpoint; prints how to reach both, runs until stdin closes."""
    async with SlackEmulator(post_rate=None, ack_timeout=ack_timeout) as emu:
        carol = emu.add_user("carol", "carol.w")
        channels = {name: emu.add_channel(f"bench-{name}", [carol.id]).id for name in CHANNELS}

        async def post(request: web.Request) -> web.Response:
            """Carol posts each token at its slot of a steady rate; answers with when each was posted."""
            body = await request.json()
            channel = channels[body["channel"]]
            sent: dict[str, float] = {}

            async def one(token: str) -> None:
                sent[token] = time.time()
                emu.user_posts(channel, carol.id, f"{token} {FILLER}")

            await paced(list(body["tokens"]), float(body["rate"]), one)
            return web.json_response({"sent": sent})

        async def stats(request: web.Request) -> web.Response:
            """Delivery counters; with `kind`, also per token of that kind: ack time and attempts."""
            events = list(emu.delivery.pending.values())
            answer: dict[str, Any] = {
                "events": len(events),
                "in_flight": sum(p.state in ("new", "waiting", "in_flight") for p in events),
                "dropped": sum(p.state == "dropped" for p in events),
                "redelivered": sum(e.retry_attempt > 0 for e in emu.delivery.envelopes.values()),
                "unknown_acks": len(emu.delivery.unknown_acks),
                "sockets_opened": emu.connections_opened,
                "bot_posts": {name: len(emu.posted(cid)) for name, cid in channels.items()},
            }
            kind = request.query.get("kind")
            if kind:
                acked_at: dict[str, float] = {}
                attempts: dict[str, int] = {}
                dropped: list[str] = []
                for p in events:
                    token = token_of(str(p.event.get("text", "")))
                    if token is None or f"-{kind}-" not in token or p.event.get("user") != carol.id:
                        continue
                    acks = [e.acked_at for e in p.attempts if e.acked_at is not None]
                    if acks:
                        acked_at[token] = min(acks)
                    attempts[token] = len(p.attempts)
                    if p.state == "dropped":
                        dropped.append(token)
                answer |= {"acked_at": acked_at, "attempts": attempts, "dropped_tokens": dropped}
            return web.json_response(answer)

        control = HttpServer("127.0.0.1", 0, max_body=64 * 1024 * 1024)
        control.app.router.add_post("/post", post)
        control.app.router.add_get("/stats", stats)
        _, port = await control.start()
        info = {
            "control": f"http://127.0.0.1:{port}",
            "api_url": emu.base_url,
            "bot_token": emu.bot_token,
            "app_token": emu.app_token,
            "carol": carol.id,
            "channels": channels,
        }
        print(json.dumps(info), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the bench goes
        await control.stop()


@dataclass
class EmulatorChild:
    """The bench's handle on the emulator's process: start, stop, and its control endpoint."""

    ack_timeout: float
    proc: subprocess.Popen[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    _http: aiohttp.ClientSession | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.slack_relay",
                "--serve-emulator",
                "--ack-timeout",
                str(self.ack_timeout),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"the Slack emulator's process exited with {self.proc.returncode}")
        self.info = json.loads(line)

    def stop(self) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    async def open(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def post(self, channel: str, tokens: list[str], rate: float) -> dict[str, float]:
        """Carol posts `tokens` at `rate` per second into bench-<channel>; when each was posted."""
        assert self._http is not None
        body = {"channel": channel, "tokens": tokens, "rate": rate}
        async with self._http.post(f"{self.info['control']}/post", json=body) as reply:
            reply.raise_for_status()
            sent: dict[str, float] = (await reply.json())["sent"]
            return sent

    async def stats(self, kind: str | None = None) -> dict[str, Any]:
        assert self._http is not None
        params = {"kind": kind} if kind else {}
        async with self._http.get(f"{self.info['control']}/stats", params=params) as reply:
            reply.raise_for_status()
            answer: dict[str, Any] = await reply.json()
            return answer

    async def settle(self, timeout: float) -> None:
        """Until no event waits for its ack (so a phase starts without the last one's redeliveries)."""
        deadline = time.monotonic() + timeout
        while (left := (await self.stats())["in_flight"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if left:
            print(f"  warning: {left} Slack events still unacknowledged after {timeout:.0f}s")


# -- the bench -------------------------------------------------------------------------------


@dataclass
class SlackPhase:
    """A phase whose messages Carol posted, with what the emulator knew of their delivery."""

    phase: Phase
    channel: str
    rate: float
    acked_at: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    @property
    def redelivered(self) -> int:
        return sum(n - 1 for n in self.attempts.values())

    def post_rate(self) -> float:
        """The rate the emulator really posted at (below the offered rate: the emulator was the limit)."""
        stamps = sorted(self.phase.sent.values())
        if len(stamps) < 2 or stamps[-1] <= stamps[0]:
            return 0.0
        return round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 1)


class SlackBench(Bench):
    """relay.Bench's servers, users, observers and bridge, plus the Slack emulator and two bridged rooms."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        super().__init__(args, root)
        self.emulator = EmulatorChild(args.ack_timeout)

    async def setup(self, stack: contextlib.AsyncExitStack) -> None:
        began = time.monotonic()
        stack.callback(self.emulator.stop)
        await asyncio.to_thread(self.emulator.start)
        await self.emulator.open()
        stack.push_async_callback(self.emulator.close)
        print(
            f"Slack emulator on {self.emulator.info['api_url']} (pid {self.emulator.pid}, no post limit, "
            f"ack timeout {self.args.ack_timeout:g}s) in {time.monotonic() - began:.1f}s"
        )
        await super().setup(stack)  # the bridge is stopped before the emulator (the stack unwinds)

    def _bridge_config(self) -> dict[str, Any]:
        config = super()._bridge_config()
        info = self.emulator.info
        config["networks"]["slack"] = {
            "type": "slack",
            "bot_token": info["bot_token"],
            "app_token": info["app_token"],
            "api_url": info["api_url"],
        }
        config["rooms"] = [
            {"id": "slack-irc", "slack": info["channels"]["irc"], "irc": CHANNEL},
            {"id": "slack-matrix", "matrix": f"#{ALIAS}:{SERVER_NAME}", "slack": info["channels"]["matrix"]},
        ]
        return config

    def _directory(self) -> dict[str, Any]:
        directory = super()._directory()
        carol = {
            "employee_id": "E0003",
            "name": "Carol Bench",
            "department": "Trading",
            "handles": {"slack": self.emulator.info["carol"]},
        }
        return {**directory, "people": [*directory["people"], carol]}

    def pids(self) -> dict[str, int]:
        return super().pids() | {"emulator": self.emulator.pid}

    @property
    def ghost(self) -> str:
        return Ghosts(DEFAULT_GHOST_PREFIX, SERVER_NAME).mxid("slack", self.emulator.info["carol"])

    # -- phases ----------------------------------------------------------------------

    async def slack_phase(
        self,
        name: str,
        kind: str,
        channel: str,
        count: int,
        rate: float,
        seen_by: dict[str, dict[str, float]],
    ) -> SlackPhase:
        """Carol posts `count` messages at `rate` into bench-<channel>, measured until all were seen."""
        tokens = [self.token(kind, i) for i in range(count)]

        async def drive(result: Phase) -> None:
            result.sent.update(await self.emulator.post(channel, tokens, rate))

        # The bridge's main thread runs the event loop (connectors, router, delivery); the archive
        # writes on a thread of its own (bridge.archive.AsyncArchive).
        bridge = self.pids()["bridge"]
        loop_before = cpu_seconds(bridge, bridge)
        phase = await self.measured(name, tokens, drive, seen_by)
        phase.cpu["bridge_loop"] = cpu_seconds(bridge, bridge) - loop_before
        phase.cpu["bridge_threads"] = phase.cpu["bridge"] - phase.cpu["bridge_loop"]
        await self.emulator.settle(self.args.timeout)
        stats = await self.emulator.stats(kind)
        return SlackPhase(phase, channel, rate, stats["acked_at"], stats["attempts"], stats["dropped_tokens"])

    async def idle(self) -> dict[str, float]:
        """CPU ms per second of every process while nothing is sent, and cores used by the others."""
        pids = self.pids()
        before, busy_before = cpu_snapshot(pids), machine_busy_seconds()
        await asyncio.sleep(IDLE_SECONDS)
        after, busy_after = cpu_snapshot(pids), machine_busy_seconds()
        used = {name: after[name] - before[name] for name in pids}
        others = max(0.0, busy_after - busy_before - sum(used.values())) / IDLE_SECONDS
        return {name: round(s * 1000 / IDLE_SECONDS, 2) for name, s in used.items()} | {
            "other_processes_cores": round(others, 2)
        }

    async def warm_up(self) -> None:
        """First-use costs (ghost registration and join, connections, caches) before anything is measured."""
        assert self.bob is not None
        n, push = self.args.warmup, self.observer.arrivals
        for kind, channel, seen in (("ws", "irc", self.bob.arrivals), ("wl", "matrix", push)):
            tokens = [self.token(kind, i) for i in range(n)]
            await self.emulator.post(channel, tokens[:1], 1.0)  # the first alone: the ghost is created
            await wait_seen(tokens[:1], {channel: seen}, 30)
            await self.emulator.post(channel, tokens[1:], 20.0)
            await wait_seen(tokens, {channel: seen}, 30)
        scratch = Phase("warm-up", [], {}, {}, 0.0)
        for i in range(n):
            await self.matrix_send(self.token("wm", i), scratch)
        await wait_seen([self.token("wm", i) for i in range(n)], {"push": push}, 30)
        if scratch.send_errors:
            raise RuntimeError(f"warm-up sends failed: {scratch.send_errors[:3]}")
        await self.emulator.settle(30)

    def sustained(self, sp: SlackPhase) -> tuple[bool, str]:
        """Whether a Slack → IRC phase kept up with its rate, and if not, why."""
        assert self.bob is not None
        irc, tokens = self.bob.arrivals, sp.phase.tokens
        lost = sum(t not in irc for t in tokens)
        doubled = sum(n > 1 for n in self.irc_counts(tokens).values())
        p99 = stats_ms([irc[t] - sp.phase.sent[t] for t in tokens if t in irc and t in sp.phase.sent])
        if sp.post_rate() < 0.95 * sp.rate:
            return False, f"the emulator posted at only {sp.post_rate():g} msg/s: the limit is the emulator's"
        if lost or doubled:
            return False, f"{lost} lost, {doubled} doubled on IRC"
        if sp.redelivered or sp.dropped:
            return False, f"{sp.redelivered} redelivered by Slack (acks over {self.args.ack_timeout:g}s)"
        if p99.get("p99", 0.0) > self.args.max_lag_ms:
            return False, f"post → IRC p99 {p99['p99']:.0f} ms > {self.args.max_lag_ms:g} ms: a backlog"
        relayed = throughput(sp.phase, irc)
        if relayed < 0.95 * sp.post_rate():
            return False, f"relayed {relayed:g} msg/s < 95% of the posted rate: a backlog"
        return True, "ok"

    async def steps(self) -> list[SlackPhase]:
        assert self.bob is not None
        done: list[SlackPhase] = []
        rate = self.args.rate * self.args.step_factor
        while len(done) < self.args.max_steps and rate <= self.args.max_rate:
            count = min(99_999, max(self.args.count, round(rate * self.args.step_seconds)))
            print(f"Slack → IRC step {len(done) + 1}: {count} messages at {rate:g} msg/s")
            step = await self.slack_phase(
                f"step{len(done) + 1}",
                f"st{len(done) + 1:02d}",
                "irc",
                count,
                rate,
                {"IRC": self.bob.arrivals},
            )
            done.append(step)
            ok, why = self.sustained(step)
            print(f"  {'sustained' if ok else 'not sustained: ' + why}")
            if not ok:
                break
            rate = round(rate * self.args.step_factor, 1)
        return done

    async def measure(self) -> dict[str, Any]:
        assert self.bob is not None and self.watcher is not None
        print(f"warm-up: {self.args.warmup} messages per path")
        await self.warm_up()
        print(f"idle: {IDLE_SECONDS:g}s")
        idle = await self.idle()
        irc = {"IRC": self.bob.arrivals}
        print(f"Slack → IRC: {self.args.count} messages at {self.args.rate:g} msg/s")
        steady = await self.slack_phase("slack_to_irc", "s2i", "irc", self.args.count, self.args.rate, irc)
        ok, why = self.sustained(steady)
        print(f"  {'sustained' if ok else 'not sustained: ' + why}")
        rate, count = self.args.matrix_rate, self.args.matrix_count
        push_and_sync = {"observer push": self.observer.arrivals, "/sync": self.watcher.arrivals}
        print(f"Matrix baseline (Alice → Synapse → push): {count} messages at {rate:g} msg/s")
        baseline = await self.phase(
            "matrix_baseline", "mb", self.matrix_send, push_and_sync, count=count, rate=rate
        )
        print(f"Slack → Matrix: {count} messages at {rate:g} msg/s")
        s2m = await self.slack_phase("slack_to_matrix", "s2m", "matrix", count, rate, push_and_sync)
        steps = await self.steps() if self.args.max_steps > 0 else []
        matrix_counts = await self.matrix_counts()
        records = await asyncio.to_thread(self.archive_records)
        emulator = await self.emulator.stats()
        return self.slack_results(idle, steady, baseline, s2m, steps, matrix_counts, records, emulator)

    # -- counting what arrived --------------------------------------------------------

    def irc_counts(self, tokens: Iterable[str]) -> Counter[str]:
        """How many relayed lines carried each token (the arrivals keep only the first)."""
        assert self.bob is not None
        wanted = set(tokens)
        found = (
            token_of(line.text)
            for line in self.bob.lines
            if line.command == "PRIVMSG" and line.nick == RELAY_NICK and line.target.lower() == CHANNEL
        )
        return Counter(t for t in found if t in wanted)

    async def matrix_counts(self) -> Counter[str]:
        """How many events of Carol's ghost carry each token in the room (pushes keep only the first)."""
        assert self.olga is not None
        counts: Counter[str] = Counter()
        start: str | None = None
        for _ in range(100):
            resp = await self.olga.room_messages(
                self.room_id, start, direction=MessageDirection.back, limit=1000
            )
            if not isinstance(resp, RoomMessagesResponse):
                print(f"  warning: could not read the Matrix room back, so no duplicate count: {resp}")
                return counts
            for event in resp.chunk:
                token = event_token(event.source)
                if token is not None and event.source.get("sender") == self.ghost:
                    counts[token] += 1
            if not resp.chunk or not resp.end or resp.end == start:
                break
            start = resp.end
        return counts

    # -- results ---------------------------------------------------------------------

    def slack_results(
        self,
        idle: dict[str, float],
        steady: SlackPhase,
        baseline: Phase,
        s2m: SlackPhase,
        steps: list[SlackPhase],
        matrix_counts: Counter[str],
        records: list[dict[str, Any]],
        emulator: dict[str, Any],
    ) -> dict[str, Any]:
        archived: dict[str, float] = {}
        archived_n: Counter[str] = Counter()
        for r in records:
            if r.get("kind") == "message" and r.get("network") == "slack" and r.get("captured_at"):
                token = token_of(r.get("text") or "")
                if token is not None:
                    archived_n[token] += 1
                    archived.setdefault(token, epoch(r["captured_at"]))
        to_irc = [self.irc_summary(sp, archived, archived_n) for sp in (steady, *steps)]
        sustained = [s for s in to_irc if s["sustained"]]
        failed = next((s for s in to_irc[1:] if not s["sustained"]), None)
        return {
            "settings": {
                "rate_per_second": self.args.rate,
                "count": self.args.count,
                "matrix_rate_per_second": self.args.matrix_rate,
                "matrix_count": self.args.matrix_count,
                "warmup": self.args.warmup,
                "step_factor": self.args.step_factor,
                "step_seconds": self.args.step_seconds,
                "max_steps": self.args.max_steps,
                "max_lag_ms": self.args.max_lag_ms,
                "slack_ack_timeout_seconds": self.args.ack_timeout,
                "slack_post_limit": None,
                "irc_flood_burst": self.args.flood_burst,
                "irc_flood_rate": self.args.flood_rate,
                "ngircd_penalties": False,
                "archive": "sqlite (WAL, synchronous=FULL)",
                "synapse_in_slack_to_irc": "running, idle (switchboard run requires the matrix section)",
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "code": code_version(),
            },
            "idle_cpu_ms_per_second": idle,
            "slack_to_irc": to_irc[0],
            "slack_to_irc_steps": to_irc[1:],
            "slack_to_irc_max": {
                "sustained_rate_per_second": max((s["rate_per_second"] for s in sustained), default=0.0),
                "sustained_throughput_per_second": max(
                    (s["throughput_per_second"] for s in sustained), default=0.0
                ),
                "saturated_throughput_per_second": failed["throughput_per_second"] if failed else None,
                "limit": failed["verdict"] if failed else "no step failed: raise --max-rate or --max-steps",
            },
            "slack_to_matrix": self.matrix_summary(baseline, s2m, matrix_counts, archived, archived_n),
            "emulator_totals": emulator,
            "cpu_resolution_ms": 1000 / CLK_TCK,
        }

    def irc_summary(
        self, sp: SlackPhase, archived: Mapping[str, float], archived_n: Counter[str]
    ) -> dict[str, Any]:
        assert self.bob is not None
        irc, phase = self.bob.arrivals, sp.phase
        tokens = phase.tokens
        relayed = [t for t in tokens if t in irc]
        counts = self.irc_counts(tokens)
        ok, why = self.sustained(sp)
        return {
            "name": phase.name,
            "rate_per_second": sp.rate,
            "posted_rate_per_second": sp.post_rate(),
            "sent": len(tokens),
            "relayed": len(relayed),
            "lost": len(tokens) - len(relayed),
            "doubled_on_irc": sum(n > 1 for n in counts.values()),
            "archived": sum(t in archived_n for t in tokens),
            "doubled_in_archive": sum(archived_n[t] > 1 for t in tokens),
            "redelivered_by_slack": sp.redelivered,
            "dropped_by_slack": len(sp.dropped),
            "sustained": ok,
            "verdict": why,
            "seconds": round(phase.seconds, 2),
            "throughput_per_second": throughput(phase, irc),
            "other_processes_cores": round(phase.other_cores, 2),
            "e2e_ms": stats_ms([irc[t] - phase.sent[t] for t in relayed]),
            "post_to_acked_ms": stats_ms(
                [sp.acked_at[t] - phase.sent[t] for t in tokens if t in sp.acked_at]
            ),
            "post_to_archived_ms": stats_ms([archived[t] - phase.sent[t] for t in tokens if t in archived]),
            "archived_to_irc_ms": stats_ms([irc[t] - archived[t] for t in relayed if t in archived]),
            "cpu_us_per_message": per_message(phase, len(relayed), 1e6),
            "cores_used": {name: round(s / phase.seconds, 3) for name, s in phase.cpu.items()},
            "target_cpu_us": TARGET_CPU_US,
            "target_met": bool(relayed) and phase.cpu["bridge"] * 1e6 / len(relayed) <= TARGET_CPU_US,
        }

    def matrix_summary(
        self,
        baseline: Phase,
        sp: SlackPhase,
        matrix_counts: Counter[str],
        archived: Mapping[str, float],
        archived_n: Counter[str],
    ) -> dict[str, Any]:
        assert self.watcher is not None
        push, sync, phase = self.observer.arrivals, self.watcher.arrivals, sp.phase
        tokens = phase.tokens
        pushed = [t for t in tokens if t in push]
        strangers = sorted(
            {self.watcher.senders[t] for t in tokens if t in self.watcher.senders} - {self.ghost}
        )
        e2e_push = stats_ms([push[t] - phase.sent[t] for t in pushed])
        e2e_sync = stats_ms([sync[t] - phase.sent[t] for t in tokens if t in sync])
        base_push = stats_ms([push[t] - baseline.sent[t] for t in baseline.tokens if t in push])
        base_sync = stats_ms([sync[t] - baseline.sent[t] for t in baseline.tokens if t in sync])
        return {
            "sent": len(tokens),
            "relayed": len(pushed),
            "lost": len(tokens) - len(pushed),
            "doubled_in_room": sum(matrix_counts[t] > 1 for t in tokens),
            "in_room": sum(t in matrix_counts for t in tokens),
            "other_senders": strangers,
            "archived": sum(t in archived_n for t in tokens),
            "doubled_in_archive": sum(archived_n[t] > 1 for t in tokens),
            "redelivered_by_slack": sp.redelivered,
            "rate_per_second": sp.rate,
            "posted_rate_per_second": sp.post_rate(),
            "seconds": round(phase.seconds, 2),
            "throughput_per_second": throughput(phase, push),
            "other_processes_cores": round(phase.other_cores, 2),
            "baseline_other_processes_cores": round(baseline.other_cores, 2),
            "baseline_send_errors": len(baseline.send_errors),
            "e2e_push_ms": e2e_push,
            "baseline_push_ms": base_push,
            "added_push_ms": minus(e2e_push, base_push),
            "e2e_sync_ms": e2e_sync,
            "baseline_sync_ms": base_sync,
            "added_sync_ms": minus(e2e_sync, base_sync),
            "post_to_acked_ms": stats_ms(
                [sp.acked_at[t] - phase.sent[t] for t in tokens if t in sp.acked_at]
            ),
            "post_to_archived_ms": stats_ms([archived[t] - phase.sent[t] for t in tokens if t in archived]),
            "archived_to_push_ms": stats_ms([push[t] - archived[t] for t in pushed if t in archived]),
            "cpu_ms_per_message": per_message(phase, len(pushed), 1e3),
            "baseline_cpu_ms_per_message": per_message(baseline, len(baseline.sent), 1e3),
        }


def per_message(phase: Phase, count: int, unit: float) -> dict[str, float]:
    """Each process's CPU over the phase divided by `count` messages, in 1/`unit` seconds."""
    names = (*PROCESSES, *BRIDGE_SPLIT)
    return {name: round(phase.cpu[name] * unit / max(1, count), 3) for name in names if name in phase.cpu}


def table(r: dict[str, Any]) -> str:
    st, s, m, mx = r["settings"], r["slack_to_irc"], r["slack_to_matrix"], r["slack_to_irc_max"]
    head = f"  {'':<44} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"
    cpu_head = f"  {'':<44}" + "".join(f" {name:>9}" for name in PROCESSES)

    def cpu_row(label: str, values: Mapping[str, float]) -> str:
        return f"  {label:<44}" + "".join(f" {values.get(name, 0.0):>9.3f}" for name in PROCESSES)

    def split(label: str, values: Mapping[str, float], unit: str) -> str:
        loop, threads = (values.get(name, 0.0) for name in BRIDGE_SPLIT)
        return f"  {label}: event-loop thread {loop:.3f} {unit}, other threads (archive writer) {threads:.3f} {unit}"

    def counts(x: dict[str, Any]) -> str:
        return (
            f"{x['relayed']}/{x['sent']} relayed, {x['lost']} lost, "
            f"{x.get('doubled_on_irc', x.get('doubled_in_room', 0))} doubled, {x['archived']} archived "
            f"({x['doubled_in_archive']} twice), {x['redelivered_by_slack']} redelivered by Slack"
        )

    target = f"target ≤ {TARGET_CPU_US:g} µs: {'met' if s['target_met'] else 'MISSED'}"
    lines = [
        "",
        f"Slack emulator: no post limit, ack timeout {st['slack_ack_timeout_seconds']:g}s; IRC flood control "
        f"flood_burst={st['irc_flood_burst']}, flood_rate={st['irc_flood_rate']:g}/s (not measured); "
        f"ngircd penalties off; SQLite archive; Synapse running but idle in Slack → IRC; code {st['code']}",
        cpu_head,
        cpu_row("idle: CPU ms per second", r["idle_cpu_ms_per_second"])
        + f"   (other processes: {r['idle_cpu_ms_per_second']['other_processes_cores']:.2f} cores)",
        "",
        f"Slack → IRC, steady: {s['sent']} messages at {s['rate_per_second']:g} msg/s "
        f"(posted at {s['posted_rate_per_second']:g}); {counts(s)}",
        f"  throughput {s['throughput_per_second']:g} msg/s, {'sustained' if s['sustained'] else s['verdict']}; "
        f"other processes on the machine used {s['other_processes_cores']:.2f} of {st['cpus']} cores",
        head,
        stats_row("end to end (Slack post → IRC)", s["e2e_ms"]),
        stats_row("  post → archived (captured_at)", s["post_to_archived_ms"]),
        stats_row("  archived → seen on IRC", s["archived_to_irc_ms"]),
        stats_row("post → acked to Slack (emulator)", s["post_to_acked_ms"]),
        f"  CPU µs per relayed+archived message (/proc stat, {r['cpu_resolution_ms']:g} ms ticks)",
        cpu_head,
        cpu_row("Slack → IRC, steady", s["cpu_us_per_message"]) + f"   bridge {target}",
        cpu_row("cores used", s["cores_used"]),
        split("bridge", s["cpu_us_per_message"], "µs"),
    ]
    if r["slack_to_irc_steps"]:
        lines += [
            "",
            f"Slack → IRC, stepped (≥ {st['step_seconds']:g}s each; sustained = nothing lost, doubled or "
            f"redelivered, p99 ≤ {st['max_lag_ms']:g} ms, throughput ≥ 95% of the posted rate)",
            f"  {'offered':>8} {'posted':>8} {'thru':>8} {'lost':>5} {'dbl':>4} {'redlv':>5} {'p50 ms':>9} "
            f"{'p99 ms':>9} {'bridge µs':>10} {'loop µs':>8} {'br cores':>8} {'emu cores':>9} {'others':>6}  verdict",
        ]
        for x in r["slack_to_irc_steps"]:
            e = x["e2e_ms"]
            lines.append(
                f"  {x['rate_per_second']:>8g} {x['posted_rate_per_second']:>8g} {x['throughput_per_second']:>8g} "
                f"{x['lost']:>5} {x['doubled_on_irc']:>4} {x['redelivered_by_slack']:>5} "
                f"{e.get('p50', 0.0):>9.2f} {e.get('p99', 0.0):>9.2f} {x['cpu_us_per_message']['bridge']:>10.1f} "
                f"{x['cpu_us_per_message']['bridge_loop']:>8.1f} "
                f"{x['cores_used']['bridge']:>8.2f} {x['cores_used']['emulator']:>9.2f} "
                f"{x['other_processes_cores']:>6.2f}  {x['verdict']}"
            )
        sat = mx["saturated_throughput_per_second"]
        lines.append(
            f"  sustained maximum: {mx['sustained_rate_per_second']:g} msg/s offered "
            f"({mx['sustained_throughput_per_second']:g} relayed/s); at saturation "
            f"{'-' if sat is None else f'{sat:g}'} msg/s; limit: {mx['limit']}"
        )
    lines += [
        "",
        f"Slack → Matrix: {m['sent']} messages at {m['rate_per_second']:g} msg/s; {counts(m)}",
        f"  throughput {m['throughput_per_second']:g} msg/s; other processes on the machine used "
        f"{m['other_processes_cores']:.2f} of {st['cpus']} cores (baseline: {m['baseline_other_processes_cores']:.2f})"
        + (f"; OTHER SENDERS {m['other_senders']}" if m["other_senders"] else ""),
        head,
        stats_row("end to end (Slack post → appservice push)", m["e2e_push_ms"]),
        stats_row("baseline (Matrix send → push, Alice)", m["baseline_push_ms"]),
        stats_row("added by the bridge (p50/p99 differences)", m["added_push_ms"]),
        stats_row("  post → archived (captured_at)", m["post_to_archived_ms"]),
        stats_row("  archived → push (bridge PUT + Synapse)", m["archived_to_push_ms"]),
        stats_row("post → acked to Slack (emulator)", m["post_to_acked_ms"]),
        stats_row("end to end (Slack post → Olga's /sync)", m["e2e_sync_ms"]),
        stats_row("baseline (Matrix send → /sync, Alice)", m["baseline_sync_ms"]),
        stats_row("added by the bridge (/sync; differences)", m["added_sync_ms"]),
        "  CPU ms per message",
        cpu_head,
        cpu_row("Slack → Matrix", m["cpu_ms_per_message"]),
        split("  bridge", m["cpu_ms_per_message"], "ms"),
        cpu_row("Matrix baseline (Alice; bridge relays to Slack)", m["baseline_cpu_ms_per_message"]),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.slack_relay",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--rate", type=float, default=100.0, help="Slack → IRC steady rate, msg/s (default 100)")
    add("--count", type=int, default=2000, help="Slack → IRC messages, and the least per step (default 2000)")
    add(
        "--matrix-rate", type=float, default=10.0, help="Slack → Matrix and baseline rate, msg/s (default 10)"
    )
    add("--matrix-count", type=int, default=200, help="Slack → Matrix and baseline messages (default 200)")
    add("--step-factor", type=float, default=1.5, help="each step's rate over the last one's (default 1.5)")
    add("--step-seconds", type=float, default=5.0, help="the least duration of a step (default 5)")
    add("--max-steps", type=int, default=10, help="steps at most; 0: no stepped phase (default 10)")
    add("--max-rate", type=float, default=20_000.0, help="no step above this rate (default 20000)")
    add("--max-lag-ms", type=float, default=500.0, help="a step's post → IRC p99 bound (default 500)")
    add("--ack-timeout", type=float, default=3.0, help="Slack's redelivery timeout, seconds (default 3)")
    add("--warmup", type=int, default=20, help="unmeasured messages per path first (default 20)")
    add_common_arguments(parser)
    add("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulator:
        asyncio.run(serve_emulator(args.ack_timeout))
        return
    if min(args.rate, args.matrix_rate) <= 0 or min(args.count, args.matrix_count, args.warmup) < 1:
        parser.error("rates must be above 0, counts and --warmup at least 1")
    if args.count > 99_999 or args.matrix_count > 99_999 or args.step_factor <= 1:
        parser.error("counts are at most 99999 (five-digit tokens) and --step-factor above 1")
    run_and_report(args, SlackBench, "switchboard-bench-slack-", table)


if __name__ == "__main__":
    main()
