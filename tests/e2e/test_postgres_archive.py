"""The bridge archiving on the local PostgreSQL, as a deployment at scale runs it: through a URL
with a password, which its log (at DEBUG) never shows (issue 9, hole 10)."""

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
def pg_url() -> Iterator[str]:
    problem = postgres.available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with postgres.database() as url:
        user, _, rest = url.removeprefix("postgresql+psycopg://").partition("@")
        # The test server trusts loopback, so any password connects; a deployment's is checked.
        yield f"postgresql+psycopg://{user}:{PASSWORD}@{rest}"


async def test_relay_both_ways_archived_once_on_postgres(
    synapse: SynapseSession, pg_url: str, tmp_path: Path
) -> None:
    with Ngircd() as ircd:
        alice = await MatrixUser(synapse, unique("alice")).login()
        alias = unique("sb-pg-")
        room_id = await alice.create_room(alias)
        channel, relay = f"#{unique('pg')}", unique("sb")
        bob = await IrcClient("127.0.0.1", ircd.port, unique("bob")).connect()
        await bob.join(channel)
        config = irc_matrix_config(synapse, ircd.port, alias, channel, relay, pg_url)
        config["logging"] = {"level": "DEBUG"}
        bridge = BridgeProcess(tmp_path, config, alice_and_bob(alice.user_id, bob.nick))
        await asyncio.to_thread(bridge.start)
        try:
            tag = unique("pg")
            await alice.send(room_id, f"{tag} matrix side")
            await bob.wait_for(lambda line: f"{tag} matrix side" in line.text, 20, "relay to IRC")
            await bob.privmsg(channel, f"{tag} irc side")
            ghost = f"@_sb_irc_{bob.nick}:{synapse.server_name}"
            await alice.wait_for(
                room_id,
                lambda events: any(
                    e["sender"] == ghost and tag in e["content"].get("body", "") for e in events
                ),
                20,
                "relay to Matrix",
            )
            await asyncio.to_thread(bridge.kill)  # and a crash on PostgreSQL loses nothing either
            await alice.send(room_id, f"{tag} while down")
            await asyncio.to_thread(bridge.start)
            await bob.wait_for(lambda line: f"{tag} while down" in line.text, 20, "relay after restart")
            records = await asyncio.to_thread(bridge.search, "--text", tag, "--kind", "message")
            assert [(r["network"], r["employee_id"], r["text"]) for r in records] == [
                ("matrix", "E1001", f"{tag} matrix side"),
                ("irc", "E1002", f"{tag} irc side"),
                ("matrix", "E1001", f"{tag} while down"),
            ]
            assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
            assert (
                len([t for t in (line.text for line in bob.privmsgs(channel)) if f"{tag} while down" in t])
                == 1
            )
        finally:
            print(bridge.log_tail(80))  # shown by pytest only when the test failed
            await asyncio.to_thread(bridge.stop)
            await bob.close()
            await alice.close()
    log = bridge.log_text()
    assert f"INFO switchboard: archive: {pg_url.replace(PASSWORD, '***')}" in log
    assert "DEBUG" in log and log.count("bridge running") == 2
    appservice = config["matrix"]["appservice"]
    assert not [s for s in (PASSWORD, appservice["as_token"], appservice["hs_token"]) if s in log]
