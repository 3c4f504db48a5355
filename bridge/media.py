"""Links to archived files, for networks that cannot carry files (IRC).

A file that reaches IRC is a line naming it. Without a link an IRC user could
not open a Matrix upload at all, and a Slack file's own URL wants a Slack login.
With `media:` configured the line links to the bridge instead, which serves the
bytes the archive kept with the message:

    {public_url}/media/{seq}/{sha256}/{signature}/{name}

The signature is an HMAC of seq and sha256 under `media.secret`, so links can
neither be guessed nor altered; a link stops working when retention purges the
file. Files are served as downloads (`Content-Disposition: attachment`, no
sniffing, a sandboxing CSP): an uploaded HTML or SVG file must not run as a
page of the bridge's origin.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from bridge.archive import AsyncArchive
from bridge.httpserver import HttpServer

log = logging.getLogger("switchboard.media")
SIGNATURE_HEX = 32  # 128 bits of HMAC-SHA256
MAX_BODY = 1024  # GET only: no request to this server has a body worth reading
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class MediaLinks:
    public_url: str  # how users reach the media server, e.g. https://bridge.corp.example
    secret: bytes

    def url(self, seq: int, sha256: str, name: str) -> str:
        safe = quote(name or "file", safe="")
        return f"{self.public_url.rstrip('/')}/media/{seq}/{sha256}/{self.signature(seq, sha256)}/{safe}"

    def signature(self, seq: int, sha256: str) -> str:
        digest = hmac.new(self.secret, f"{seq}/{sha256}".encode(), hashlib.sha256).hexdigest()
        return digest[:SIGNATURE_HEX]

    def valid(self, seq: int, sha256: str, signature: str) -> bool:
        return hmac.compare_digest(self.signature(seq, sha256).encode(), signature.encode())


class MediaServer:
    """Serves archived files to holders of a signed link."""

    def __init__(self, links: MediaLinks, archive: AsyncArchive, host: str, port: int) -> None:
        self.links = links
        self.archive = archive
        self.host, self.port = host, port
        self._http = HttpServer(host, port, max_body=MAX_BODY)
        self._http.app.router.add_get("/media/{seq:[0-9]+}/{sha256}/{signature}/{name}", self._file)

    async def start(self) -> None:
        await self._http.start()

    async def stop(self) -> None:
        await self._http.stop()

    async def _file(self, request: web.Request) -> web.Response:
        seq, sha256 = int(request.match_info["seq"]), request.match_info["sha256"]
        if not _SHA256.fullmatch(sha256) or not self.links.valid(
            seq, sha256, request.match_info["signature"]
        ):
            log.warning("refused a media request with a bad signature from %s", request.remote)
            return web.Response(status=403, text="this link is not valid\n")
        kept = await self.archive.call(self.archive.store.files_of, seq)
        data = kept.get(sha256)
        if data is None:
            return web.Response(status=410, text="this file is no longer kept (retention)\n")
        name = request.match_info["name"]
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, max-age=86400",
            },
        )
