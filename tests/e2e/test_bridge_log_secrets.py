"""Issue 9, hole 10: a bridge run at DEBUG, archiving on PostgreSQL through a URL with a password,
relaying both ways, never writes that password (or a token) to its log."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.sandbox.ircd import Ngircd
from tests.e2e.harness import BridgeProcess, MatrixUser, alice_and_bob, irc_matrix_config, unique
from tests.servers import postgres
from tests.servers.ircclient import IrcClient
from tests.servers.synapse import SynapseSession

PASSWORD = "Pg-Archive-Passw0rd"


@pytest.fixture
def pg_url_with_password() -> Iterator[str]:
    problem = postgres.available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with postgres.database() as url:
        user, _, rest = url.removeprefix("postgresql+psycopg://").partition("@")
        # The test server trusts loopback, so any password connects; a deployment's would be checked.
        yield f"postgresql+psycopg://{user}:{PASSWORD}@{rest}"


async def test_the_archive_password_and_tokens_never_reach_the_bridge_log(
    synapse: SynapseSession, pg_url_with_password: str, tmp_path: Path
) -> None:
    with Ngircd() as ircd:
        alice = await MatrixUser(synapse, unique("alice")).login()
        alias = unique("sb-secret-")
        room_id = await alice.create_room(alias)
        channel, relay = f"#{unique('sec')}", unique("sb")
        bob = await IrcClient("127.0.0.1", ircd.port, unique("bob")).connect()
        await bob.join(channel)
        config = irc_matrix_config(synapse, ircd.port, alias, channel, relay, pg_url_with_password)
        config["logging"] = {"level": "DEBUG"}
        bridge = BridgeProcess(tmp_path, config, alice_and_bob(alice.user_id, bob.nick))
        await asyncio.to_thread(bridge.start)
        try:
            tag = unique("s")
            await alice.send(room_id, f"{tag} from matrix")
            await bob.wait_for(lambda line: f"{tag} from matrix" in line.text, 20, "relay to IRC")
            records = await asyncio.to_thread(bridge.search, "--text", tag, "--kind", "message")
            assert [r["text"] for r in records] == [f"{tag} from matrix"]
        finally:
            await asyncio.to_thread(bridge.stop)
            await bob.close()
            await alice.close()
    log = bridge.log_text()
    appservice = config["matrix"]["appservice"]
    assert (
        "INFO switchboard: archive: postgresql+psycopg://" in log
        and f":***@{pg_url_with_password.split('@')[1]}" in log
    )
    assert "DEBUG" in log and "bridge running" in log  # the run logged, at DEBUG
    for secret in (PASSWORD, appservice["as_token"], appservice["hs_token"]):
        assert secret not in log
