"""The jaraco `irc` asyncio connection, fitted for a bridge.

jaraco parses lines, dispatches events and answers PINGs; what it lacks is
added here: lenient decoding, one bad line never ending the connection, a
way to know a line really left (flow control), a clear signal when the
connection is gone, and PRIVMSG/NOTICE parsed from the raw line (see
`connectors.irc.line`), so one line is always one event with its text as sent.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from irc.client import Event, NickMask
from irc.client_aio import AioConnection, AioReactor, IrcProtocol
from jaraco.stream.buffer import DecodingLineBuffer

from connectors.irc.line import parse_line

log = logging.getLogger(__name__)


class ReplacingLineBuffer(DecodingLineBuffer):
    """UTF-8 lines; invalid bytes become U+FFFD instead of raising."""

    errors = "replace"


class Protocol(IrcProtocol):
    def __init__(self, connection: Connection, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(connection, loop)
        self.lost: asyncio.Future[Exception | None] = loop.create_future()
        self.last_data = loop.time()
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # With no high-water mark, pause_writing fires whenever anything is
        # buffered in user space, so drained() means "handed to the kernel".
        assert isinstance(transport, asyncio.WriteTransport)
        transport.set_write_buffer_limits(high=0, low=0)

    def data_received(self, data: bytes) -> None:
        self.last_data = self.loop.time()
        super().data_received(data)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        # jaraco's own handler would try to send QUIT on the dead transport.
        self.connection.connected = False
        self._writable.set()
        if not self.lost.done():
            self.lost.set_result(exc)

    async def drained(self) -> None:
        await self._writable.wait()


class Connection(AioConnection):
    buffer_class = ReplacingLineBuffer
    protocol_class = Protocol

    def attach(self, transport: asyncio.Transport, protocol: Protocol, nick: str) -> None:
        """Adopt a transport we opened ourselves.

        jaraco's connect() sends NICK and USER at once, but SASL needs CAP LS
        first, so connecting and registering are done by the session; this
        sets the state jaraco's parser and senders rely on.
        """
        self.buffer = self.buffer_class()
        self.handlers = {}
        self.real_server_name = ""
        self.real_nickname = nick
        self.nickname = nick
        self.transport = transport
        self.protocol = protocol
        self.connected = True

    def process_data(self, new_data: bytes) -> None:
        self.buffer.feed(new_data)
        for line in self.buffer:
            if not line:
                continue
            try:
                self._process_line(line)
            except Exception:  # one odd line from the server must not end the connection
                log.exception("could not handle IRC line %r", line)

    def _process_line(self, line: str) -> None:
        parsed = parse_line(line)
        if parsed is None or parsed.command not in ("PRIVMSG", "NOTICE") or len(parsed.params) < 2:
            super()._process_line(line)
            return
        target, text = parsed.params[0], parsed.params[-1]
        private = not target or target[0] not in "#&+!"
        kind = {"PRIVMSG": ("pubmsg", "privmsg"), "NOTICE": ("pubnotice", "privnotice")}[parsed.command]
        # One event, `arguments == [command, text]`; tags in jaraco's {key, value} form.
        tags = [{"key": key, "value": value} for key, value in parsed.tags]
        event = Event(kind[private], NickMask(parsed.source), target, [parsed.command, text], tags)
        self._handle_event(event)


async def open_connection(
    reactor: AioReactor, host: str, port: int, nick: str, tls: ssl.SSLContext | None
) -> tuple[Connection, Protocol]:
    connection = Connection(reactor)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(
        lambda: Protocol(connection, loop), host, port, ssl=tls, server_hostname=host if tls else None
    )
    assert isinstance(protocol, Protocol)
    connection.attach(transport, protocol, nick)
    return connection, protocol


def tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
