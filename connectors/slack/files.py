"""Files in both directions: private downloads with the bot token, and the external upload flow."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bridge.model import Attachment
from connectors.slack.errors import NETWORK_ERRORS

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DOWNLOAD_ATTEMPTS = 3


class FileRefused(Exception):
    """Slack answered, but not with the file: retrying will not change that."""


@dataclass(frozen=True)
class Upload:
    name: str
    mimetype: str
    data: bytes


class Files:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        web: AsyncWebClient,
        bot_token: str,
        api_url: str,
        max_bytes: int,
        log: logging.Logger,
    ) -> None:
        self._http = http
        self._web = web
        self._token = bot_token
        self._api_host = urlsplit(api_url).hostname or ""
        self.max_bytes = max_bytes
        self._log = log

    # -- Slack → bridge -------------------------------------------------------------

    async def attachment(self, file: Mapping[str, Any]) -> Attachment:
        """A shared file with its bytes; only its description when it cannot or may not be copied.

        The archive then still records that a file was sent, its name, type and size.
        """
        name = _text(file.get("name")) or _text(file.get("title")) or _text(file.get("id")) or "file"
        mimetype = _text(file.get("mimetype")) or "application/octet-stream"
        size = file.get("size") if isinstance(file.get("size"), int) else 0
        url = _text(file.get("url_private_download")) or _text(file.get("url_private"))
        described = Attachment(name, mimetype, size, sha256="", url=_text(file.get("url_private")) or url)
        if not url or file.get("mode") in ("tombstone", "hidden_by_limit") or file.get("is_external"):
            return described
        if size > self.max_bytes:
            self._log.info("file %s (%d bytes) is over max_file_mb; archived without content", name, size)
            return described
        failures = 0
        while True:
            try:
                data = await self._download(url, mimetype)
            except FileRefused as exc:
                self._log.warning("could not download %s: %s", name, exc)
                return described
            except NETWORK_ERRORS as exc:
                failures += 1
                if failures == _DOWNLOAD_ATTEMPTS:
                    self._log.warning("could not download %s: %s: %s", name, type(exc).__name__, exc)
                    return described
                await asyncio.sleep(0.2 * 2**failures)
                continue
            digest = hashlib.sha256(data).hexdigest()
            return Attachment(name, mimetype, len(data), digest, url=described.url, data=data)

    async def _download(self, url: str, mimetype: str) -> bytes:
        if not self._token_may_go_to(url):
            raise FileRefused(f"{urlsplit(url).hostname} is not a Slack host; the bot token stays home")
        headers = {"Authorization": f"Bearer {self._token}"}
        # Without the token's access Slack redirects to a sign-in page; following it
        # would archive that HTML as if it were the file.
        async with self._http.get(url, headers=headers, allow_redirects=False) as resp:
            if resp.status in _REDIRECTS:
                raise FileRefused(f"redirected to {resp.headers.get('Location', '?')} (missing files:read?)")
            if resp.status >= 500:
                raise aiohttp.ClientResponseError(
                    resp.request_info, resp.history, status=resp.status, message="server error"
                )
            if resp.status != 200:
                raise FileRefused(f"HTTP {resp.status}")
            if resp.content_type == "text/html" and mimetype != "text/html":
                raise FileRefused("got an HTML page instead of the file")
            chunks: list[bytes] = []
            total = 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                total += len(chunk)
                if total > self.max_bytes:
                    raise FileRefused("larger than max_file_mb")
                chunks.append(chunk)
            return b"".join(chunks)

    def _token_may_go_to(self, url: str) -> bool:
        host = urlsplit(url).hostname or ""
        if host == self._api_host:
            return True
        try:
            ipaddress.ip_address(self._api_host)
        except ValueError:
            # slack.com → files.slack.com: any host under the API host's domain.
            domain = ".".join(self._api_host.split(".")[-2:])
            return bool(domain) and (host == domain or host.endswith("." + domain))
        return False

    # -- bridge → Slack -------------------------------------------------------------

    async def upload(
        self, channel: str, files: Sequence[Upload], comment: str, thread_ts: str | None
    ) -> str | None:
        """Share `files` in one message; return its ts once Slack has shared it, or None.

        Raises what the Web API calls raise (SlackApiError, connection errors).
        """
        entries: list[dict[str, str | None]] = []
        for f in files:
            ticket = await self._web.files_getUploadURLExternal(filename=f.name, length=len(f.data))
            headers = {"Content-Type": f.mimetype or "application/octet-stream"}
            async with self._http.post(ticket["upload_url"], data=f.data, headers=headers) as resp:
                await resp.read()
                resp.raise_for_status()
            entries.append({"id": ticket["file_id"], "title": f.name})
        await self._web.files_completeUploadExternal(
            files=entries, channel_id=channel, initial_comment=comment or None, thread_ts=thread_ts
        )
        return await self._shared_ts(str(entries[0]["id"]), channel)

    async def _shared_ts(self, file_id: str, channel: str, timeout: float = 10.0) -> str | None:
        # Slack shares uploads asynchronously: the message ts shows up in files.info a moment later.
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                info = await self._web.files_info(file=file_id)
            except NETWORK_ERRORS as exc:
                self._log.warning("files.info %s: %s", file_id, exc)
                return None
            ts = _share_ts(info.get("file") or {}, channel)
            if ts is not None or time.monotonic() + delay > deadline:
                return ts
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


def _share_ts(file: Mapping[str, Any], channel: str) -> str | None:
    shares = file.get("shares")
    if not isinstance(shares, Mapping):
        return None
    for scope in ("public", "private"):
        entries = (shares.get(scope) or {}).get(channel)
        if entries:
            ts = entries[0].get("ts")
            return ts if isinstance(ts, str) else None
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
