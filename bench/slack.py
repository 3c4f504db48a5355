"""What the Slack connector costs per message, receiving and sending, through the Slack emulator.

    .venv/bin/python bench/slack.py [--messages N]

The emulator runs in a child process (as Slack would be elsewhere), so this
process's CPU time (`time.process_time`) is the connector's own cost: Socket
Mode frames and JSON, conversion to bridge events, the acks, Web API calls and
dropping the echoes of its own posts. The sink answers at once: no archive cost
is in these numbers. The pure conversion costs are measured alone as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.connector import ConnectorContext, HttpServer  # noqa: E402
from bridge.model import Event, Outbound, Receipt, Sender  # noqa: E402
from bridge.text import Span, Text  # noqa: E402
from connectors.slack import SlackConnector  # noqa: E402
from connectors.slack.format import parse, render  # noqa: E402
from tests.fakes.slack import SlackEmulator  # noqa: E402
from tests.fakes.state import MemoryState  # noqa: E402

WIRE = "Hey <@{user}>, the *Q3 numbers* are in <https://corp.test/q3|the report> &amp; look _good_ {n}"


# -- the child process: an emulator with a small control endpoint ------------------------


async def serve_emulator() -> None:
    async with SlackEmulator(post_rate=None, ack_timeout=120.0) as emu:
        alice = emu.add_user("alice", "Alice Smith")
        bob = emu.add_user("bob", "Bob Jones")
        room = emu.add_channel("bench", [alice.id, bob.id])
        out_room = emu.add_channel("bench-out", [alice.id])

        async def post(request: web.Request) -> web.Response:
            first, count = int(request.query["first"]), int(request.query["count"])
            for n in range(first, first + count):
                emu.user_posts(room.id, alice.id, WIRE.format(user=bob.id, n=n))
            return web.json_response({"posted": count})

        control = HttpServer("127.0.0.1", 0, max_body=1024)
        control.app.router.add_post("/post", post)
        _, port = await control.start()
        info = {
            "control": f"http://127.0.0.1:{port}/post",
            "base_url": emu.base_url,
            "bot_token": emu.bot_token,
            "app_token": emu.app_token,
            "room": room.id,
            "out_room": out_room.id,
            "user": alice.id,
        }
        print(json.dumps(info), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent goes
        await control.stop()


# -- the measuring process -----------------------------------------------------------------


@dataclass
class CountingSink:
    count: int = 0
    target: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, n: int) -> None:
        self.count, self.target = 0, n
        self.done.clear()

    async def receive(self, event: Event) -> Receipt:
        self.count += 1
        if self.count >= self.target:
            self.done.set()
        return Receipt("archived", self.count)


@dataclass
class Measured:
    what: str
    n: int
    wall: float
    cpu: float

    def line(self) -> str:
        return (
            f"{self.what:<38} {self.n:>6} msgs {self.n / self.wall:>8.0f} msg/s"
            f"   CPU {self.cpu / self.n * 1e6:>7.1f} µs/msg"
        )


class Clock:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def result(self, what: str, n: int) -> Measured:
        return Measured(what, n, time.perf_counter() - self.wall, time.process_time() - self.cpu)


def pure(what: str, n: int, work: Callable[[], object]) -> Measured:
    clock = Clock()
    for _ in range(n):
        work()
    return clock.result(what, n)


async def measure(info: dict[str, Any], n: int) -> list[Measured]:
    sink = CountingSink()
    options = {k: info[k] for k in ("bot_token", "app_token")} | {"api_url": info["base_url"]}
    conn = SlackConnector(ConnectorContext("slack", options, MemoryState(), logging.getLogger("bench")))
    await conn.start(sink)
    results = []
    try:
        async with aiohttp.ClientSession() as http:

            async def receive(first: int, count: int) -> None:
                sink.expect(count)
                async with http.post(info["control"], params={"first": first, "count": count}) as resp:
                    resp.raise_for_status()
                await asyncio.wait_for(sink.done.wait(), 600)

            await receive(0, 50)  # warm up: names cached, connections open
            clock = Clock()
            await receive(50, n)
            results.append(clock.result("receive: Socket Mode → sink, acked", n))

        sender = Sender("matrix", "@bob:corp.test", "Bob Jones (Matrix)", "Bob Jones", "Matrix", "E2")
        text = Text(
            "the Q3 numbers are in the report",
            (Span("bold", 4, 14), Span("link", 22, 32, url="https://corp.test/q3")),
        )
        for i in range(50):
            await conn.send(Outbound(f"w{i}", i, info["out_room"], sender, "message", text))
        clock = Clock()
        for i in range(n):
            await conn.send(Outbound(f"b{i}", i, info["out_room"], sender, "message", text))
        results.append(clock.result("send: chat.postMessage, echo dropped", n))

        assert conn._inbound is not None
        inbound = conn._inbound
        event = {
            "type": "message",
            "channel": info["room"],
            "user": info["user"],
            "text": WIRE.format(user=info["user"], n=1),
            "ts": "1700000000.000100",
        }
        clock = Clock()
        for _ in range(n):
            await inbound.convert(event)
        results.append(clock.result("  receive part: event → Message", n))
    finally:
        await conn.stop()
    wire = WIRE.format(user="U0BOB", n=1)
    parsed = parse(wire, "slack")
    results.append(pure("  of which format.parse", n, lambda: parse(wire, "slack")))
    results.append(pure("  send part: format.render", n, lambda: render(parsed, "slack")))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulator:
        asyncio.run(serve_emulator())
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-emulator"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
        for result in asyncio.run(measure(info, args.messages)):
            print(result.line())
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()
