"""A small raw-socket IRC client: the "real human user" in tests.

It keeps every line it receives, raw bytes included, so tests can check
exactly what reached the wire (truncation, stray CR/LF, encoding).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Line:
    raw: bytes  # as received, without CRLF
    source: str  # nick!user@host or server name; "" when absent
    command: str
    params: tuple[str, ...]

    @property
    def nick(self) -> str:
        return self.source.split("!", 1)[0]

    @property
    def target(self) -> str:
        return self.params[0] if self.params else ""

    @property
    def text(self) -> str:
        return self.params[-1] if self.params else ""


def parse_line(raw: bytes) -> Line:
    text = raw.decode("utf-8", errors="replace")
    source = ""
    if text.startswith(":"):
        source, _, text = text[1:].partition(" ")
    head, sep, trailing = text.partition(" :")
    words = head.split()
    params = (*words[1:], trailing) if sep else tuple(words[1:])
    return Line(raw, source, words[0].upper() if words else "", params)


@dataclass
class IrcClient:
    host: str
    port: int
    nick: str
    lines: list[Line] = field(default_factory=list)
    _reader: asyncio.StreamReader | None = field(default=None, repr=False)
    _writer: asyncio.StreamWriter | None = field(default=None, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def connect(self, timeout: float = 10.0) -> IrcClient:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._task = asyncio.create_task(self._read())
        await self.send_raw(f"NICK {self.nick}")
        await self.send_raw(f"USER {self.nick} 0 * :{self.nick} (test)")
        await self.wait_for(lambda line: line.command == "001", timeout, "registration")
        return self

    async def close(self) -> None:
        if self._writer is not None:
            if not self._writer.is_closing():
                self._writer.write(b"QUIT :bye\r\n")
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def __aenter__(self) -> IrcClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        assert self._reader is not None and self._writer is not None
        while True:
            raw = await self._reader.readline()
            if not raw:
                return
            line = parse_line(raw.rstrip(b"\r\n"))
            if line.command == "PING":
                self._writer.write(f"PONG :{line.text}\r\n".encode())
            self.lines.append(line)
            self._changed.set()

    async def send_raw(self, line: str | bytes) -> None:
        assert self._writer is not None
        data = line if isinstance(line, bytes) else line.encode()
        self._writer.write(data + b"\r\n")
        await self._writer.drain()

    async def join(self, channel: str, timeout: float = 10.0) -> None:
        await self.send_raw(f"JOIN {channel}")
        await self.wait_for(
            lambda line: line.command == "366" and line.params[1].lower() == channel.lower(),
            timeout,
            f"join {channel}",
        )

    async def privmsg(self, target: str, text: str) -> None:
        await self.send_raw(f"PRIVMSG {target} :{text}")

    async def action(self, target: str, text: str) -> None:
        await self.privmsg(target, f"\x01ACTION {text}\x01")

    async def services(self, command: str, numeric: str, timeout: float = 10.0) -> Line:
        """Say `command` to NickServ and wait for the numeric that settles it (900 logged in, 901 out)."""
        seen = len(self.lines)
        await self.privmsg("NickServ", command)
        return await self.wait_for(lambda line: line.command == numeric, timeout, command.split()[0], seen)

    async def register(self, password: str) -> None:
        """Register the current nick as a services account; Anope logs us in at once."""
        await self.services(f"REGISTER {password}", "900")

    async def identify(self, password: str) -> None:
        await self.services(f"IDENTIFY {password}", "900")

    async def logout(self) -> None:
        await self.services("LOGOUT", "901")

    def privmsgs(self, channel: str | None = None, nick: str | None = None) -> list[Line]:
        return [
            line
            for line in self.lines
            if line.command == "PRIVMSG"
            and (channel is None or line.target.lower() == channel.lower())
            and (nick is None or line.nick == nick)
        ]

    async def wait_for(
        self, ready: Callable[[Line], bool], timeout: float, what: str, since: int = 0
    ) -> Line:
        """The first line from `since` on (received so far or to come) for which `ready` holds."""
        deadline = time.monotonic() + timeout
        seen = since
        while True:
            for line in self.lines[seen:]:
                if ready(line):
                    return line
            seen = len(self.lines)
            await self._wait_change(deadline, what)

    async def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            await self._wait_change(deadline, what)

    async def _wait_change(self, deadline: float, what: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tail = "\n".join(repr(line.raw) for line in self.lines[-10:])
            raise TimeoutError(f"{self.nick}: timed out waiting for {what}; last lines:\n{tail}")
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=remaining)
