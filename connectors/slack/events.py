"""The Events API endpoint (`receive: events`): signed HTTP POSTs instead of a socket."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from bridge.connector import HttpServer

PATH = "/slack/events"
MAX_AGE = 300  # seconds; Slack's advice against replayed requests
MAX_BODY = 1024 * 1024

# (payload, redelivered, caller still waiting) -> handled
OnEvent = Callable[[Mapping[str, Any], bool, Callable[[], bool]], Awaitable[bool]]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verified(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """Whether a request carries Slack's v0 signature over `body`, made within MAX_AGE of `now`."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    given = headers.get("X-Slack-Signature", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAX_AGE:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body).encode(), given.encode())


class EventsEndpoint:
    def __init__(self, secret: str, on_event: OnEvent, log: logging.Logger) -> None:
        self._secret = secret
        self._on_event = on_event
        self._log = log
        self._http: HttpServer | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the endpoint listens while it runs."""
        return self._http.address if self._http is not None else None

    async def start(self, host: str, port: int) -> None:
        self._http = HttpServer(host, port, max_body=MAX_BODY, shutdown_timeout=2.0)
        self._http.app.router.add_post(PATH, self._handle)
        await self._http.start()

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        # Nothing of an unsigned request is looked at, not even whether it is JSON.
        if not verified(self._secret, request.headers, body, time.time()):
            self._log.warning("refused an Events API request with a bad or stale signature")
            return web.Response(status=401, text="invalid signature")
        try:
            payload = json.loads(body)
        except ValueError:
            return web.Response(status=400, text="not JSON")
        if not isinstance(payload, dict):
            return web.Response(status=400, text="not a JSON object")
        if payload.get("type") == "url_verification":
            return web.Response(text=str(payload.get("challenge", "")), content_type="text/plain")
        if payload.get("type") != "event_callback":
            return web.Response(text="")
        redelivered = request.headers.get("X-Slack-Retry-Num", "0") not in ("", "0")

        def waiting() -> bool:
            transport = request.transport
            return transport is not None and not transport.is_closing()

        if await self._on_event(payload, redelivered, waiting):
            return web.Response(text="")
        # Any non-2xx makes Slack retry the event later.
        return web.Response(status=500, text="not handled")
