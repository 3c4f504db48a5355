"""The application service API: the HTTP server the homeserver pushes to.

Authentication: a missing token is 401 M_UNAUTHORIZED and a wrong one 403
M_FORBIDDEN, as the spec says; either way nothing is processed.

A transaction is answered 200 only after every event in it was handled (for
relayed events: committed by the core), and its id is then recorded in the
durable state, so a transaction retried after a restart is not processed
again. Any failure while handling is a 500: the homeserver retries the whole
transaction, and the core deduplicates the events it already committed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.connector import HttpServer, StateStore

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
UserQuery = Callable[[str], Awaitable[bool]]

# Up to 100 events of at most 64 KiB each, plus ephemeral events.
MAX_TRANSACTION_BYTES = 32 * 1024 * 1024
# How long a handled transaction id is remembered. The homeserver repeats a transaction
# only until it gets our 200, so a day is ample; anything older is still deduplicated
# event by event in the archive.
TXN_MEMORY = 24 * 3600.0


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


class AppserviceServer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        hs_token: str,
        state: StateStore,
        on_event: EventHandler,
        on_user_query: UserQuery,
        log: logging.Logger,
        is_echo: Callable[[dict[str, Any]], bool] = lambda event: False,
        on_outcome: Callable[[bool], None] = lambda ok: None,
    ) -> None:
        self._hs_token = hs_token.encode()
        self._state = state
        self._on_event = on_event
        self._on_user_query = on_user_query
        self._is_echo = is_echo
        self._on_outcome = on_outcome  # told whether each transaction was processed
        self.log = log
        # Transactions are handled one at a time, so events reach the core in homeserver order.
        self._lock = asyncio.Lock()
        # A transaction still being committed gets a few seconds on stop; after that the
        # homeserver sees a failure and retries it.
        self._http = HttpServer(
            host, port, max_body=MAX_TRANSACTION_BYTES, middlewares=[self._authenticate], shutdown_timeout=5.0
        )
        app = self._http.app
        for prefix in ("/_matrix/app/v1", ""):  # "" : legacy paths of homeservers before spec r0.1
            app.router.add_put(f"{prefix}/transactions/{{txn_id}}", self._transaction)
            app.router.add_get(f"{prefix}/users/{{user_id}}", self._user)
            app.router.add_get(f"{prefix}/rooms/{{alias}}", self._room)
        app.router.add_post("/_matrix/app/v1/ping", self._ping)

    async def start(self) -> None:
        await self._http.start()

    async def stop(self) -> None:
        await self._http.stop()

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        token = request.query.get("access_token")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth.removeprefix("Bearer ").strip()
        if not token:
            return _error(401, "M_UNAUTHORIZED", "missing homeserver token")
        if not hmac.compare_digest(token.encode(), self._hs_token):
            self.log.warning("refused a request to %s with a wrong homeserver token", request.path)
            return _error(403, "M_FORBIDDEN", "wrong homeserver token")
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
            # The spec wants JSON here: homeservers read M_UNRECOGNIZED as "not implemented".
            return _error(exc.status, "M_UNRECOGNIZED", "unknown endpoint")

    async def _transaction(self, request: web.Request) -> web.Response:
        txn_id = request.match_info["txn_id"]
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "M_NOT_JSON", "body is not JSON")
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list):
            return _error(400, "M_BAD_JSON", "no events list")
        key = f"txn:{txn_id}"
        # Half of all transactions carry only the echoes of our own posts: replaying those
        # changes nothing, so they skip the durable bookkeeping (two archive round trips).
        durable = not all(isinstance(e, dict) and self._is_echo(e) for e in events)
        async with self._lock:
            try:
                if durable and await self._state.get(key) is not None:
                    self.log.debug("transaction %s already processed", txn_id)
                    return web.json_response({})
                for event in events:
                    if isinstance(event, dict):
                        await self._on_event(event)
                    else:
                        self.log.warning(
                            "skipping a malformed event in transaction %s: %.200s", txn_id, event
                        )
                if durable:
                    await self._state.put(key, "done", TXN_MEMORY)
            except Exception:  # the homeserver retries; the core deduplicates what was committed
                self.log.exception("transaction %s failed; the homeserver will retry it", txn_id)
                self._on_outcome(False)
                return _error(500, "M_UNKNOWN", "transaction not processed")
        self._on_outcome(True)
        return web.json_response({})

    async def _user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        try:
            exists = await self._on_user_query(user_id)
        except Exception:  # the homeserver may ask again
            self.log.exception("could not provision %s", user_id)
            return _error(500, "M_UNKNOWN", "could not create the user")
        if exists:
            return web.json_response({})
        return _error(404, "M_NOT_FOUND", "not one of ours")

    async def _room(self, request: web.Request) -> web.Response:
        return _error(404, "M_NOT_FOUND", "this bridge creates no rooms on demand")

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})
