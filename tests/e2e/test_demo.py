"""`switchboard demo` as a newcomer runs it: it starts, relays both ways, and cleans up."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from nio import AsyncClient, JoinResponse, LoginResponse, UploadResponse

from tests.servers.ircclient import IrcClient


def _wait_ready(proc: subprocess.Popen[str], ready: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(
                f"demo exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError("demo not ready")
        time.sleep(0.1)


async def test_demo_sandbox_relays_and_stops_everything(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "demo", "--dir", str(tmp_path / "sandbox")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "SWITCHBOARD_DEMO_READY_FILE": str(ready)},
        start_new_session=True,
    )
    matrix: AsyncClient | None = None
    irc: IrcClient | None = None
    try:
        await asyncio.to_thread(_wait_ready, proc, ready)
        # Read what it printed so far without blocking on the still-open pipe.
        banner = ""
        deadline = time.monotonic() + 10
        while "Press Ctrl-C" not in banner and time.monotonic() < deadline:
            banner += await asyncio.to_thread(proc.stdout.readline) if proc.stdout else ""
        homeserver = re.search(r"homeserver (http://127\.0\.0\.1:\d+)", banner)
        irc_port = re.search(r"at 127\.0\.0\.1:(\d+), channel #lobby", banner)
        assert homeserver and irc_port, banner
        assert "user @demo:corp.test  password demo-password" in banner

        matrix = AsyncClient(homeserver.group(1), "@demo:corp.test")
        assert isinstance(await matrix.login("demo-password"), LoginResponse)
        joined = await matrix.join("#lobby:corp.test")
        assert isinstance(joined, JoinResponse), joined
        irc = await IrcClient("127.0.0.1", int(irc_port.group(1)), "alice").connect()
        await irc.join("#lobby")

        await matrix.room_send(
            joined.room_id, "m.room.message", {"msgtype": "m.text", "body": "hi from the demo"}
        )
        line = await irc.wait_for(lambda seen: "hi from the demo" in seen.text, 30, "relay to IRC")
        assert line.text == "<Dana Demo> hi from the demo"
        await irc.privmsg("#lobby", "hello back")
        for _ in range(150):
            history = await matrix.room_messages(joined.room_id, limit=20)
            bodies = {
                (e.sender, e.source["content"].get("body")) for e in history.chunk if hasattr(e, "source")
            }
            if ("@_sb_irc_alice:corp.test", "hello back") in bodies:
                break
            await asyncio.sleep(0.2)
        assert ("@_sb_irc_alice:corp.test", "hello back") in bodies

        # A file from Matrix reaches IRC as a link to the bridge's archived copy.
        data = b"the demo's quarterly numbers\n" * 50
        uploaded, _ = await matrix.upload(
            io.BytesIO(data), content_type="text/plain", filename="q3.txt", filesize=len(data)
        )
        assert isinstance(uploaded, UploadResponse), uploaded
        await matrix.room_send(
            joined.room_id,
            "m.room.message",
            {"msgtype": "m.file", "body": "q3.txt", "url": uploaded.content_uri, "info": {"size": len(data)}},
        )
        line = await irc.wait_for(lambda seen: "[file] q3.txt" in seen.text, 30, "the file's line on IRC")
        link = re.search(r"(http://127\.0\.0\.1:\d+/media/\S+)", line.text)
        assert link, line.text
        async with aiohttp.ClientSession() as http, http.get(link.group(1)) as resp:
            assert resp.status == 200 and await resp.read() == data
    finally:
        if irc:
            await irc.close()
        if matrix:
            await matrix.close()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the demo's terminal
        output, _ = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 0, output
    assert "stopping the sandbox" in output
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "sandbox")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", f"processes left running: {leftovers.stdout}"
