"""The one way the bridge runs an aiohttp server: any port, IPv6, a body cap on every route."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bridge.httpserver import HttpServer


def counting(server: HttpServer) -> list[int]:
    """Routes on `server`: GET / answers "hi", POST /echo reads and echoes; returns the POST call lengths."""
    read: list[int] = []

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        read.append(len(body))
        return web.Response(body=body)

    server.app.router.add_get("/", hello)
    server.app.router.add_post("/echo", echo)
    return read


async def test_port_0_on_ipv6_reports_the_bound_port_and_a_stop_frees_it_for_a_restart() -> None:
    server = HttpServer("::1", 0, max_body=1024)
    counting(server)
    host, port = await server.start()
    try:
        assert (host, server.address) == ("::1", ("::1", port)) and port > 0
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://[::1]:{port}/") as resp:
                assert (resp.status, await resp.text()) == (200, "hi")
            await server.stop()
            assert server.address is None
            with pytest.raises(aiohttp.ClientConnectionError):
                async with http.get(f"http://[::1]:{port}/"):
                    pass
            server.port = port
            assert await server.start() == ("::1", port)
            async with http.get(f"http://[::1]:{port}/") as resp:
                assert resp.status == 200
    finally:
        await server.stop()


async def test_a_body_over_the_cap_is_413_declared_or_chunked_and_one_at_the_cap_is_served() -> None:
    server = HttpServer("127.0.0.1", 0, max_body=1000)
    read = counting(server)
    _, port = await server.start()
    url = f"http://127.0.0.1:{port}"

    async def chunks(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // 100):
            yield b"y" * 100

    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/echo", data=b"x" * 1001) as declared:
                assert declared.status == 413
            assert read == []  # refused before the handler ran
            async with http.post(f"{url}/echo", data=chunks(5000)) as streamed:
                assert streamed.status == 413
            async with http.get(url, data=b"x" * 1001) as on_get:  # a route that never reads
                assert on_get.status == 413
            async with http.post(f"{url}/echo", data=b"z" * 1000) as fits:
                assert (fits.status, await fits.read()) == (200, b"z" * 1000)
            assert read == [1000]
    finally:
        await server.stop()


def test_a_cap_of_nothing_is_refused_since_aiohttp_would_read_it_as_no_cap() -> None:
    with pytest.raises(ValueError, match="max_body"):
        HttpServer("127.0.0.1", 0, max_body=0)
