"""One connection to an IRC server, from registration until it is lost.

A session is never reused: when its connection goes, the connector builds a
new one and rejoins the channels. Everything tied to a connection lives
here: our nick and hostmask, the capabilities granted, the channels we are in,
who is in them and which services account each of them is logged in to
(see `connectors.irc.identity`), pending joins, and the send queue.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from irc.client import Event, InvalidCharacters, MessageTooLong, NickMask, is_channel
from irc.client_aio import AioReactor

from bridge.connector import DeliveryError
from bridge.model import MessageKind
from connectors.irc.identity import WANTED_CAPS, Mode, account_value, choose_mode, sender_id
from connectors.irc.line import message_kind
from connectors.irc.settings import IrcSettings
from connectors.irc.split import utf8_len, wire_safe
from connectors.irc.throttle import TokenBucket
from connectors.irc.wire import Connection, Protocol, open_connection, tls_context

# RFC 1459: 512 bytes per line including CRLF.
MAX_LINE = 510
# Until the server tells us our real user@host, assume the longest usual ones.
_FALLBACK_USER_LEN = 10
_FALLBACK_HOST_LEN = 63
_RFC1459_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")
_NAME_PREFIXES = "~&@%+!."
# Join failures come back as numerics whose first argument is the channel.
_JOIN_ERRORS = frozenset(
    {
        "nosuchchannel",
        "toomanychannels",
        "channelisfull",
        "inviteonlychan",
        "bannedfromchan",
        "badchannelkey",
        "badchanmask",
    }
)
_NICK_TAKEN = frozenset({"nicknameinuse", "nickcollision"})
_SASL_FAILED = frozenset({"saslfail", "sasltoolong", "saslaborted", "nicklocked"})
# AUTHENTICATE payloads travel in chunks of at most 400 base64 bytes.
_SASL_CHUNK = 400
# The token that marks our WHOX replies (`WHO #chan %tna,42` → 354 42 nick account).
_WHOX_TOKEN = "42"


def irc_lower(name: str) -> str:
    """Fold case as RFC 1459 does; channel names in this form are the room ids."""
    return name.translate(_RFC1459_LOWER)


@dataclass(frozen=True)
class ChannelLine:
    """A PRIVMSG, ACTION or NOTICE someone else sent to a channel we are in."""

    channel: str  # folded with irc_lower
    nick: str
    sender_id: str  # the native id the core sees (connectors.irc.identity.sender_id)
    flags: tuple[str, ...]
    body: str  # exactly as sent, CTCP delimiters and all (an emote without its ACTION wrapper)
    kind: MessageKind
    occurred_at: datetime  # the server's time tag where it sent one
    resolve_nick: Callable[[str], str | None]  # a nick in this channel -> that member's native id


@dataclass
class _Join:
    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: str = ""

    def finish(self, error: str = "") -> None:
        self.error = error
        self.done.set()


class RegistrationError(ConnectionError):
    """The server refused us (bad password, SASL, ban) or never let us in."""


class IrcSession:
    def __init__(
        self,
        settings: IrcSettings,
        bucket: TokenBucket,
        on_line: Callable[[ChannelLine], None],
        log: logging.Logger,
    ) -> None:
        self.settings = settings
        self.log = log
        self.joined: set[str] = set()
        self._bucket = bucket
        self._on_line = on_line
        self._members: dict[str, dict[str, str]] = {}
        self._joins: dict[str, _Join] = {}
        self._mask = ""
        self._caps: set[str] = set()
        self.acked: set[str] = set()
        self.mode: Mode = "unverified"
        self._accounts: dict[str, str | None] = {}  # folded nick -> account; absent: not known
        self._whox = False
        self._sasl_done = False
        self._nick_attempts = 0
        self._quitting = False
        self.reading_paused = False  # backpressure: the archive is behind
        self._send_lock = asyncio.Lock()
        self._welcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connection: Connection | None = None
        self._protocol: Protocol | None = None
        self._handlers: dict[str, Callable[[Event], None]] = {
            "welcome": self._on_welcome,
            "cap": self._on_cap,
            "authenticate": self._on_authenticate,
            "saslsuccess": self._on_sasl_success,
            "error": self._on_error,
            "passwdmismatch": self._on_refused,
            "yourebannedcreep": self._on_refused,
            "erroneusnickname": self._on_refused,
            "unknowncommand": self._on_unknown_command,
            "join": self._on_join,
            "namreply": self._on_names,
            "endofnames": self._on_end_of_names,
            "part": self._on_part,
            "kick": self._on_kick,
            "quit": self._on_quit,
            "nick": self._on_nick,
            "account": self._on_account,
            "featurelist": self._on_features,
            "whospcrpl": self._on_whox,
            "396": self._on_host_hidden,
            "pubmsg": self._on_channel_line,
            "pubnotice": self._on_channel_line,
        }
        for kind in _JOIN_ERRORS:
            self._handlers[kind] = self._on_join_error
        for kind in _NICK_TAKEN:
            self._handlers[kind] = self._on_nick_taken
        for kind in _SASL_FAILED:
            self._handlers[kind] = self._on_sasl_failed
        self._handlers["unavailresource"] = self._on_unavailable

    # -- lifecycle ---------------------------------------------------------

    async def open(self, channels: Iterable[str]) -> None:
        """Connect, register (SASL first if configured) and start joining `channels`."""
        try:
            await asyncio.wait_for(self._register(), timeout=self.settings.connect_timeout)
        except TimeoutError:
            self.close()
            raise RegistrationError(f"not registered within {self.settings.connect_timeout:.0f}s") from None
        except BaseException:
            self.close()
            raise
        for channel in channels:
            self._start_join(channel)

    async def _register(self) -> None:
        settings = self.settings
        reactor = AioReactor(loop=asyncio.get_running_loop())
        reactor.add_global_handler("all_events", self._dispatch)
        tls = tls_context(settings.tls_verify) if settings.tls else None
        self._connection, self._protocol = await open_connection(
            reactor, settings.host, settings.port, settings.nick, tls
        )
        # Sent before NICK/USER so the server holds registration until CAP END.
        self._raw("CAP LS 302")
        if settings.password:
            self._raw(f"PASS :{settings.password}")
        self._raw(f"NICK {settings.nick}")
        self._raw(f"USER {settings.user} 0 * :{settings.realname}")
        lost = self._protocol.lost
        await asyncio.wait({self._welcome, lost}, return_when=asyncio.FIRST_COMPLETED)
        if not self._welcome.done():
            raise RegistrationError(f"connection closed during registration ({lost.result() or 'EOF'})")
        self._welcome.result()

    async def serve(self) -> None:
        """Return or raise once the connection is gone; PING the server when it goes quiet."""
        assert self._protocol is not None
        protocol, interval = self._protocol, self.settings.ping_interval
        loop = asyncio.get_running_loop()
        pinged = False
        while not protocol.lost.done():
            if self.reading_paused:
                # Our silence, not the server's: the archive is behind. A PING still goes out, so
                # a server that gave up on us answers with a reset and the loss shows now.
                protocol.last_data = loop.time()
                self._raw(f"PING :{self.settings.nick}")
            idle = loop.time() - protocol.last_data
            if idle >= 2 * interval:
                self.close()
                raise ConnectionError(f"no data from the server for {idle:.0f}s")
            if idle >= interval and not pinged:
                self._raw(f"PING :{self.settings.nick}")
            pinged = idle >= interval
            await asyncio.wait({protocol.lost}, timeout=interval / 2)
        exc = protocol.lost.result()
        if exc is not None:
            raise ConnectionError(str(exc) or type(exc).__name__)

    async def quit(self, message: str, timeout: float = 2.0) -> None:
        """Say goodbye and wait briefly for the server to close the connection."""
        if self.is_open:
            assert self._protocol is not None
            self._quitting = True
            self._raw(f"QUIT :{message}")
            await asyncio.wait({self._protocol.lost}, timeout=timeout)
        self.close()

    def close(self) -> None:
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
        for join in self._joins.values():
            join.finish("connection lost")
        self._joins.clear()

    def read(self, resume: bool) -> bool:
        """Stop reading the socket (the kernel's buffer, then the TCP window, fill and the server
        holds its lines) or read on: backpressure while the archive cannot keep up. Returns
        whether that changed anything."""
        transport = self._connection.transport if self._connection is not None else None
        if transport is None or transport.is_closing() or self.reading_paused != resume:
            return False
        if resume:
            transport.resume_reading()
        else:
            transport.pause_reading()
        self.reading_paused = not resume
        return True

    @property
    def is_open(self) -> bool:
        return (
            self._protocol is not None
            and not self._protocol.lost.done()
            and self._connection is not None
            and not self._connection.transport.is_closing()
        )

    @property
    def nick(self) -> str:
        return self._connection.real_nickname if self._connection else self.settings.nick

    # -- sending -------------------------------------------------------------

    def budget(self, command: str, target: str) -> int:
        """Bytes left for the text of `command target :text` once the server adds our prefix."""
        mask = self._mask or (
            f"{self.nick}!~{self.settings.user[:_FALLBACK_USER_LEN]}@{'h' * _FALLBACK_HOST_LEN}"
        )
        return MAX_LINE - utf8_len(f":{mask} {command} {target} :")

    async def join(self, channel: str, timeout: float) -> None:
        """Be in `channel`, joining it if needed; DeliveryError if that fails."""
        key = irc_lower(channel)
        if key in self.joined:
            return
        join = self._joins.get(key) or self._start_join(channel)
        try:
            await asyncio.wait_for(join.done.wait(), timeout)
        except TimeoutError:
            if self._joins.get(key) is join:
                del self._joins[key]
            raise DeliveryError(f"no answer joining {channel} within {timeout:.0f}s") from None
        if join.error:
            raise DeliveryError(f"cannot join {channel}: {join.error}")

    def _start_join(self, channel: str) -> _Join:
        join = self._joins[irc_lower(channel)] = _Join()
        self._raw(f"JOIN {channel}")
        return join

    async def send_lines(self, lines: list[str]) -> None:
        """Send `lines` in order at the bucket's pace; return once all were handed to the kernel.

        The lock is the queue: callers wait their turn in FIFO order, and a
        caller that is cancelled takes its unsent lines with it.
        """
        async with self._send_lock:
            for line in lines:
                self._check_open()
                delay = self._bucket.reserve()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._raw(line)
                assert self._protocol is not None
                await self._protocol.drained()
                self._check_open()

    def _check_open(self) -> None:
        if not self.is_open:
            raise DeliveryError("IRC connection is down")

    def _raw(self, line: str) -> None:
        self._check_open()
        assert self._connection is not None
        try:
            self._connection.send_raw(wire_safe(line))
        except (MessageTooLong, InvalidCharacters) as exc:
            raise DeliveryError(f"IRC refused the line: {exc}", permanent=True) from exc

    # -- events ----------------------------------------------------------------

    def _dispatch(self, connection: Connection, event: Event) -> None:
        handler = self._handlers.get(event.type)
        if handler is not None:
            handler(event)

    def _fail_registration(self, reason: str) -> None:
        if not self._welcome.done():
            self._welcome.set_exception(RegistrationError(reason))
            self.close()
        else:
            self.log.warning("IRC server: %s", reason)

    def _on_welcome(self, event: Event) -> None:
        if self.settings.sasl and not self._sasl_done:
            self._fail_registration("the server let us in without SASL authentication")
            return
        try:
            self.mode = choose_mode(self.settings.identify, self.acked)
        except ValueError as exc:
            self._fail_registration(str(exc))
            return
        # RPL_WELCOME usually ends with our full nick!user@host.
        words = (event.arguments[0] if event.arguments else "").split()
        if words and "!" in words[-1] and "@" in words[-1]:
            self._mask = words[-1]
        if not self._welcome.done():
            self._welcome.set_result(None)

    def _on_cap(self, event: Event) -> None:
        if len(event.arguments) < 2:
            return
        subcommand, caps = event.arguments[0].upper(), event.arguments[-1].split()
        if subcommand == "LS":
            self._caps.update(caps)
            if len(event.arguments) > 2 and event.arguments[1] == "*":
                return  # more LS lines follow
            self._request_caps(dict(cap.partition("=")[::2] for cap in self._caps))
        elif subcommand == "ACK":
            self.acked.update(cap.lstrip("-~=") for cap in caps)
            if "sasl" in self.acked and self.settings.sasl:
                self._raw("AUTHENTICATE PLAIN")
            else:
                self._raw("CAP END")
        elif subcommand == "NAK":
            if self.settings.sasl:
                self._fail_registration("the server refused the SASL capability")
            else:
                self._raw("CAP END")  # registered without the extras; identify decides what that means

    def _request_caps(self, offered: dict[str, str]) -> None:
        wanted = [cap for cap in WANTED_CAPS if cap in offered]
        if self.settings.sasl:
            if "sasl" not in offered:
                self._fail_registration("the server does not offer SASL")
                return
            if offered["sasl"] and "PLAIN" not in offered["sasl"].split(","):
                self._fail_registration(f"the server offers no SASL PLAIN (only {offered['sasl']})")
                return
            wanted.append("sasl")
        # One request: the server grants all of it or none (then NAK).
        self._raw(f"CAP REQ :{' '.join(wanted)}" if wanted else "CAP END")

    def _on_authenticate(self, event: Event) -> None:
        if event.target != "+":
            return
        settings = self.settings
        credentials = f"\0{settings.sasl_username}\0{settings.sasl_password}".encode()
        payload = base64.b64encode(credentials).decode("ascii")
        chunks = [payload[i : i + _SASL_CHUNK] for i in range(0, len(payload), _SASL_CHUNK)]
        if not chunks or len(chunks[-1]) == _SASL_CHUNK:
            chunks.append("+")  # tells the server a full-sized chunk was the last
        for chunk in chunks:
            self._raw(f"AUTHENTICATE {chunk}")

    def _on_sasl_success(self, event: Event) -> None:
        self._sasl_done = True
        self._raw("CAP END")

    def _on_sasl_failed(self, event: Event) -> None:
        self._fail_registration(f"SASL authentication failed: {' '.join(event.arguments)}")

    def _on_unknown_command(self, event: Event) -> None:
        # A server without CAP registers us on NICK/USER alone; only SASL cannot do without.
        if self.settings.sasl and event.arguments and event.arguments[0].upper() == "CAP":
            self._fail_registration("the server knows no CAP, so no SASL")

    def _on_refused(self, event: Event) -> None:
        self._fail_registration(f"{event.type}: {' '.join(event.arguments)}")

    def _on_error(self, event: Event) -> None:
        if not self._quitting:  # after our QUIT, ERROR is just the server's goodbye
            self._fail_registration(f"ERROR {event.target or ''}".strip())

    def _on_nick_taken(self, event: Event) -> None:
        if self._welcome.done():
            return  # a later NICK change failed; we keep the nick we have
        if self._nick_attempts >= 5:
            self._fail_registration(f"nick {self.settings.nick} and its alternatives are taken")
            return
        self._nick_attempts += 1
        suffix = "_" * self._nick_attempts if self._nick_attempts < 3 else str(random.randint(100, 999))
        nick = self.settings.nick + suffix
        assert self._connection is not None
        self._connection.real_nickname = nick
        self._raw(f"NICK {nick}")

    def _on_unavailable(self, event: Event) -> None:
        # ERR_UNAVAILRESOURCE is about either a channel or a nick.
        if event.arguments and is_channel(event.arguments[0]):
            self._on_join_error(event)
        else:
            self._on_nick_taken(event)

    def _is_me(self, nick: str) -> bool:
        return irc_lower(nick) == irc_lower(self.nick)

    def _on_join(self, event: Event) -> None:
        channel, source = irc_lower(event.target), NickMask(event.source)
        key = irc_lower(source.nick)
        if self._is_me(source.nick):
            self.joined.add(channel)
            self._members[channel] = {}
            if source.userhost:
                self._mask = str(source)
            if self._whox and self.mode == "account":
                # Members already there joined before we could see their accounts.
                self._raw(f"WHO {event.target} %tna,{_WHOX_TOKEN}")
        elif "extended-join" in self.acked and event.arguments:
            self._accounts[key] = account_value(event.arguments[0])
        self._members.setdefault(channel, {})[key] = source.nick

    def _on_names(self, event: Event) -> None:
        if len(event.arguments) < 3:
            return
        members = self._members.setdefault(irc_lower(event.arguments[1]), {})
        for name in event.arguments[2].split():
            nick = NickMask(name.lstrip(_NAME_PREFIXES)).nick
            members[irc_lower(nick)] = nick

    def _on_end_of_names(self, event: Event) -> None:
        if event.arguments:
            join = self._joins.pop(irc_lower(event.arguments[0]), None)
            if join is not None:
                join.finish()

    def _on_join_error(self, event: Event) -> None:
        if event.arguments:
            join = self._joins.pop(irc_lower(event.arguments[0]), None)
            if join is not None:
                join.finish(f"{event.type}: {event.arguments[-1]}")

    def _on_part(self, event: Event) -> None:
        self._leave(irc_lower(event.target), NickMask(event.source).nick)

    def _on_kick(self, event: Event) -> None:
        channel, kicked = irc_lower(event.target), event.arguments[0] if event.arguments else ""
        if self._is_me(kicked):
            self.log.warning("kicked from %s by %s: %s", channel, event.source, " ".join(event.arguments[1:]))
        self._leave(channel, kicked)

    def _leave(self, channel: str, nick: str) -> None:
        if self._is_me(nick):
            self.joined.discard(channel)
            self._members.pop(channel, None)
            still_seen = set().union(*self._members.values())
            self._accounts = {key: value for key, value in self._accounts.items() if key in still_seen}
        else:
            key = irc_lower(nick)
            self._members.get(channel, {}).pop(key, None)
            if not any(key in members for members in self._members.values()):
                self._accounts.pop(key, None)

    def _on_quit(self, event: Event) -> None:
        key = irc_lower(NickMask(event.source).nick)
        for members in self._members.values():
            members.pop(key, None)
        self._accounts.pop(key, None)

    def _on_nick(self, event: Event) -> None:
        old, new = NickMask(event.source), event.target
        for members in self._members.values():
            if members.pop(irc_lower(old.nick), None) is not None:
                members[irc_lower(new)] = new
        # The account goes with the person, not the nick: a nick change does not log anyone out.
        if irc_lower(old.nick) in self._accounts:
            self._accounts[irc_lower(new)] = self._accounts.pop(irc_lower(old.nick))
        if self._mask and irc_lower(old.nick) == irc_lower(self._mask.split("!", 1)[0]):
            self._mask = new + self._mask[len(old.nick) :]

    def _on_account(self, event: Event) -> None:
        # account-notify: `:nick!u@h ACCOUNT name` on login, `ACCOUNT *` on logout.
        nick = NickMask(event.source or "").nick
        if nick and not self._is_me(nick):
            self._accounts[irc_lower(nick)] = account_value(event.target)

    def _on_features(self, event: Event) -> None:
        # jaraco's feature list drops tokens without a value, and WHOX has none.
        if "WHOX" in event.arguments:
            self._whox = True

    def _on_whox(self, event: Event) -> None:
        if len(event.arguments) >= 3 and event.arguments[0] == _WHOX_TOKEN:
            nick, account = event.arguments[1], event.arguments[2]
            if any(irc_lower(nick) in members for members in self._members.values()):
                self._accounts[irc_lower(nick)] = account_value(account)

    def account(self, nick: str) -> str | None:
        """The services account `nick` is logged in to, as far as the server told us."""
        return self._accounts.get(irc_lower(nick))

    def member_id(self, channel: str, nick: str) -> str | None:
        """The native id of the member of `channel` called `nick`, or None if nobody is."""
        member = self._members.get(channel, {}).get(irc_lower(nick))
        if member is None:
            return None
        return sender_id(self.mode, member, self.account(member))[0]

    def nick_for(self, native_id: str) -> str | None:
        """A nick in one of our channels that `native_id` speaks as now, or None."""
        if self.mode == "nick":
            return native_id
        for members in self._members.values():
            for nick in members.values():
                if sender_id(self.mode, nick, self.account(nick))[0].casefold() == native_id.casefold():
                    return nick
        return None

    def _on_host_hidden(self, event: Event) -> None:
        # RPL_HOSTHIDDEN: "<nick> <host> :is now your displayed host"
        if self._mask and event.arguments:
            self._mask = f"{self._mask.split('@', 1)[0]}@{event.arguments[0]}"

    def _on_channel_line(self, event: Event) -> None:
        source = NickMask(event.source or "")
        channel = irc_lower(event.target or "")
        if not source or "." in source.nick or channel not in self.joined:
            return  # server notices (a server's name has dots), private messages, channels we left
        if self._is_me(source.nick):
            return
        command, text = event.arguments  # from wire.Connection: one event per line, text as sent
        kind, body = message_kind(command, text)
        account = self._sender_account(source.nick, event)
        native_id, flags = sender_id(self.mode, source.nick, account)
        self._on_line(
            ChannelLine(
                channel,
                source.nick,
                native_id,
                flags,
                body,
                kind,
                _server_time(_tag(event, "time")),
                lambda nick: self.member_id(channel, nick),
            )
        )

    def _sender_account(self, nick: str, event: Event) -> str | None:
        if "account-tag" not in self.acked:
            return self.account(nick)
        # With account-tag the server marks every line of a logged-in user; no tag, no account.
        account = account_value(_tag(event, "account"))
        if any(irc_lower(nick) in members for members in self._members.values()):
            self._accounts[irc_lower(nick)] = account
        return account


def _tag(event: Event, key: str) -> str | None:
    for tag in event.tags or ():
        if tag.get("key") == key:
            return tag.get("value") or ""
    return None


def _server_time(value: str | None) -> datetime:
    """When the server says the line was sent (IRCv3 server-time), else now."""
    if value:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if when.tzinfo is not None:
                return when.astimezone(UTC)
    return datetime.now(UTC)
