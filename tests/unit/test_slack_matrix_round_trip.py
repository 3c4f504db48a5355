"""Slack mrkdwn → canonical → Matrix content → canonical → Slack mrkdwn, unchanged.

What a Matrix user sends back when they reply with, or edit, the text they were shown.
Mentions of people are left to the router (it maps them between networks), so they are not here.
"""

from __future__ import annotations

import pytest

from bridge.text import Text
from connectors.matrix.format import parse_content
from connectors.matrix.ghosts import Ghosts
from connectors.matrix.outbound import text_content
from connectors.slack.format import parse, render

GHOSTS = Ghosts("_sb_", "corp.test")


def shape(text: Text) -> tuple[str, list[tuple[str, int, int, str, str]]]:
    """All but the network a span was parsed on: Matrix writes down its own."""
    return text.plain, [(s.kind, s.start, s.end, s.url, s.user) for s in text.spans]


def via_matrix(text: Text) -> Text:
    content = text_content(text, "m.text", network="matrix", ghosts=GHOSTS)
    return parse_content(content, network="matrix", ghosts=GHOSTS, reply=False)


@pytest.mark.parametrize(
    "wire",
    [
        "*bold* _it_ ~gone~ `x = 1`",
        "look:\n```def f():\n    return 1```",
        "```def f():\n    return 1```\nafter",
        "before\n\n```x```\n\n\nafter",
        "```one```\n```two```\n\n```three```",
        "```\nmulti\n  line &lt;code&gt;\n```",
        "<!here> heads up",
        "<!channel> heads up",
        "<!everyone>: *<!here>* and _<!channel>_",
        "<https://example.com/a?b=1&amp;c=2|the docs> <#C0DESK|desk> a &amp; b &lt;c&gt;",
    ],
)
def test_mrkdwn_survives_a_trip_through_matrix(wire: str) -> None:
    text = parse(wire, "slack")
    back = via_matrix(text)
    assert shape(back) == shape(text)
    assert render(back, "slack") == wire


def test_a_broadcast_written_on_matrix_is_slacks_own() -> None:
    content = {"body": "@room and @here", "m.mentions": {"room": True}}
    text = parse_content(content, network="matrix", ghosts=GHOSTS, reply=False)
    assert render(text, "slack") == "<!channel> and <!here>"
    content["m.mentions"] = {}
    assert render(parse_content(content, network="matrix", ghosts=GHOSTS, reply=False), "slack") == (
        "@room and @here"
    )
