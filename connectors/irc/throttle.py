"""A token bucket sized to an IRC server's flood limits.

Servers penalise bursts (ngircd stops reading, others disconnect with
"Excess Flood"), so lines leave at the server's pace instead of being dropped
or held in memory by the bridge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """`burst` lines at once, then `rate` lines per second."""

    burst: int
    rate: float
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _stamp: float = field(init=False)

    def __post_init__(self) -> None:
        if self.burst < 1 or self.rate <= 0:
            raise ValueError("flood_burst must be at least 1 and flood_rate above 0")
        self._tokens = float(self.burst)
        self._stamp = self.clock()

    def reserve(self) -> float:
        """Take one token; return how many seconds to wait before using it.

        The bucket may go into debt, so callers reserving in turn get
        increasing waits and their lines keep their order.
        """
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        return max(0.0, -self._tokens / self.rate)
