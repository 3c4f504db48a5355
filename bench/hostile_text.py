"""What hostile message text costs to parse and render, as the input doubles.

    .venv/bin/python bench/hostile_text.py [--size CHARS]

Each row times one conversion at `size` and at twice `size` characters (CPU time of
this process); linear work about doubles, quadratic work quadruples. The standard
library's HTMLParser, which the Matrix connector no longer uses, is timed beside the
tokenizer that replaced it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.text import Span  # noqa: E402
from connectors.irc.format import render as irc_render  # noqa: E402
from connectors.matrix.format import parse_html, render  # noqa: E402
from connectors.matrix.ghosts import Ghosts  # noqa: E402
from connectors.slack.format import parse as slack_parse  # noqa: E402
from connectors.slack.format import render as slack_render  # noqa: E402

GHOSTS = Ghosts("_sb_", "corp.test")


def stdlib(html: str) -> None:
    parser = HTMLParser()
    parser.feed(html)
    parser.close()


def matrix(html: str) -> None:
    render(parse_html(html, network="matrix", ghosts=GHOSTS), network="matrix", ghosts=GHOSTS)


def mentions(wire: str) -> None:
    text = slack_parse(wire, "slack")
    changes = {
        i: ("Alice Smith", Span("mention", 0, 0, user="@alice:corp.test")) for i in range(len(text.spans))
    }
    text.replace_spans(changes)


CASES: list[tuple[str, str, Callable[[str], object]]] = [
    ("stdlib HTMLParser, '<a ' * N", "<a ", stdlib),
    ("Matrix parse+render, '<a ' * N", "<a ", matrix),
    ("Matrix parse+render, '<b>a' * N", "<b>a", matrix),
    ("Matrix parse+render, '<blockquote>a<br>' * N", "<blockquote>a<br>", matrix),
    (
        "Slack '*a* ' * N → Matrix",
        "*a* ",
        lambda w: render(slack_parse(w, "slack"), network="m", ghosts=GHOSTS),
    ),
    ("Slack '*a* ' * N → Slack", "*a* ", lambda w: slack_render(slack_parse(w, "slack"), "slack")),
    ("Slack '*a* ' * N → IRC", "*a* ", lambda w: irc_render(slack_parse(w, "slack"))),
    ("Slack '<@U1> ' * N, mentions renamed", "<@U0ALICE> ", mentions),
    (
        "Slack '<https://e.com/|x> ' * N → IRC",
        "<https://e.com/|x> ",
        lambda w: irc_render(slack_parse(w, "slack")),
    ),
]


def seconds(fn: Callable[[str], object], text: str) -> float:
    started = time.process_time()
    fn(text)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=20_000, help="characters of the smaller input")
    args = parser.parse_args()
    print(f"| input | {args.size:,} chars | {2 * args.size:,} chars | ratio |")
    print("|---|---|---|---|")
    for name, unit, fn in CASES:
        n = max(1, args.size // len(unit))
        small, large = seconds(fn, unit * n), seconds(fn, unit * 2 * n)
        print(f"| {name} | {small:.3f} s | {large:.3f} s | {large / max(small, 1e-6):.1f}× |")


if __name__ == "__main__":
    main()
