"""The archive: an append-only, hash-committed log of everything the bridge saw."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    # Only for annotations: the offline bundle verifier imports bridge.archive.* without SQLAlchemy.
    from bridge.archive.store import ArchiveStore

T = TypeVar("T")


class AsyncArchive:
    """Runs every archive call on one writer thread, so the event loop never blocks on fsync."""

    def __init__(self, store: ArchiveStore) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def close(self) -> None:
        await self.call(self.store.close)
        self._pool.shutdown(wait=True)


class ArchiveState:
    """The `StateStore` connectors get: small durable key-value state in the archive database."""

    def __init__(self, archive: AsyncArchive, prefix: str) -> None:
        self.archive = archive
        self.prefix = prefix

    async def get(self, key: str) -> str | None:
        return await self.archive.call(self.archive.store.state_get, f"{self.prefix}:{key}")

    async def put(self, key: str, value: str, ttl: float | None = None) -> None:
        await self.archive.call(self.archive.store.state_put, f"{self.prefix}:{key}", value, ttl)
