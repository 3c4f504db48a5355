"""The core's StateStore kept in memory, for connector tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MemoryState:
    values: dict[str, str] = field(default_factory=dict)
    ttls: dict[str, float | None] = field(default_factory=dict)  # what each key was put with
    reads: int = 0

    async def get(self, key: str) -> str | None:
        self.reads += 1
        return self.values.get(key)

    async def put(self, key: str, value: str, ttl: float | None = None) -> None:
        self.values[key] = value  # kept: nothing here lives long enough to expire
        self.ttls[key] = ttl
