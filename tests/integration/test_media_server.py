"""The media server hands out archived files to holders of a signed link, until retention purges them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from bridge.archive import AsyncArchive
from bridge.archive.audit import Actor
from bridge.archive.retention import Retention, purge
from bridge.archive.store import ArchiveStore
from bridge.media import MAX_BODY, MediaLinks, MediaServer
from bridge.sandbox.ports import free_port
from tests.integration.test_archive_files import PNG, filled, sha


@asynccontextmanager
async def serving(
    archive_url: str, tmp_path: Path
) -> AsyncIterator[tuple[ArchiveStore, AsyncArchive, MediaLinks]]:
    """A media server on an archive whose record 2 carries desk.png."""
    store = filled(archive_url, tmp_path)
    archive = AsyncArchive(store)
    port = free_port()
    links = MediaLinks(f"http://127.0.0.1:{port}", b"media-secret-for-this-test")
    server = MediaServer(links, archive, "127.0.0.1", port)
    await server.start()
    try:
        yield store, archive, links
    finally:
        await server.stop()
        await archive.close()


async def test_a_signed_link_serves_the_file_as_a_download_until_it_is_purged(
    archive_url: str, tmp_path: Path
) -> None:
    async with serving(archive_url, tmp_path) as (store, archive, links):
        url = links.url(2, sha(PNG), "<script>desk.png")
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                assert resp.status == 200 and await resp.read() == PNG
                assert resp.headers["Content-Type"] == "application/octet-stream"
                assert (
                    resp.headers["Content-Disposition"] == "attachment; filename*=UTF-8''%3Cscript%3Edesk.png"
                )
                assert "sandbox" in resp.headers["Content-Security-Policy"]
            async with http.get(links.url(1, sha(PNG), "desk.png")) as resp:
                assert resp.status == 410  # signed, but record 1 never carried that file
            await archive.call(
                purge,
                store,
                Actor("E9001"),
                Retention.from_config({"default": "0d"}),
                datetime.now(UTC) + timedelta(days=1),
                datetime.now(UTC),
            )
            async with http.get(url) as resp:
                assert resp.status == 410 and "retention" in await resp.text()


async def test_a_request_with_an_oversized_body_is_refused_with_413(archive_url: str, tmp_path: Path) -> None:
    async with serving(archive_url, tmp_path) as (_, _, links), aiohttp.ClientSession() as http:
        url = links.url(2, sha(PNG), "desk.png")
        async with http.get(url, data=b"x" * (MAX_BODY + 1)) as resp:
            assert resp.status == 413
        async with http.get(url) as resp:  # the server is still there, and serves the file
            assert resp.status == 200 and await resp.read() == PNG
