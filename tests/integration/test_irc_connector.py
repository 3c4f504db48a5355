"""The IRC connector against a real ngircd, watched by a raw-socket IRC user."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bridge.connector import ConnectorContext, DeliveryError, load_connector
from bridge.model import Event, Message, Outbound, Receipt, Sender
from bridge.sandbox.ircd import Ngircd
from bridge.text import Span, Text
from connectors.irc import IrcConnector
from connectors.irc.session import RegistrationError
from tests.fakes.state import MemoryState
from tests.servers.ircclient import IrcClient

ALICE = Sender("matrix", "@alice:corp.test", "Alice Smith", "Alice Smith", "Matrix", "E1001")
FAST = {"flood_burst": 1000, "flood_rate": 1000.0}
# ngircd has no services accounts: these tests map senders by nick, as such a server must.
BY_NICK = {"identify": "nick"}
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


class RecordingSink:
    """Keeps what the connector hands over; fails on request, as a broken core would."""

    def __init__(self, fail_on: str = "") -> None:
        self.events: list[Event] = []
        self.fail_on = fail_on

    async def receive(self, event: Event) -> Receipt:
        assert isinstance(event, Message)
        if self.fail_on and self.fail_on in event.text.plain:
            raise RuntimeError("archive is on fire")
        self.events.append(event)
        return Receipt("archived", len(self.events))

    def texts(self, room: str) -> list[str]:
        return [e.text.plain for e in self.events if isinstance(e, Message) and e.room == room]

    async def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink: {what}; got {[e.text.plain for e in self.events][-10:]}")
            await asyncio.sleep(0.01)


def make_connector(server: Ngircd, **options: Any) -> IrcConnector:
    merged = {
        "host": server.host,
        "port": server.port,
        "nick": unique("bridge"),
        **FAST,
        **BY_NICK,
        **options,
    }
    return IrcConnector(ConnectorContext("irc", merged, MemoryState()))


@asynccontextmanager
async def running(connector: IrcConnector, sink: RecordingSink | None = None) -> AsyncIterator[RecordingSink]:
    sink = sink or RecordingSink()
    await connector.start(sink)
    try:
        yield sink
    finally:
        await connector.stop()


@asynccontextmanager
async def user(server: Ngircd, channel: str | None = None, nick: str = "") -> AsyncIterator[IrcClient]:
    client = await IrcClient(server.host, server.port, nick or unique("human")).connect()
    try:
        if channel:
            await client.join(channel)
        yield client
    finally:
        await client.close()


def message(
    text: str | Text, room: str, key: str = "", kind: str = "message", message_kind: str = "text"
) -> Outbound:
    body = text if isinstance(text, Text) else Text.of(text)
    return Outbound(key or unique("key"), 1, room, ALICE, kind, body, message_kind)  # type: ignore[arg-type]


def relayed(client: IrcClient, channel: str, nick: str) -> list[str]:
    return [line.text for line in client.privmsgs(channel, nick=nick)]


async def test_registered_as_the_irc_entry_point() -> None:
    assert load_connector("irc") is IrcConnector
    assert IrcConnector.label == "IRC"
    assert IrcConnector.capabilities.max_message_bytes == 510
    assert not IrcConnector.capabilities.per_sender_display and not IrcConnector.capabilities.edits
    assert IrcConnector.options["host"].required and IrcConnector.options["port"].default == 6667
    assert IrcConnector.room_problem("#trading") is None
    for bad in ("trading", "#a b", "#a,#b", "#x\r\nQUIT"):
        assert "not an IRC channel name" in (IrcConnector.room_problem(bad) or ""), bad


async def test_join_returns_the_folded_room_id(ngircd: Ngircd) -> None:
    connector = make_connector(ngircd)
    async with running(connector):
        channel = unique("#Trading[Desk]")
        assert await connector.join(channel) == channel.lower().replace("[", "{").replace("]", "}")
        with pytest.raises(ValueError):
            await connector.join("no-hash")


async def test_inbound_message_emote_formatting_and_mentions(ngircd: Ngircd) -> None:
    connector = make_connector(ngircd)
    channel = unique("#In")
    async with running(connector) as sink, user(ngircd, channel) as alice, user(ngircd, channel) as bob:
        room = await connector.join(channel)
        await alice.privmsg(channel, f"{bob.nick}: \x02bold\x02 \x0304red\x03 see https://example.test/a.")
        await alice.action(channel, "waves")
        await alice.privmsg(channel, "Note: nobody is called Note")
        await alice.privmsg(connector.settings.nick, "a private word is not relayed")
        await bob.send_raw(f"NOTICE {channel} :bob's notice")
        await sink.wait_for(lambda: len(sink.events) == 4, "four channel lines")

        first, emote, note, notice = sink.events
        assert isinstance(first, Message)
        assert (first.network, first.room, first.kind) == ("irc", room, "text")
        assert first.sender.native_id == alice.nick and first.sender.display == alice.nick
        assert first.text.plain == f"{bob.nick}: bold red see https://example.test/a."
        n = len(bob.nick)
        assert sorted(first.text.spans, key=lambda s: s.start) == [
            Span("mention", 0, n, network="irc", user=bob.nick),
            Span("bold", n + 2, n + 6),
            Span("link", n + 15, n + 15 + len("https://example.test/a"), url="https://example.test/a"),
        ]
        assert first.occurred_at.tzinfo is not None and len(first.native_id) == 32
        assert (emote.kind, emote.text.plain) == ("emote", "waves")
        assert note.text.mentions() == []
        assert (notice.kind, notice.sender.native_id, notice.text.plain) == (
            "notice",
            bob.nick,
            "bob's notice",
        )
        assert len({e.native_id for e in sink.events}) == 4


async def test_bad_bytes_and_a_failing_sink_do_not_stop_the_relay(
    ngircd: Ngircd, caplog: pytest.LogCaptureFixture
) -> None:
    connector = make_connector(ngircd)
    channel = unique("#robust")
    sink = RecordingSink(fail_on="explode")
    async with running(connector, sink), user(ngircd, channel) as alice:
        room = await connector.join(channel)
        await alice.send_raw(f"PRIVMSG {channel} :caf".encode() + b"\xe9 latin-1")
        with caplog.at_level(logging.ERROR):
            await alice.privmsg(channel, "explode please")
            for i in range(20):
                await alice.privmsg(channel, f"after {i}")
            await sink.wait_for(lambda: len(sink.events) == 21, "lines after the failure")
        assert sink.texts(room) == ["caf\ufffd latin-1", *(f"after {i}" for i in range(20))]
        assert any("could not hand over" in r.message for r in caplog.records)


async def test_outbound_lines_emotes_edits_and_deletes(ngircd: Ngircd) -> None:
    connector = make_connector(ngircd)
    channel = unique("#out")
    async with running(connector), user(ngircd, channel) as alice:
        room = await connector.join(channel)
        nick = connector.settings.nick
        bold = Text("hello world", (Span("bold", 6, 11),))
        ids = [
            await connector.send(message(bold, room, key="k1")),
            await connector.send(message("waves", room, key="k2", message_kind="emote")),
            await connector.send(message("first\n\nsecond", room, key="k3")),
            await connector.send(message("gone", room, key="k4", kind="delete")),
            await connector.send(message("fixed", room, key="k5", kind="edit")),
        ]
        assert ids == ["irc:k1", "irc:k2", "irc:k3", "irc:k4", "irc:k5"]
        await alice.wait_until(lambda: len(relayed(alice, channel, nick)) >= 5, 5, "relayed lines")
        assert relayed(alice, channel, nick) == [
            "<Alice Smith> hello \x02world\x02",
            "* Alice Smith waves",
            "<Alice Smith> first",
            "<Alice Smith> second",
            "* Alice Smith: fixed",
        ]
        raw = alice.privmsgs(channel, nick=nick)[0].raw
        assert raw.endswith(f"PRIVMSG {channel} :<Alice Smith> hello \x02world\x02".encode())


async def test_long_multibyte_message_arrives_whole_and_in_order(ngircd: Ngircd) -> None:
    connector = make_connector(ngircd)
    channel = unique("#long")
    words = [f"{i:03d}-héllo-wörld-日本-😀" for i in range(200)]
    text = " ".join(words)
    assert len(text.encode()) > 2000
    async with running(connector), user(ngircd, channel) as alice:
        room = await connector.join(channel)
        nick = connector.settings.nick
        await connector.send(message(text, room))
        await alice.wait_until(
            lambda: " ".join(relayed(alice, channel, nick)).endswith(words[-1]), 10, "the whole message"
        )
        lines = alice.privmsgs(channel, nick=nick)
        assert len(lines) >= 5
        for line in lines:
            assert len(line.raw) <= 510
            line.raw.decode("utf-8")  # never cut inside a character
            assert line.text.startswith("<Alice Smith> ")
        assert " ".join(line.text.removeprefix("<Alice Smith> ") for line in lines) == text
        # Lines are filled: only the last may be much shorter than the limit.
        assert all(len(line.raw) > 510 - 40 for line in lines[:-1])


async def test_injected_commands_stay_text(ngircd: Ngircd) -> None:
    connector = make_connector(ngircd)
    channel = unique("#inject")
    evil = unique("#evil")
    async with running(connector), user(ngircd, channel) as alice:
        room = await connector.join(channel)
        nick = connector.settings.nick
        await connector.send(message(f"hi\r\nJOIN {evil}", room))
        await connector.send(message("\nQUIT :pwned\r\x00", room))
        await connector.send(message(f"one\rJOIN {evil}\x00 two", room))
        await connector.notify(room, alice.nick, f"why\r\nJOIN {evil}\nQUIT")
        with pytest.raises(DeliveryError):
            await connector.notify(room, "bad nick\r\nQUIT", "x")
        await connector.send(message("still here", room))

        await alice.wait_until(
            lambda: "<Alice Smith> still here" in relayed(alice, channel, nick), 5, "later line"
        )
        await alice.send_raw(f"NAMES {evil}")
        await alice.wait_for(lambda line: line.command == "366" and line.params[1] == evil, 5, "NAMES")
        assert not [line for line in alice.lines if line.command == "353" and line.params[2] == evil]
        from_bridge = [line for line in alice.lines if line.nick == nick]
        assert not [line for line in from_bridge if line.command == "QUIT" or evil in line.params]
        notices = [line.text for line in from_bridge if line.command == "NOTICE"]
        assert notices == ["why", f"JOIN {evil}", "QUIT"]  # one NOTICE per line, all of them text
        assert relayed(alice, channel, nick) == [
            "<Alice Smith> hi",
            f"<Alice Smith> JOIN {evil}",
            "<Alice Smith> QUIT :pwned",
            f"<Alice Smith> one JOIN {evil} two",
            "<Alice Smith> still here",
        ]


async def test_kicked_bridge_rejoins_on_the_next_send(ngircd: Ngircd) -> None:
    channel = unique("#kick")
    async with user(ngircd, channel) as op:  # first in, so channel operator
        connector = make_connector(ngircd)
        async with running(connector):
            room = await connector.join(channel)
            nick = connector.settings.nick
            await op.send_raw(f"KICK {channel} {nick} :out")
            await op.wait_for(lambda line: line.command == "KICK", 5, "kick")
            await connector.send(message("back again", room))
            await op.wait_until(
                lambda: relayed(op, channel, nick) == ["<Alice Smith> back again"], 5, "relay"
            )


async def test_join_refused_raises(ngircd: Ngircd) -> None:
    channel = unique("#closed")
    async with user(ngircd, channel) as op:
        await op.send_raw(f"MODE {channel} +i")
        await op.wait_for(lambda line: line.command == "MODE", 5, "mode")
        connector = make_connector(ngircd)
        async with running(connector):
            with pytest.raises(DeliveryError, match="inviteonly"):
                await connector.join(channel)


async def test_nick_in_use_gets_an_alternative(ngircd: Ngircd) -> None:
    nick = unique("taken")
    async with user(ngircd, nick=nick) as holder:
        connector = make_connector(ngircd, nick=nick)
        channel = unique("#nick")
        async with running(connector):
            room = await connector.join(channel)
            await holder.join(channel)
            await connector.send(message("from the alternative", room))
            line = await holder.wait_for(lambda line: line.command == "PRIVMSG", 5, "relay")
            assert line.nick == f"{nick}_"


async def test_stop_says_goodbye(ngircd: Ngircd) -> None:
    channel = unique("#bye")
    async with user(ngircd, channel) as alice:
        connector = make_connector(ngircd)
        async with running(connector):
            await connector.join(channel)
        line = await alice.wait_for(lambda line: line.command == "QUIT", 5, "QUIT")
        assert line.nick == connector.settings.nick
        with pytest.raises(DeliveryError):
            await connector.send(message("after stop", channel.lower()))


async def test_first_connection_failure_is_raised() -> None:
    with Ngircd() as server:
        port = server.port
    connector = IrcConnector(ConnectorContext("irc", {"host": "127.0.0.1", "port": port}, MemoryState()))
    with pytest.raises(OSError):
        await connector.start(RecordingSink())


async def test_sasl_required_but_not_offered_fails(ngircd: Ngircd) -> None:
    connector = make_connector(ngircd, sasl_username="bot", sasl_password="secret", allow_insecure=True)
    with pytest.raises(RegistrationError, match="SASL"):
        await connector.start(RecordingSink())


async def test_tls() -> None:
    with Ngircd(tls=True) as server:
        trusting = make_connector(server, tls=True, tls_verify=False)
        channel = unique("#tls")
        async with running(trusting) as sink:
            room = await trusting.join(channel)
            other = make_connector(server, tls=True, tls_verify=False)
            async with running(other):
                await other.join(channel)
                await other.send(message("over tls", room))
                await sink.wait_for(lambda: sink.texts(room) == ["<Alice Smith> over tls"], "relay over TLS")
        verifying = make_connector(server, tls=True)
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            await verifying.start(RecordingSink())


async def test_server_restart_reconnects_and_rejoins() -> None:
    with Ngircd() as server:
        connector = make_connector(server)
        channel = unique("#restart")
        async with running(connector) as sink:
            room = await connector.join(channel)
            server.restart()
            # While the server is away, send() fails at once; the core's outbox retries later.
            await sink.wait_for(lambda: not connector.connected, "the connector notices", 5)
            with pytest.raises(DeliveryError):
                await connector.send(message("during the outage", room))
            await sink.wait_for(lambda: connector.connected, "reconnected", 10)

            async with user(server, channel) as alice:
                nick = connector.settings.nick
                await alice.wait_until(
                    lambda: any(
                        line.command == "353" and nick in line.text.replace("@", "").split()
                        for line in alice.lines
                    ),
                    5,
                    "the bridge back in the channel",
                )
                for i in range(10):
                    await connector.send(message(f"after {i}", room))
                await alice.privmsg(channel, "inbound after restart")
                await alice.wait_until(lambda: len(relayed(alice, channel, nick)) == 10, 5, "relayed")
                assert relayed(alice, channel, nick) == [f"<Alice Smith> after {i}" for i in range(10)]
                await sink.wait_for(lambda: sink.texts(room) == ["inbound after restart"], "inbound")


async def test_flood_control_with_server_penalties_loses_nothing() -> None:
    with Ngircd(penalties=True) as server:
        # The defaults: a burst of 5, then 2 lines per second.
        connector = make_connector(server, flood_burst=5, flood_rate=2.0)
        channel = unique("#flood")
        async with running(connector), user(server, channel) as alice:
            room = await connector.join(channel)
            nick = connector.settings.nick
            lines = [f"line {i:02d} " + "x" * 300 for i in range(20)]
            began = time.monotonic()
            await connector.send(message("\n".join(lines), room))
            elapsed = time.monotonic() - began
            assert elapsed >= (20 - 5) / 2.0 - 0.2  # the bucket, not the server, paced us
            await alice.wait_until(lambda: len(relayed(alice, channel, nick)) == 20, 15, "all 20 lines")
            assert relayed(alice, channel, nick) == [f"<Alice Smith> {line}" for line in lines]


async def test_without_services_and_identify_unset_nobody_is_mapped(
    ngircd: Ngircd, caplog: pytest.LogCaptureFixture
) -> None:
    connector = make_connector(ngircd, identify="")
    channel = unique("#noservices")
    with caplog.at_level(logging.WARNING):
        async with running(connector) as sink, user(ngircd, channel, nick="alice") as alice:
            await connector.join(channel)
            await alice.privmsg(channel, "I could be anyone")
            await sink.wait_for(lambda: len(sink.events) == 1, "the line")
    [event] = sink.events
    assert isinstance(event, Message)
    assert (event.sender.native_id, event.sender.display) == ("nick:alice", "alice")
    assert event.flags == ("unverified_identity",)
    warnings = [r.message for r in caplog.records if "offers no services accounts" in r.message]
    assert len(warnings) == 1 and "identify: nick" in warnings[0]


async def test_identify_account_on_a_server_without_services_fails_start(ngircd: Ngircd) -> None:
    connector = make_connector(ngircd, identify="account")
    with pytest.raises(RegistrationError, match="neither account-tag nor extended-join"):
        await connector.start(RecordingSink())


async def test_identify_nick_flags_every_message(ngircd: Ngircd) -> None:
    connector = make_connector(ngircd, identify="nick")
    channel = unique("#bynick")
    async with running(connector) as sink, user(ngircd, channel) as alice:
        await connector.join(channel)
        await alice.privmsg(channel, "mapped by nick")
        await alice.action(channel, "and flagged")
        await sink.wait_for(lambda: len(sink.events) == 2, "both lines")
    assert [(e.sender.native_id, e.flags) for e in sink.events] == [
        (alice.nick, ("unverified_identity",)),
        (alice.nick, ("unverified_identity",)),
    ]
