"""The homeserver's client-server API, spoken as the appservice and its ghosts.

matrix-nio's `AsyncClient` is the HTTP transport: its `send()` keeps extra query
parameters, so `?user_id=` masquerades as any user of our namespace. Replies
are parsed here, so every failure becomes a `MatrixError` that carries the
HTTP status, and a `DeliveryError` the core knows how to retry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from nio import AsyncClient, AsyncClientConfig

from bridge.connector import DeliveryError
from bridge.text import well_formed
from connectors.matrix.config import MatrixConfig

CLIENT = "/_matrix/client/v3"
REQUEST_TIMEOUT = 30.0


class MatrixError(DeliveryError):
    """A failed request. `status` 0 means the homeserver could not be reached."""

    def __init__(
        self, message: str, *, status: int, errcode: str = "", retry_after: float | None = None
    ) -> None:
        permanent = 400 <= status < 500 and status != 429
        super().__init__(message, retry_after=retry_after, permanent=permanent)
        self.status = status
        self.errcode = errcode


def error_from_reply(
    method: str, path: str, status: int, body: Mapping[str, Any], retry_after_header: str | None = None
) -> MatrixError:
    errcode = str(body.get("errcode") or "")
    retry_after = None
    if status == 429:
        ms = body.get("retry_after_ms")
        if isinstance(ms, int | float) and not isinstance(ms, bool):
            retry_after = ms / 1000
        elif retry_after_header and retry_after_header.isdigit():
            retry_after = float(retry_after_header)
    what = f"{errcode} {body.get('error') or ''}".strip() or "no error body"
    return MatrixError(
        f"{method} {path.split('?')[0]}: HTTP {status}: {what}",
        status=status,
        errcode=errcode,
        retry_after=retry_after,
    )


@dataclass(frozen=True)
class Download:
    data: bytes | None  # None: over the limit, not kept
    size: int  # bytes it has (at least, when over the limit and the server did not say)


async def _read_at_most(response: aiohttp.ClientResponse, size: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        parts.append(chunk[: size - got])
        got += len(parts[-1])
        if got >= size:
            response.close()  # the rest is never read; the connection is not reused
            break
    return b"".join(parts)


def q(part: str) -> str:
    """One path segment (room ids, aliases, event ids contain `!#$:`)."""
    return quote(part, safe="")


class MatrixClient:
    """Requests as the bot or a ghost, remembering what was already set up.

    The caches make a steady-state send exactly one request; they are only
    hints, so a request refused because one was stale is set up and retried.
    """

    def __init__(self, config: MatrixConfig, log: logging.Logger) -> None:
        self.config = config
        self.bot = config.bot_mxid
        self.log = log
        self.nio = AsyncClient(
            config.homeserver,
            user=self.bot,
            # Retrying is the core's job: it honours retry_after and keeps order.
            config=AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, request_timeout=REQUEST_TIMEOUT),
        )
        self.nio.access_token = config.as_token
        self._registered: set[str] = set()
        self._display: dict[str, str] = {}
        self._members: dict[tuple[str, str], str] = {}  # (room, user) → display name shown there

    async def close(self) -> None:
        await self.nio.close()

    async def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        user: str | None = None,
        data: bytes | None = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request; the JSON reply, or MatrixError. `user`: act as this user of our namespace."""
        params = dict(query or {})
        if user is not None and user != self.bot:
            params["user_id"] = user
        if params:
            path = f"{path}?{urlencode(params)}"
        payload: bytes | str | None = data
        if payload is None and (body is not None or method != "GET"):
            # Synapse refuses a lone surrogate (500), so it cannot carry one: U+FFFD goes instead.
            payload = well_formed(json.dumps(body if body is not None else {}, ensure_ascii=False))
        return _json(await self._request(method, path, payload, content_type))

    async def download(self, mxc: str, limit: int) -> Download:
        """The file, read only as far as `limit` bytes: a hostile huge file never sits in memory."""
        server, _, media_id = mxc.removeprefix("mxc://").partition("/")
        path = f"/_matrix/client/v1/media/download/{q(server)}/{q(media_id)}"
        sizes: list[int] = []
        data = await self._request("GET", path, limit=limit, sizes=sizes)
        if len(data) > limit:
            return Download(None, max(len(data), *sizes))
        return Download(data, len(data))

    async def _request(
        self,
        method: str,
        path: str,
        payload: bytes | str | None = None,
        content_type: str | None = None,
        limit: int | None = None,
        sizes: list[int] | None = None,
    ) -> bytes:
        """The reply's body; with `limit`, at most `limit` + 1 bytes of it, and the size the
        server announced (Content-Length) is added to `sizes`."""
        headers = {"Authorization": f"Bearer {self.config.as_token}"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            response = await self.nio.send(method, path, payload, headers)
            try:
                if limit is None:
                    raw = await response.read()
                else:
                    raw = await _read_at_most(response, limit + 1)
                    if sizes is not None and response.content_length is not None:
                        sizes.append(response.content_length)
            finally:
                response.release()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MatrixError(
                f"{method} {path.split('?')[0]}: {type(exc).__name__}: {exc}", status=0
            ) from exc
        if response.status >= 400:
            raise error_from_reply(
                method, path, response.status, _json(raw), response.headers.get("Retry-After")
            )
        return raw

    async def upload(self, data: bytes, name: str, mimetype: str, *, user: str) -> str:
        reply = await self.call(
            "POST",
            "/_matrix/media/v3/upload",
            data=data,
            content_type=mimetype,
            user=user,
            query={"filename": name},
        )
        return str(reply["content_uri"])

    async def ping(self, attempts: int = 4, pause: float = 0.25) -> None:
        """Ask the homeserver to reach our appservice server; it then delivers queued transactions at once."""
        for attempt in range(1, attempts + 1):
            try:
                await self.call(
                    "POST",
                    f"/_matrix/client/v1/appservice/{q(self.config.appservice_id)}/ping",
                    {"transaction_id": "switchboard-startup"},
                )
                return
            except MatrixError as exc:
                # Synapse 1.163 reached us but then failed cancelling its own retry
                # timer ("AlreadyCalled", "AlreadyCancelled"), and so did not retry;
                # a moment later a second ping does.
                if exc.errcode != "M_CONNECTION_FAILED" or attempt == attempts:
                    raise
            await asyncio.sleep(pause)

    async def register(self, mxid: str) -> None:
        if mxid in self._registered:
            return
        localpart = mxid[1:].split(":", 1)[0]
        try:
            await self.call(
                "POST",
                f"{CLIENT}/register",
                {"type": "m.login.application_service", "username": localpart, "inhibit_login": True},
            )
        except MatrixError as exc:
            if exc.errcode != "M_USER_IN_USE":
                raise
        self._registered.add(mxid)

    async def prepare_ghost(self, mxid: str, display_name: str) -> None:
        """Register the ghost and give it `display_name`, each only when needed."""
        await self.register(mxid)
        if display_name and self._display.get(mxid) != display_name:
            await self.call(
                "PUT", f"{CLIENT}/profile/{q(mxid)}/displayname", {"displayname": display_name}, user=mxid
            )
            self._display[mxid] = display_name

    async def ensure_member(self, room_id: str, mxid: str, display_name: str = "") -> None:
        """Join `mxid` to the room, showing `display_name` there; if the room refuses, the bot invites it."""
        shown = self._members.get((room_id, mxid))
        if shown is not None and (shown == display_name or not display_name):
            return
        if shown is not None:
            # The homeserver copies a new profile name into each room in the background;
            # the room we are about to speak in gets it now, so the next post shows it.
            await self.call(
                "PUT",
                f"{CLIENT}/rooms/{q(room_id)}/state/m.room.member/{q(mxid)}",
                {"membership": "join", "displayname": display_name},
                user=mxid,
            )
        else:
            try:
                await self.call("POST", f"{CLIENT}/rooms/{q(room_id)}/join", {}, user=mxid)
            except MatrixError as exc:
                if exc.status != 403:
                    raise
                await self.call("POST", f"{CLIENT}/rooms/{q(room_id)}/invite", {"user_id": mxid})
                await self.call("POST", f"{CLIENT}/rooms/{q(room_id)}/join", {}, user=mxid)
        self._members[(room_id, mxid)] = display_name

    def forget_member(self, room_id: str, mxid: str) -> None:
        self._members.pop((room_id, mxid), None)

    async def resolve(self, room: str) -> str:
        """The room id of a room id or alias; a missing alias of our own server is created."""
        if not room.startswith("#"):
            return room
        try:
            reply = await self.call("GET", f"{CLIENT}/directory/room/{q(room)}")
            return str(reply["room_id"])
        except MatrixError as exc:
            if exc.status != 404 or not room.endswith(":" + self.config.server_name):
                raise
        localpart = room[1:].rsplit(":", 1)[0]
        try:
            reply = await self.call(
                "POST",
                f"{CLIENT}/createRoom",
                {"room_alias_name": localpart, "preset": "public_chat", "name": localpart},
            )
        except MatrixError as exc:
            if exc.errcode == "M_EXCLUSIVE":
                raise MatrixError(
                    f"{room} does not exist, and the homeserver lets the bridge create only aliases listed "
                    "in matrix.appservice.aliases (then regenerate the registration); or create the room in Matrix",
                    status=exc.status,
                    errcode=exc.errcode,
                ) from exc
            if exc.errcode != "M_ROOM_IN_USE":
                raise
            # Someone created it between our lookup and now.
            reply = await self.call("GET", f"{CLIENT}/directory/room/{q(room)}")
        self.log.info("created room %s for %s", reply["room_id"], room)
        return str(reply["room_id"])

    async def join(self, room_id: str) -> None:
        """The bot joins."""
        await self.call("POST", f"{CLIENT}/rooms/{q(room_id)}/join", {})
        self._members[(room_id, self.bot)] = ""

    async def leave(self, room_id: str) -> None:
        await self.call("POST", f"{CLIENT}/rooms/{q(room_id)}/leave", {})
        self._members.pop((room_id, self.bot), None)

    async def send_event(
        self,
        room_id: str,
        content: Mapping[str, Any],
        txn: str,
        *,
        user: str,
        event_type: str = "m.room.message",
    ) -> str:
        reply = await self.call(
            "PUT", f"{CLIENT}/rooms/{q(room_id)}/send/{q(event_type)}/{q(txn)}", content, user=user
        )
        return str(reply["event_id"])

    async def redact(self, room_id: str, event_id: str, txn: str, *, user: str) -> str:
        reply = await self.call(
            "PUT", f"{CLIENT}/rooms/{q(room_id)}/redact/{q(event_id)}/{q(txn)}", {}, user=user
        )
        return str(reply["event_id"])


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
