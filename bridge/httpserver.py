"""One aiohttp application listening on host:port, run the same way for every server of the bridge.

The appservice endpoint, the Slack Events API endpoint, the media server and the
ops endpoint differ only in their routes, their body cap and how long a request in
flight may finish on stop. The rest is policy and lives here once:

- `host` may be IPv4, IPv6 (`::1`, without brackets) or a name; port 0 takes a free
  port, and `address` tells which one was bound.
- No access log: request lines carry secrets (the homeserver's `?access_token=`,
  the signature in a media link), and each server logs what matters itself.
- Every request body has a cap. A body over it is answered 413 before any handler
  or authentication runs when its length is declared, and when a handler reads a
  chunked one past the cap (aiohttp's `client_max_size`), so no route is left
  without one, not even a route that never reads its body.

Connectors reach this through `bridge.connector`, the core module they may import.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware


@web.middleware
async def _refuse_oversized(request: web.Request, handler: Handler) -> web.StreamResponse:
    declared = request.content_length
    if declared is not None and declared > request.client_max_size:
        raise web.HTTPRequestEntityTooLarge(max_size=request.client_max_size, actual_size=declared)
    return await handler(request)


class HttpServer:
    """Routes go on `app` before `start`; `start` binds, `stop` closes, and both may repeat."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_body: int,
        middlewares: Sequence[Middleware] = (),
        shutdown_timeout: float = 1.0,
    ) -> None:
        if max_body < 1:
            raise ValueError("max_body must be at least 1 byte (aiohttp reads 0 as no cap at all)")
        self.host, self.port = host, port
        self.max_body = max_body
        self.app = web.Application(middlewares=[_refuse_oversized, *middlewares], client_max_size=max_body)
        # How long requests in flight may still finish when the server stops.
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None  # (host, port) bound while running

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound (host, port). OSError when the address cannot be bound."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0]  # IPv6 gives (host, port, flowinfo, scope_id)
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    async def stop(self) -> None:
        runner, self._runner, self.address = self._runner, None, None
        if runner is not None:
            await runner.cleanup()
