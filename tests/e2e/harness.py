"""The `switchboard` command as an admin runs it, and real users around it.

`BridgeProcess` runs `switchboard run -c FILE` in a subprocess (so it can be
killed with SIGKILL like a real crash); `MatrixUser` is a person on Matrix
using matrix-nio against the real Synapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
import yaml
from nio import (
    AsyncClient,
    AsyncClientConfig,
    MessageDirection,
    RoomCreateResponse,
    RoomPreset,
    RoomVisibility,
)

from tests.servers.synapse import SynapseSession


def emulator_network(emu: Any, **extra: Any) -> dict[str, Any]:
    """A Slack network on the emulator (`tests.fakes.slack.SlackEmulator`), over Socket Mode."""
    return {
        "type": "slack",
        "bot_token": emu.bot_token,
        "app_token": emu.app_token,
        "api_url": emu.base_url,
        "ping_interval": 1.0,
        **extra,
    }


def ngircd_network(port: int, relay: str, **extra: Any) -> dict[str, Any]:
    """An IRC network on ngircd, which has no services accounts: senders are mapped by nick."""
    return {
        "type": "irc",
        "host": "127.0.0.1",
        "port": port,
        "nick": relay,
        "identify": "nick",
        "flood_rate": 50.0,
        **extra,
    }


def irc_matrix_config(
    synapse: SynapseSession, irc_port: int, alias: str, channel: str, relay: str, archive_url: str
) -> dict[str, Any]:
    """A bridge config linking one Matrix room to one IRC channel, as an admin writes it."""
    return {
        "matrix": synapse.matrix_options(),
        "networks": {"irc": ngircd_network(irc_port, relay, flood_burst=50)},
        "directory": {"type": "yaml", "path": "directory.yaml", "unmapped": "deny"},
        "archive": {"url": archive_url},
        "rooms": [{"id": "trading", "matrix": f"#{alias}:{synapse.server_name}", "irc": channel}],
    }


def alice_and_bob(alice_mxid: str, bob_nick: str) -> dict[str, Any]:
    """The directory of the end-to-end tests: Alice on Matrix, Bob on IRC."""
    return {
        "people": [
            {
                "employee_id": "E1001",
                "name": "Alice Smith",
                "department": "Trading",
                "handles": {"matrix": alice_mxid},
            },
            {
                "employee_id": "E1002",
                "name": "Bob Jones",
                "department": "Sales",
                "handles": {"irc": bob_nick},
            },
        ]
    }


@dataclass(frozen=True)
class Archived:
    """One archive record as the survival tests count it."""

    seq: int
    kind: str
    network: str
    room: str
    native_id: str
    target_seq: int | None
    text: str  # the searchable plain text
    body: str  # the canonical JSON content (text, attachments), "" when purged
    reason: str | None


def archived(url: str) -> list[Archived]:
    """Every record of the archive at `url` (SQLite or PostgreSQL) with its plain text, in seq order."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT r.seq, r.kind, r.network, r.room, r.native_id, r.target_seq, c.plain, c.body, r.reason"
                    " FROM records r LEFT JOIN contents c ON c.seq = r.seq ORDER BY r.seq"
                )
            ).all()
    finally:
        engine.dispose()
    return [Archived(r[0], r[1], r[2], r[3], r[4], r[5], r[6] or "", r[7] or "", r[8]) for r in rows]


def verify_archive(config_path: Path, public_key: Path) -> subprocess.CompletedProcess[str]:
    """`switchboard archive verify` on the bridge's own config, trusting `public_key` (the .pub file
    `archive keygen` wrote), as an auditor runs it."""
    return switchboard("archive", "verify", "-c", str(config_path), "--key", str(public_key), timeout=600)


async def put_transaction(
    synapse: SynapseSession,
    txn: str,
    events: list[dict[str, Any]],
    token: str,
    http: aiohttp.ClientSession | None = None,
) -> int:
    """PUT an appservice transaction to the bridge as the homeserver would; its HTTP status.
    Pass `http` to reuse one session for many."""
    url = f"http://127.0.0.1:{synapse.bridge_port}/_matrix/app/v1/transactions/{txn}"
    headers = {"Authorization": f"Bearer {token}"}
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(aiohttp.ClientSession())
        async with http.put(url, json={"events": events}, headers=headers) as reply:
            return reply.status


