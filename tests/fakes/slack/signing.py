"""Slack request signing (v0) and a sender for signed Events API requests."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp


def sign(signing_secret: str, timestamp: str | int, body: bytes) -> str:
    """`X-Slack-Signature` for `body`: v0 HMAC-SHA256 over `v0:{timestamp}:{body}`."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(signing_secret, ts, body),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }


@dataclass(frozen=True)
class SignedPostResult:
    status: int
    body: str
    headers: dict[str, str]


async def post_signed_event(
    url: str,
    body: dict[str, Any] | bytes,
    signing_secret: str,
    *,
    timestamp: int | None = None,
    retry_num: int | None = None,
    retry_reason: str | None = None,
    timeout: float = 3.0,
    session: aiohttp.ClientSession | None = None,
) -> SignedPostResult:
    """POST one Events API request the way Slack does (signature, retry headers).

    `timestamp` lets a test send a stale request (Slack's receivers reject ones older
    than five minutes). Raises asyncio.TimeoutError when the receiver is slower than
    `timeout`, which is what Slack counts as `http_timeout`.
    """
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = signed_headers(signing_secret, raw, timestamp)
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        async with session.post(
            url, data=raw, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            return SignedPostResult(resp.status, await resp.text(), dict(resp.headers))
    finally:
        if own:
            await session.close()


def url_verification_body(challenge: str, verification_token: str) -> dict[str, Any]:
    """The request Slack sends when an Events API Request URL is saved."""
    return {"token": verification_token, "challenge": challenge, "type": "url_verification"}
