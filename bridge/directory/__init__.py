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
        """The person behind `native_id` on `network`, or None if unmapped."""
        ...

    def people(self) -> list[Identity]: ...


def handle_key(native_id: str) -> str:
    """Handles compare case-insensitively (IRC nicks, Slack ids, Matrix ids alike)."""
    return native_id.casefold()
