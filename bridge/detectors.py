"""Built-in data-loss detectors, named in config as `detector: <name>`."""

from __future__ import annotations

import re
from collections.abc import Callable

# 13-19 digits, single spaces or dashes allowed between them (4111 1111 1111 1111, 4111-1111-…).
_CARD = re.compile(r"(?<!\d)(?<!\d-)\d(?:[ -]?\d){12,18}(?![\d])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_number(text: str) -> bool:
    """True when `text` holds a payment card number (Luhn-valid)."""
    for match in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if luhn_ok(digits):
            return True
    return False


DETECTORS: dict[str, Callable[[str], bool]] = {"card_number": card_number}
