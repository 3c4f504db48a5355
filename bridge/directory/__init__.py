"""The corporate directory: who is behind a handle on a network.

Sources implement `Directory`; the router only ever calls `resolve`, which must
be cheap (served from memory) because it runs for every message.
"""

from __future__ import annotations

from typing import Protocol

from bridge.model import Identity


class Directory(Protocol):
    async def start(self) -> None:
        """Load the directory and begin any periodic refresh."""
        ...

    async def stop(self) -> None: ...

    def resolve(self, network: str, native_id: str) -> Identity | None:
        """From memory only: the person behind `native_id` on `network`, or None if not known."""
        ...

    async def lookup(self, network: str, native_id: str) -> Identity | None:
        """Like resolve, but may ask the directory server about a handle not in memory."""
        ...

    def people(self) -> list[Identity]: ...


def handle_key(native_id: str) -> str:
    """Handles compare case-insensitively (IRC nicks, Slack ids, Matrix ids alike)."""
    return native_id.casefold()
