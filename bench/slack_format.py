"""Slack mrkdwn parse and render on adversarial input: does the time double when the input does?

    .venv/bin/python bench/slack_format.py [--size CHARS]

For each shape, the CPU time (`time.process_time`, best of 3) of parsing the wire text
and of rendering the parsed text back, at `size` and at twice `size` characters, and
the ratio. Linear work shows a ratio near 2; quadratic, near 4. The tests assert the
same on call counts (tests/unit/test_slack_properties.py), which load cannot skew.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.slack.format import parse, render  # noqa: E402

SHAPES = {
    "styled words `*a `": "*a ",
    "unclosed markers `_`": "_",
    "code ticks `` `a ``": "`a ",
    "mentions and bold": "<@U0ALICE> *x ",
    "alternating `a_`": "a_",
    "links": "<https://a.test/?a=1&amp;b=2|label> ",
    "fenced literals `*_~`": "*_~` ",
}


def best(work: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=40_000, help="characters of the smaller input")
    size = parser.parse_args().size
    print(
        f"{'shape':28} {'parse ms':>9} {'×2 ms':>9} {'ratio':>6} {'render ms':>10} {'×2 ms':>9} {'ratio':>6}"
    )
    for name, unit in SHAPES.items():
        small, large = unit * (size // len(unit)), unit * (2 * size // len(unit))
        p1, p2 = best(lambda s=small: parse(s, "slack")), best(lambda s=large: parse(s, "slack"))
        t1, t2 = parse(small, "slack"), parse(large, "slack")
        r1, r2 = best(lambda t=t1: render(t, "slack")), best(lambda t=t2: render(t, "slack"))
        print(
            f"{name:28} {p1 * 1e3:9.1f} {p2 * 1e3:9.1f} {p2 / max(p1, 1e-9):6.2f}"
            f" {r1 * 1e3:10.1f} {r2 * 1e3:9.1f} {r2 / max(r1, 1e-9):6.2f}"
        )


if __name__ == "__main__":
    main()
