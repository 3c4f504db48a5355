"""The archive: an append-only, hash-committed log of everything the bridge saw."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    # Only for annotations: the offline bundle verifier imports bridge.archive.* without SQLAlchemy.
    from sqlalchemy import Connection

    from bridge.archive.store import ArchiveStore

T = TypeVar("T")


class AsyncArchive:
    """Runs every archive call on one writer thread, so the event loop never blocks on fsync.

    `write` commits together whatever writes are waiting when the thread gets to them (group
    commit): under load one transaction and one fsync carry many events and deliveries, and
    each caller still resumes only once its own work is committed.
    """

    def __init__(self, store: ArchiveStore) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive")
        self._waiting: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def write(self, work: Callable[[Connection], T]) -> T:
        """`work(conn)` inside a write transaction; returns once that transaction committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    outcomes = await self.call(self._commit, [work for work, _ in batch])
                except Exception as exc:  # the writer thread itself is gone: no caller may hang
                    outcomes = [(False, exc)] * len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller gave up; the work stands
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flusher = None

    def _commit(self, works: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        """On the writer thread: all in one transaction; if that fails, each alone, so only the
        work that fails is refused (nothing of the failed transaction was committed)."""
        try:
            with self.store.writing() as conn:
                return [(True, work(conn)) for work in works]
        except Exception as exc:
            if len(works) == 1:
                return [(False, exc)]
        return [self._commit([work])[0] for work in works]

    async def close(self) -> None:
        if self._flusher is not None:  # writes already accepted are committed first
            await self._flusher
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
