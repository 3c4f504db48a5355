"""Registration and keepalive against a scripted server.

ngircd has no SASL (that case is in test_irc_connector.py) and cannot be
told to go silent, so this server speaks just enough IRC (and IRCv3 SASL)
to accept or refuse PLAIN credentials, or to stop answering.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from bridge.connector import ConnectorContext
from bridge.model import Receipt
from connectors.irc import IrcConnector
from connectors.irc.session import RegistrationError
from tests.fakes.state import MemoryState
from tests.integration.test_irc_connector import RecordingSink


@dataclass
class ScriptedServer:
    account: str = "bot"
    password: str = "secret"
    mechanisms: str = "PLAIN,EXTERNAL"
    welcome: bool = True
    answer_pings: bool = True
    caps: str = "server-time"  # offered besides sasl
    channel_script: list[str] = field(default_factory=list)  # raw lines sent once we joined a channel
    received: list[str] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _chunks: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(f":sasl.test {line}\r\n".encode())

        self.connections += 1
        while raw := await reader.readline():
            line = raw.decode().rstrip("\r\n")
            self.received.append(line)
            if line.startswith("USER ") and "CAP LS 302" not in self.received:
                send("001 bot :Welcome to the test network bot!bot@sasl.test")
            elif line.startswith("PING ") and self.answer_pings:
                send(f"PONG sasl.test {line.removeprefix('PING ')}")
            elif line == "CAP LS 302":
                send("CAP * LS * :multi-prefix away-notify")
                send(f"CAP * LS :sasl={self.mechanisms} {self.caps}")
            elif line.startswith("CAP REQ :"):
                send(f"CAP * ACK :{line.removeprefix('CAP REQ :')}")
            elif line == "AUTHENTICATE PLAIN":
                send("AUTHENTICATE +")
            elif line.startswith("AUTHENTICATE "):
                chunk = line.removeprefix("AUTHENTICATE ")
                if chunk != "+":
                    self._chunks.append(chunk)
                if len(chunk) == 400:
                    continue
                given = base64.b64decode("".join(self._chunks))
                if given == f"\0{self.account}\0{self.password}".encode():
                    send(f"900 * bot!bot@sasl.test {self.account} :You are now logged in")
                    send("903 * :SASL authentication successful")
                else:
                    send("904 * :SASL authentication failed")
            elif line == "CAP END" and self.welcome:
                send("001 bot :Welcome to the SASL test network bot!bot@sasl.test")
            elif line.startswith("JOIN "):
                channel = line.removeprefix("JOIN ")
                writer.write(f":bot!bot@sasl.test JOIN {channel}\r\n".encode())
                send(f"366 bot {channel} :End of /NAMES list.")
                for scripted in self.channel_script:
                    writer.write(f"{scripted}\r\n".encode())
            elif line.startswith("QUIT"):
                break
        writer.close()


@asynccontextmanager
async def serving(server: ScriptedServer) -> AsyncIterator[ScriptedServer]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


class NullSink:
    async def receive(self, event: object) -> Receipt:
        return Receipt("ignored")


def connector(server: ScriptedServer, password: str = "secret", **options: object) -> IrcConnector:
    settings = {"host": "127.0.0.1", "port": server.port, "nick": "bot"}
    if password:
        # Loopback: SASL without TLS is refused unless allowed by name.
        settings |= {"sasl_username": "bot", "sasl_password": password, "allow_insecure": True}
    return IrcConnector(ConnectorContext("irc", {**settings, **options}, MemoryState()))


async def test_sasl_plain_succeeds_before_registration_ends() -> None:
    async with serving(ScriptedServer()) as server:
        irc = connector(server)
        await irc.start(NullSink())
        try:
            assert irc.connected
        finally:
            await irc.stop()
    # CAP LS must precede NICK/USER, or the server would register us without waiting.
    assert server.received[:7] == [
        "CAP LS 302",
        "NICK bot",
        "USER bot 0 * :Switchboard bridge",
        "CAP REQ :server-time sasl",
        "AUTHENTICATE PLAIN",
        "AUTHENTICATE " + base64.b64encode(b"\0bot\0secret").decode(),
        "CAP END",
    ]


@pytest.mark.parametrize("length", [290, 300])  # 300 bytes encode to exactly 400 base64 characters
async def test_long_credentials_are_sent_in_chunks(length: int) -> None:
    password = "p" * (length - len("\0bot\0"))
    async with serving(ScriptedServer(password=password)) as server:
        irc = connector(server, password=password)
        await irc.start(NullSink())
        await irc.stop()
    chunks = [line for line in server.received if line.startswith("AUTHENTICATE ")][1:]
    assert all(len(chunk) <= len("AUTHENTICATE ") + 400 for chunk in chunks)
    if length == 300:
        assert chunks[-1] == "AUTHENTICATE +"


async def test_wrong_password_fails_start() -> None:
    async with serving(ScriptedServer()) as server:
        irc = connector(server, password="wrong")
        with pytest.raises(RegistrationError, match="SASL authentication failed"):
            await irc.start(NullSink())
        assert not irc.connected
        assert "CAP END" not in server.received


async def test_no_plain_mechanism_fails_start() -> None:
    async with serving(ScriptedServer(mechanisms="EXTERNAL")) as server:
        with pytest.raises(RegistrationError, match="no SASL PLAIN"):
            await connector(server).start(NullSink())


async def test_registration_that_never_ends_times_out() -> None:
    async with serving(ScriptedServer(welcome=False)) as server:
        with pytest.raises(RegistrationError, match="not registered within"):
            await connector(server, connect_timeout=0.3).start(NullSink())


async def poll(ready: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)


async def test_a_silent_server_is_left_and_reconnected() -> None:
    async with serving(ScriptedServer(answer_pings=False)) as server:
        irc = connector(server, password="", ping_interval=0.2)
        await irc.start(NullSink())
        try:
            await poll(lambda: server.connections == 2, "a second connection")
            assert "PING :bot" in server.received
        finally:
            await irc.stop()


async def test_a_server_that_answers_pings_is_kept() -> None:
    async with serving(ScriptedServer()) as server:
        irc = connector(server, password="", ping_interval=0.2)
        await irc.start(NullSink())
        try:
            await poll(lambda: server.received.count("PING :bot") >= 3, "three keepalive PINGs")
            assert server.connections == 1 and irc.connected
        finally:
            await irc.stop()


async def test_without_account_tag_accounts_come_from_join_and_account_notify() -> None:
    script = [
        ":dana!d@h JOIN #desk dana :Dana Lee",  # extended-join: logged in as dana
        ":dana!d@h PRIVMSG #desk :logged in at join",
        ":eve!e@h JOIN #desk * :Eve",  # not logged in
        ":eve!e@h PRIVMSG #desk :not logged in",
        ":eve!e@h ACCOUNT eve",
        ":eve!e@h PRIVMSG #desk :now logged in",
        ":dana!d@h NICK dana_away",
        ":dana_away!d@h PRIVMSG #desk :renamed",
        ":dana_away!d@h ACCOUNT *",
        ":dana_away!d@h PRIVMSG #desk :logged out",
        # Without account-tag granted, an account tag is not the server's word.
        "@account=dana :mallory!m@h PRIVMSG #desk :a tag we never asked for",
    ]
    server = ScriptedServer(caps="extended-join account-notify", channel_script=script)
    async with serving(server):
        irc = connector(server, password="")
        sink = RecordingSink()
        await irc.start(sink)
        try:
            await irc.join("#desk")
            await sink.wait_for(lambda: len(sink.events) == 6, "six channel lines")
        finally:
            await irc.stop()
    assert "CAP REQ :extended-join account-notify" in server.received
    assert [(e.sender.native_id, e.sender.display, e.text.plain) for e in sink.events] == [
        ("dana", "dana", "logged in at join"),
        ("nick:eve", "eve", "not logged in"),
        ("eve", "eve", "now logged in"),
        ("dana", "dana_away", "renamed"),
        ("nick:dana_away", "dana_away", "logged out"),
        ("nick:mallory", "mallory", "a tag we never asked for"),
    ]
    assert all(e.flags == () for e in sink.events)
