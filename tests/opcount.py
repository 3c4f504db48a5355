"""Work counted, not timed: the Python lines and calls a function runs, for linearity tests.

A count is the same on a loaded machine as on an idle one, so tests can assert that
doubling the input at most (about) doubles the work.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


def operations(fn: Callable[[], Any]) -> int:
    """How many line and call events running `fn` makes (every frame, library code included)."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
        nonlocal count
        count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(previous)
    return count


def growth(make: Callable[[int], Callable[[], Any]], n: int) -> float:
    """How much more work `make(2n)` takes than `make(n)`: about 2 when linear, 4 when quadratic."""
    return operations(make(2 * n)) / operations(make(n))


class Scanned:
    """Characters a scanner examined through the str and regex calls it makes, for C-level work
    that line counts cannot see (CPython's quadratic HTMLParser makes a linear number of calls,
    each rescanning the rest of its input)."""

    def __init__(self) -> None:
        self.chars = 0

    def text(self, s: str) -> str:
        counter = self

        class Counted(str):
            def find(self, sub: str, start: int = 0, end: int | None = None) -> int:  # type: ignore[override]
                stop = len(self) if end is None else end
                found = str.find(self, sub, start, stop)
                counter.chars += (found + len(sub) if found >= 0 else stop) - start + 1
                return found

            def startswith(self, prefix: Any, start: int = 0, end: int | None = None) -> bool:  # type: ignore[override]
                counter.chars += max(map(len, prefix)) if isinstance(prefix, tuple) else len(prefix)
                return str.startswith(self, prefix, start, len(self) if end is None else end)

        return Counted(s)

    def pattern(self, pattern: re.Pattern[str]) -> Any:
        counter = self

        class Counted:
            def match(self, s: str, pos: int = 0) -> re.Match[str] | None:
                found = pattern.match(s, pos)
                counter.chars += (found.end() if found else pos) - pos + 1
                return found

            def search(self, s: str, pos: int = 0) -> re.Match[str] | None:
                found = pattern.search(s, pos)
                counter.chars += (found.end() if found else len(s)) - pos + 1
                return found

        return Counted()