def seeded(what: str) -> random.Random:
    """A random generator for a generated run, its seed printed (and taken from SWITCHBOARD_SEED
    when set), so a failure can be repeated exactly."""
    value = int(os.environ.get("SWITCHBOARD_SEED") or random.randrange(2**32))
    print(f"{what}: seed {value} (SWITCHBOARD_SEED={value} repeats it)")
    return random.Random(value)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def switchboard(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the switchboard command; return its result (never raises on exit codes)."""
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@dataclass
class BridgeProcess:
    workdir: Path
    config: dict[str, Any]
    directory: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def config_path(self) -> Path:
        return self.workdir / "switchboard.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "bridge.log"

    def write(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "directory.yaml").write_text(yaml.safe_dump(self.directory, sort_keys=False))
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def start(self, timeout: float = 60) -> None:
        self.write()
        self.starts += 1
        mark = "bridge running"
        before = self.log_text().count(mark)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "run", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while self.log_text().count(mark) <= before:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"bridge not running after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the crash nothing can clean up after."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_record(self, kind: str, where: str, args: tuple[Any, ...] = (), timeout: float = 20) -> int:
        """Poll the SQLite archive for a record (cheaply: no subprocess); return its seq."""
        db = self.workdir / "archive.db"
        sql = (
            f"SELECT r.seq FROM records r LEFT JOIN contents c ON c.seq = r.seq WHERE r.kind = ? AND {where}"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if db.exists():
                with sqlite3.connect(db) as conn:
                    row = conn.execute(sql, (kind, *args)).fetchone()
                if row:
                    return int(row[0])
            time.sleep(0.05)
        raise TimeoutError(f"no {kind} record where {where} {args} after {timeout}s")

    def search(self, *args: str) -> list[dict[str, Any]]:
        result = switchboard(
            "archive",
            "search",
            "-c",
            str(self.config_path),
            "--format",
            "json",
            *args,
            env={"SWITCHBOARD_ACTOR": "E9000"},  # searching is a reviewer action: someone must own it
        )
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]


@dataclass
class MatrixUser:
    synapse: SynapseSession
    name: str
    client: AsyncClient | None = None
    user_id: str = ""
    seen: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    async def login(self) -> MatrixUser:
        self.user_id, token = await asyncio.to_thread(self.synapse.register_user, self.name)
        self.client = AsyncClient(
            self.synapse.url, self.user_id, config=AsyncClientConfig(max_limit_exceeded=0, max_timeouts=2)
        )
        self.client.access_token = token
        self.client.user_id = self.user_id
        return self

    async def close(self) -> None:
        if self.client:
            await self.client.close()

    async def create_room(self, alias_localpart: str) -> str:
        assert self.client
        resp = await self.client.room_create(
            visibility=RoomVisibility.public, alias=alias_localpart, preset=RoomPreset.public_chat
        )
        assert isinstance(resp, RoomCreateResponse), resp
        return resp.room_id

    async def send(
        self, room_id: str, body: str, html: str | None = None, msgtype: str = "m.text", **extra: Any
    ) -> str:
        assert self.client
        content: dict[str, Any] = {"msgtype": msgtype, "body": body, **extra}
        if html is not None:
            content |= {"format": "org.matrix.custom.html", "formatted_body": html}
        resp = await self.client.room_send(room_id, "m.room.message", content)
        assert hasattr(resp, "event_id"), resp
        return resp.event_id

    async def events(self, room_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The room's message events, oldest first, as raw JSON."""
        assert self.client
        resp = await self.client.room_messages(room_id, direction=MessageDirection.back, limit=limit)
        assert hasattr(resp, "chunk"), resp
        out = [e.source for e in resp.chunk if e.source.get("type") in ("m.room.message", "m.room.redaction")]
        return list(reversed(out))

    async def history(self, room_id: str) -> list[dict[str, Any]]:
        """Every message and redaction event of the room, oldest first (paged, however many)."""
        assert self.client
        out: list[dict[str, Any]] = []
        start: str | None = None
        while True:
            resp = await self.client.room_messages(
                room_id, start=start, direction=MessageDirection.back, limit=1000
            )
            assert hasattr(resp, "chunk"), resp
            out += [
                e.source for e in resp.chunk if e.source.get("type") in ("m.room.message", "m.room.redaction")
            ]
            if not resp.chunk or not resp.end or resp.end == start:
                return list(reversed(out))
            start = resp.end

    async def wait_for(
        self, room_id: str, ready: Callable[[list[dict[str, Any]]], bool], timeout: float, what: str
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            events = await self.events(room_id)
            if ready(events):
                return events
            if time.monotonic() > deadline:
                bodies = [(e["sender"], e["content"].get("body")) for e in events][-10:]
                raise TimeoutError(f"{what} not seen in {timeout}s; last events: {bodies}")
            await asyncio.sleep(0.1)

    async def display_name(self, user_id: str) -> str | None:
        assert self.client
        resp = await self.client.get_displayname(user_id)
        return getattr(resp, "displayname", None)
