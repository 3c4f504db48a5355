"""Names of Slack users and channels, fetched once and kept fresh by `user_change` events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

Fetch = Callable[[str], Awaitable[Mapping[str, Any]]]


def user_display(user: Mapping[str, Any]) -> str:
    """A person's name: the full (real) name, else the display name they chose, else the handle.

    Real names first, because this is what colleagues on other networks and the
    archive see for someone the directory does not know.
    """
    profile = user.get("profile")
    profile = profile if isinstance(profile, Mapping) else {}
    for value in (
        profile.get("real_name"),
        user.get("real_name"),
        profile.get("display_name"),
        user.get("name"),
        user.get("id"),
    ):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


@dataclass
class _Entry:
    name: str
    fetched: float


class NameCache:
    """Id → name, with one request in flight per id and a time-to-live as a safety net.

    A lookup that fails leaves the id as the name for a short while: a message is
    never held back because Slack would not say who sent it.
    """

    def __init__(
        self,
        fetch: Fetch,
        extract: Callable[[Mapping[str, Any]], str],
        log: logging.Logger,
        *,
        ttl: float = 3600.0,
        failure_ttl: float = 60.0,
    ) -> None:
        self._fetch = fetch
        self._extract = extract
        self._log = log
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[str]] = {}

    def known(self, key: str) -> str | None:
        entry = self._entries.get(key)
        return entry.name if entry is not None else None

    def put(self, key: str, name: str) -> None:
        self._entries[key] = _Entry(name, time.monotonic())

    def _fresh(self, key: str) -> str | None:
        entry = self._entries.get(key)
        return entry.name if entry is not None and time.monotonic() - entry.fetched < self._ttl else None

    async def get(self, key: str) -> str:
        name = self._fresh(key)
        if name is not None:
            return name
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(key))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(pending)

    async def prefetch(self, keys: Iterable[str]) -> None:
        missing = [k for k in dict.fromkeys(keys) if self._fresh(k) is None]
        if missing:
            await asyncio.gather(*(self.get(k) for k in missing))

    async def _load(self, key: str) -> str:
        try:
            name = self._extract(await self._fetch(key)) or key
        except (SlackApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._log.warning("could not look up %s: %s", key, exc)
            # Remembered as expired-but-for failure_ttl, so the next lookup after that retries.
            self._entries[key] = _Entry(key, time.monotonic() - self._ttl + self._failure_ttl)
            return key
        self.put(key, name)
        return name
