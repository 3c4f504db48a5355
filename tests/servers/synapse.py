"""A real Synapse homeserver for tests, started on a free loopback port.

One Synapse serves the whole test session (`shared_synapse()`, or the
`synapse` fixture): its appservice registration points at a bridge port
chosen once, with fixed test tokens, so integration and end-to-end tests can
each run a bridge (one at a time) against the same homeserver.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.sandbox.ports import free_port
from bridge.sandbox.synapse import Synapse

AS_ID = "switchboard"
AS_TOKEN = "switchboard-test-as-token"
HS_TOKEN = "switchboard-test-hs-token"
BOT = "switchboard"
# Aliases the bridge may create when a configured room does not exist yet.
CREATABLE_ALIASES = r"#sb-auto-.*:corp\.test"


@dataclass
class SynapseSession:
    """The session's homeserver and the bridge settings its registration expects.

    The bridge may create rooms whose alias matches CREATABLE_ALIASES (`#sb-auto-…:corp.test`).
    """

    synapse: Synapse
    bridge_port: int
    as_id: str = AS_ID
    as_token: str = AS_TOKEN
    hs_token: str = HS_TOKEN
    bot: str = BOT
    startup_seconds: float = 0.0

    @property
    def server_name(self) -> str:
        return self.synapse.server_name

    @property
    def url(self) -> str:
        return self.synapse.url

    @property
    def bot_mxid(self) -> str:
        return f"@{self.bot}:{self.server_name}"

    def matrix_options(self) -> dict[str, Any]:
        """The bridge config's `matrix:` section for this homeserver."""
        return {
            "homeserver": self.synapse.url,
            "server_name": self.server_name,
            "appservice": {
                "id": self.as_id,
                "listen": f"127.0.0.1:{self.bridge_port}",
                "as_token": self.as_token,
                "hs_token": self.hs_token,
                "bot": self.bot,
                "aliases": [CREATABLE_ALIASES],
            },
        }

    def register_user(self, name: str, password: str = "password", admin: bool = False) -> tuple[str, str]:
        return self.synapse.register_user(name, password, admin)


def start_session(directory: Path) -> SynapseSession:
    from connectors.matrix import MatrixConnector

    bridge_port = free_port()
    session = SynapseSession(Synapse(directory), bridge_port)
    directory.mkdir(parents=True, exist_ok=True)
    registration = directory / "switchboard-registration.yaml"
    registration.write_text(yaml.safe_dump(MatrixConnector.registration(session.matrix_options())))
    session.synapse.appservice_files = [registration]
    started = time.monotonic()
    session.synapse.start()
    session.startup_seconds = time.monotonic() - started
    return session


_shared: SynapseSession | None = None


def shared_synapse() -> SynapseSession:
    """The one Synapse of this test process, started on first use and stopped at exit."""
    global _shared
    if _shared is None:
        directory = Path(tempfile.mkdtemp(prefix="switchboard-synapse-"))
        _shared = start_session(directory)
        atexit.register(_stop_shared, directory)
    return _shared


def _stop_shared(directory: Path) -> None:
    if _shared is not None:
        _shared.synapse.stop()
    if not os.environ.get("SWITCHBOARD_KEEP_SYNAPSE"):
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def synapse() -> Iterator[SynapseSession]:
    """Import into a test module or conftest.py; every importer shares one Synapse."""
    yield shared_synapse()
