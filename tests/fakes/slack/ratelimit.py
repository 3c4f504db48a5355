"""Token buckets for Slack's per-channel and per-method rate limits."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """Buckets keyed by anything (a channel id, a method name).

    `rate` and `burst` are read on every call, so a test can change them mid-run and
    the next request obeys the new values.
    """

    rate: float | None  # requests per second; None disables the limit
    burst: int = 1
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def acquire(self, key: str) -> int | None:
        """Take one token; None when allowed, else the Retry-After seconds (>= 1)."""
        if self.rate is None or self.rate <= 0:
            return None
        now = self.clock()
        capacity = max(1, self.burst)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(capacity), updated=now)
        bucket.tokens = min(float(capacity), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        self.hits[key] = self.hits.get(key, 0) + 1
        # Slack sends whole seconds and never 0, so a client that sleeps exactly
        # Retry-After is always allowed on its next try.
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))

    def reset(self) -> None:
        self._buckets.clear()
