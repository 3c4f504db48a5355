"""Properties of Slack mrkdwn parsing and rendering, found by hypothesis.

For any wire text and any canonical text: parsing and rendering never raise, spans
stay inside the text, a second round trip changes nothing, and the work done grows
linearly with the input (counted in Python calls, which unlike time does not depend
on the machine's load).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.text import Span, Text
from connectors.slack.format import ZWSP, escape, parse, render

NAMES = {"U0ALICE": "Alice Smith", "U0BOB": "Bob Jones"}
CHANNELS = {"C0GENERAL": "general"}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Wire text: mostly the characters mrkdwn gives meaning to, so hypothesis explores the grammar.
MEANINGFUL = "<>&|*_~`@#!^ \n\t:;/.?=" + ZWSP
PIECES = [
    "<@U0ALICE>",
    "<@U0NOBODY|x>",
    "<#C0GENERAL>",
    "<#C0GENERAL|general>",
    "<!here>",
    "<!channel>",
    "<!subteam^S0OPS|@ops>",
    "<https://a.test/?a=1&amp;b=2|label>",
    "<mailto:a@b.test>",
    "<javascript:alert(1)|x>",
    "&amp;",
    "&lt;",
    "&gt;",
    "&bogus;",
    "```",
    "*",
    "_",
    "~",
    "`",
    ZWSP,
    "é",
    "🎉",
    "\u202e",
]
wire_text = st.lists(
    st.one_of(
        st.sampled_from(PIECES),
        st.text(alphabet=st.sampled_from(MEANINGFUL + "ab1"), max_size=6),
        st.text(max_size=4),  # any code point, surrogates included
    ),
    max_size=30,
).map("".join)

KINDS = ["bold", "italic", "strike", "underline", "code", "pre", "link", "mention"]


@st.composite
def canonical_text(draw: st.DrawFn) -> Text:
    plain = draw(
        st.text(alphabet=st.sampled_from("ab *_~`<>&\n" + ZWSP + "é"), max_size=40) | st.text(max_size=20)
    )
    spans = []
    for _ in range(draw(st.integers(0, 6))):
        if not plain:
            break
        start = draw(st.integers(0, len(plain) - 1))
        end = draw(st.integers(start + 1, len(plain)))
        kind = draw(st.sampled_from(KINDS))
        url = draw(
            st.sampled_from(
                [
                    "https://a.test/x?y=1&z=2",
                    "https://slack.com/app_redirect?channel=C0GENERAL",
                    "javascript:x",
                    "a|b>c",
                    "",
                ]
            )
        )
        user = draw(st.sampled_from(["U0ALICE", "!here", "!channel", "!everyone", "!subteam^S1", "@x:y", ""]))
        network = draw(st.sampled_from(["slack", "matrix", "irc"]))
        spans.append(Span(kind, start, end, url=url if kind == "link" else "", network=network, user=user))
    return Text(plain, tuple(sorted(spans, key=lambda s: (s.start, -s.end))))


def p(wire: str) -> Text:
    return parse(wire, "slack", NAMES.get, CHANNELS.get)


def r(text: Text) -> str:
    return render(text, "slack")


def inside(text: Text) -> bool:
    return all(0 <= s.start < s.end <= len(text.plain) for s in text.spans)


@SETTINGS
@given(wire_text)
@example("*a _b_ c* ```x``` <@U0ALICE> &amp;")
@example("\ud800*x*")
def test_parse_never_raises_and_spans_stay_inside(wire: str) -> None:
    text = p(wire)
    assert isinstance(text.plain, str) and inside(text)
    assert len(text.plain) <= len(wire) + sum(
        len(n) for n in (*NAMES.values(), *CHANNELS.values())
    ) * wire.count("<")


@SETTINGS
@given(canonical_text())
def test_render_never_raises(text: Text) -> None:
    wire = r(text)
    assert isinstance(wire, str)
    assert inside(p(wire))


def fenced(text: str) -> bool:
    """A zero-width space beside a marker: the renderer's own fence, which parsing drops by
    design (mrkdwn has no escape), so a literal one there does not survive; see format.py."""
    return any(
        text[i] == ZWSP and ((i and text[i - 1] in "*_~`") or text[i + 1 : i + 2] in ("*", "_", "~", "`"))
        for i in range(len(text))
    )


@SETTINGS
@given(wire_text.filter(lambda w: not fenced(w)))
def test_slack_text_is_stable_after_one_round_trip(wire: str) -> None:
    once = r(p(wire))
    assert r(p(once)) == once


def unholdable_code(text: Text) -> bool:
    """Code or pre whose content has a backtick (mrkdwn cannot write that; format.py renders it
    as plain text), or inline code over a line break (written as a pre block, which reads back as
    pre): what comes back is another text, whose rendering may fence differently."""
    return any(
        (s.kind in ("code", "pre") and "`" in text.plain[s.start : s.end])
        or (s.kind == "code" and "\n" in text.plain[s.start : s.end])
        for s in text.spans
    )


@SETTINGS
@given(canonical_text().filter(lambda t: ZWSP not in t.plain and not unholdable_code(t)))
@example(Text("\na", (Span("bold", 0, 1), Span("pre", 0, 1))))
@example(Text("0000#", (Span("link", 4, 5, url="https://slack.com/app_redirect?channel=C0GENERAL"),)))
def test_canonical_text_is_stable_after_one_round_trip(text: Text) -> None:
    once = r(text)
    assert r(p(once)) == once


def settles(wire: str) -> bool:
    """Round trips reach a fixed point: each can only drop a zero-width space beside a marker
    (parsing takes it for a fence), so within one trip per such space and two more."""
    for _ in range(wire.count(ZWSP) + 2):
        again = r(p(wire))
        if again == wire:
            return True
        assert len(again) <= 3 * len(wire) + 8, (wire, again)  # at most fences are added
        wire = again
    return r(p(wire)) == wire


@SETTINGS
@given(canonical_text())
@example(Text("_" + ZWSP * 3))
def test_any_canonical_text_settles_after_round_trips(text: Text) -> None:
    assert settles(r(text))


@SETTINGS
@given(wire_text)
@example("_" + ZWSP * 3)
def test_any_slack_text_settles_after_round_trips(wire: str) -> None:
    assert settles(r(p(wire)))


@SETTINGS
@given(st.text(max_size=60).filter(lambda s: ZWSP not in s))
def test_plain_text_survives_rendering_as_written(plain: str) -> None:
    """Literal markers, `<`, `&`: whatever a person typed elsewhere reads the same on Slack."""
    back = p(r(Text(plain)))
    assert back.plain == plain
    assert not [s for s in back.spans if s.kind in ("bold", "italic", "strike", "code", "pre")]


@SETTINGS
@given(st.text(alphabet=st.characters(blacklist_characters="*_~`" + ZWSP), max_size=60))
def test_escaped_text_parses_back_to_itself(plain: str) -> None:
    assert p(escape(plain)).plain == plain


# -- linear work ------------------------------------------------------------------------


def calls(work: Callable[[], Any]) -> int:
    """How many Python and C functions `work` calls: a measure of work that load cannot skew."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        work()
    finally:
        sys.setprofile(None)
    return count


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from([*PIECES, "a ", "a", " ", "\n", "*a ", "_a", "`a "]), min_size=1, max_size=6
    ).map("".join)
)
@example("*a ")  # the quadratic span sweep of issue 9, hole 2
@example("<@U0ALICE> *x ")
@example("a_")
def test_parse_and_render_work_grows_linearly(unit: str) -> None:
    """Doubling the input at most doubles the work, give or take a constant overhead."""
    n = max(8, 2000 // len(unit))
    small, large = unit * n, unit * (2 * n)
    parse_small, parse_large = calls(lambda: p(small)), calls(lambda: p(large))
    assert parse_large <= 2.2 * parse_small + 200, (unit, parse_small, parse_large)
    text_small, text_large = p(small), p(large)
    render_small, render_large = calls(lambda: r(text_small)), calls(lambda: r(text_large))
    assert render_large <= 2.2 * render_small + 200, (unit, render_small, render_large)
    assert len(r(text_large)) <= 3 * len(large) + 100  # fencing adds at most a few characters each
