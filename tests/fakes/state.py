"""The core's StateStore kept in memory, for connector tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MemoryState:
    values: dict[str, str] = field(default_factory=dict)

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str) -> None:
        self.values[key] = value
