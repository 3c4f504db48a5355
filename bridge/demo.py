"""`switchboard demo`: a complete local sandbox on free loopback ports.

A real Synapse with a user account, an IRC server (ngircd when installed,
else miniircd from PyPI), a sample directory and the bridge with a SQLite
archive linking one room. It prints how to connect, relays until Ctrl-C,
then stops everything it started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bridge.archive.signing import Signer
from bridge.config import load_config
from bridge.connector import load_connector
from bridge.sandbox.ircd import start_irc_server
from bridge.sandbox.ports import free_port
from bridge.sandbox.synapse import Synapse

SERVER_NAME = "corp.test"
ROOM_ALIAS = "#lobby:corp.test"
CHANNEL = "#lobby"
USER, PASSWORD = "demo", "demo-password"

DIRECTORY = {
    "people": [
        {
            "employee_id": "E0001",
            "name": "Dana Demo",
            "department": "Sandbox",
            "groups": ["demo"],
            "handles": {"matrix": f"@{USER}:{SERVER_NAME}", "irc": "dana"},
        },
        {
            "employee_id": "E1001",
            "name": "Alice Smith",
            "department": "Trading",
            "groups": ["traders"],
            "handles": {"irc": "alice"},
        },
    ]
}


def _write_sandbox(root: Path, homeserver: str, irc_port: int, bridge_port: int, media_port: int) -> Path:
    (root / "directory.yaml").write_text(yaml.safe_dump(DIRECTORY, sort_keys=False))
    for secret in ("as_token", "hs_token", "media_secret"):
        (root / secret).write_text(secrets.token_hex(32))
    config = {
        "matrix": {
            "homeserver": homeserver,
            "server_name": SERVER_NAME,
            "appservice": {
                "id": "switchboard",
                "listen": f"127.0.0.1:{bridge_port}",
                "as_token": "${file:as_token}",
                "hs_token": "${file:hs_token}",
                "bot": "switchboard",
                "aliases": [ROOM_ALIAS.replace(".", "\\.")],
            },
        },
        # The sandbox's IRC server has no services accounts: senders are mapped by nick,
        # and every IRC message is archived flagged unverified_identity.
        "networks": {
            "irc": {
                "type": "irc",
                "host": "127.0.0.1",
                "port": irc_port,
                "nick": "switchboard",
                "identify": "nick",
            }
        },
        # Anyone may join the sandbox from IRC; unknown nicks are relayed and flagged.
        "directory": {"type": "yaml", "path": "directory.yaml", "unmapped": "relay", "refresh_seconds": 5},
        "archive": {
            "url": "sqlite:///archive.db",
            "signing_key": "archive-signing.key",
            "checkpoint_seconds": 10,
        },
        # Files posted on Matrix reach IRC as a link to the archived copy.
        "media": {
            "listen": f"127.0.0.1:{media_port}",
            "public_url": f"http://127.0.0.1:{media_port}",
            "secret": "${file:media_secret}",
        },
        "rooms": [{"id": "lobby", "matrix": ROOM_ALIAS, "irc": CHANNEL}],
    }
    if not (root / "archive-signing.key").exists():
        Signer.generate(root / "archive-signing.key")  # what `switchboard archive keygen` writes
    path = root / "switchboard.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_demo(directory: Path | None) -> int:
    """Start the sandbox, relay until Ctrl-C, stop everything; exit code."""
    from bridge.app import Bridge

    root = (directory or Path(tempfile.mkdtemp(prefix="switchboard-demo-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    began = time.monotonic()
    irc = start_irc_server()
    bridge_port = free_port()
    synapse = Synapse(root / "synapse", SERVER_NAME)
    try:
        config_path = _write_sandbox(root, synapse.url, irc.port, bridge_port, free_port())
        config = load_config(config_path)
        registration = load_connector("matrix").registration(config.matrix.options)  # type: ignore[attr-defined]
        reg_file = root / "registration.yaml"
        reg_file.write_text(yaml.safe_dump(registration, sort_keys=False))
        synapse.appservice_files = [reg_file]
        print("starting Synapse …", flush=True)
        synapse.start()
        synapse.register_user(USER, PASSWORD)
        bridge = Bridge(config)

        async def serve() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                await bridge.start()
                _print_welcome(root, synapse.url, irc.port, irc.kind, time.monotonic() - began)
                await stop.wait()
            finally:
                await bridge.stop()

        asyncio.run(serve())
    finally:
        print("\nstopping the sandbox …", flush=True)
        synapse.stop()
        irc.stop()
    return 0


def _print_welcome(root: Path, homeserver: str, irc_port: int, irc_kind: str, seconds: float) -> None:
    lines = [
        "",
        f"Switchboard sandbox is running (ready in {seconds:.1f}s). Files: {root}",
        "",
        f"  Matrix   homeserver {homeserver}",
        f"           user @{USER}:{SERVER_NAME}  password {PASSWORD}",
        f"           room {ROOM_ALIAS}  (join it from any Matrix client, e.g. Element)",
        f"  IRC      {irc_kind} at 127.0.0.1:{irc_port}, channel {CHANNEL}",
        f"           e.g.  irssi -c 127.0.0.1 -p {irc_port} -n alice   then  /join {CHANNEL}",
        "",
        "  Nick 'alice' shows as Alice Smith (E1001), flagged unverified_identity (this IRC server has no",
        "  services accounts); other nicks are relayed and flagged as unmapped.",
        "  A file posted on Matrix reaches IRC as a link to the bridge's archived copy.",
        f"  Archive: switchboard archive search --as E0001 -c {root / 'switchboard.yaml'}",
        f"           switchboard archive verify -c {root / 'switchboard.yaml'}",
        "",
        "Press Ctrl-C to stop everything.",
    ]
    print("\n".join(lines), flush=True)
    if os.environ.get("SWITCHBOARD_DEMO_READY_FILE"):
        Path(os.environ["SWITCHBOARD_DEMO_READY_FILE"]).write_text(str(root))
    sys.stdout.flush()
