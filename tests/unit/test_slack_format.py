"""Slack mrkdwn ↔ canonical text: every construct, escapes, round trips and hostile input."""

from __future__ import annotations

import random
import time
from dataclasses import replace

import pytest

from bridge.text import Span, Text
from connectors.slack.format import (
    ZWSP,
    channel_url,
    escape,
    mentioned_users,
    parse,
    render,
    unescape,
    unnamed_channels,
)

NAMES = {"U0ALICE": "Alice Smith", "U0BOB": "Bob Jones"}
CHANNELS = {"C0GENERAL": "general"}


def p(wire: str) -> Text:
    return parse(wire, "slack", NAMES.get, CHANNELS.get)


def r(text: Text) -> str:
    return render(text, "slack")


def spans(text: Text) -> list[tuple[str, str]]:
    """(kind, covered text) of each span, for readable assertions."""
    return [(s.kind, text.plain[s.start : s.end]) for s in text.spans]


# -- parsing each construct ---------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "plain", "expected"),
    [
        ("*bold*", "bold", [("bold", "bold")]),
        ("_italic_", "italic", [("italic", "italic")]),
        ("~strike~", "strike", [("strike", "strike")]),
        ("`code`", "code", [("code", "code")]),
        ("```pre\n  block```", "pre\n  block", [("pre", "pre\n  block")]),
        ("a *b c* d", "a b c d", [("bold", "b c")]),
        ("(*b*)", "(b)", [("bold", "b")]),
        ("*a _b_ c*", "a b c", [("bold", "a b c"), ("italic", "b")]),
        ("*`x`*", "x", [("bold", "x"), ("code", "x")]),
        ("`*not bold*`", "*not bold*", [("code", "*not bold*")]),
        ("```*not* _styled_```", "*not* _styled_", [("pre", "*not* _styled_")]),
    ],
)
def test_styles(wire: str, plain: str, expected: list[tuple[str, str]]) -> None:
    text = p(wire)
    assert text.plain == plain
    assert sorted(spans(text)) == sorted(expected)


@pytest.mark.parametrize(
    "wire",
    [
        "2 * 3 * 4",  # markers need a word right inside them
        "*not closed",
        "not *closed either",
        "snake_case_name",  # and no letter right outside
        "a*b*c",
        "* spaced *",
        "*across\nlines*",  # and stay within one line
        "**",
        "``",
        "`unclosed",
    ],
)
def test_markers_that_are_not_formatting(wire: str) -> None:
    text = p(wire)
    assert text.plain == wire and text.spans == ()


def test_links() -> None:
    text = p("<https://example.com/a?b=1&amp;c=2|the docs> and <https://x.test> and <mailto:a@b.test|mail>")
    assert text.plain == "the docs and https://x.test and mail"
    assert [s.url for s in text.spans] == [
        "https://example.com/a?b=1&c=2",
        "https://x.test",
        "mailto:a@b.test",
    ]
    assert spans(text) == [("link", "the docs"), ("link", "https://x.test"), ("link", "mail")]


def test_user_mentions_use_names_when_known() -> None:
    text = p("hi <@U0ALICE> and <@U0NOBODY> and <@U0OLD|olduser>")
    assert text.plain == "hi Alice Smith and U0NOBODY and olduser"
    assert [(s.kind, s.network, s.user) for s in text.spans] == [
        ("mention", "slack", "U0ALICE"),
        ("mention", "slack", "U0NOBODY"),
        ("mention", "slack", "U0OLD"),
    ]
    assert mentioned_users("<@U0ALICE> <@U0BOB|bob> <@U0ALICE> <#C1>") == ["U0ALICE", "U0BOB"]


def test_channel_mentions_become_channel_links() -> None:
    text = p("see <#C0DESK|desk>, <#C0GENERAL> and <#C0GENERAL|> and <#C0UNKNOWN>")
    assert text.plain == "see #desk, #general and #general and #C0UNKNOWN"
    assert [s.url for s in text.spans] == [
        channel_url("C0DESK"),
        channel_url("C0GENERAL"),
        channel_url("C0GENERAL"),
        channel_url("C0UNKNOWN"),
    ]
    assert unnamed_channels("<#C0DESK|desk> <#C0GENERAL> <#C0X|>") == ["C0GENERAL", "C0X"]


@pytest.mark.parametrize("target", ["here", "channel", "everyone"])
def test_broadcasts(target: str) -> None:
    text = p(f"<!{target}> look")
    assert text.plain == f"@{target} look"
    assert text.spans == (
        Span("mention", 0, len(target) + 1, network="slack", user=f"!{target}", broadcast=True),
    )
    assert r(text) == f"<!{target}> look"
    # The same id on a span no broadcast parser made (a forged pill, say) is text.
    assert r(Text(text.plain, (replace(text.spans[0], broadcast=False),))) == f"@{target} look"


def test_user_groups_and_other_specials() -> None:
    text = p("<!subteam^S0OPS|@ops> <!date^1392734382^{date}|Feb 18, 2014> <!subteam^S0SRE>")
    assert text.plain == "@ops Feb 18, 2014 @S0SRE"
    assert [s.user for s in text.mentions()] == ["!subteam^S0OPS", "!subteam^S0SRE"]
    assert r(text) == "<!subteam^S0OPS|@ops> Feb 18, 2014 <!subteam^S0SRE>"


def test_escapes_both_ways() -> None:
    text = p("a &lt; b &amp;&amp; c &gt; d &amp;lt; & bare")
    assert text.plain == "a < b && c > d &lt; & bare"
    assert r(text) == "a &lt; b &amp;&amp; c &gt; d &amp;lt; &amp; bare"
    assert unescape(escape("<&>&amp;")) == "<&>&amp;"


# -- round trips --------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        "*bold* _italic_ ~strike~ `code` ```pre\nblock```",
        "hi <@U0ALICE>, see <#C0GENERAL|general> &amp; <!here> a &lt; b &gt; c",
        "<https://example.com/a?b=1&amp;c=2|label> and <https://x.test> and <mailto:a@b.test|a@b.test>",
        "*<@U0ALICE>* _<https://a.test|x>_ ~<!channel>~",
        "*a _b_ c* and _a *b* c_",
        "2 * 3 * 4 and *not closed and snake_case_name and a*b*c",
        "**bold** __init__ ~~x~~",
        "`a` `b` ``` ``` `<@U0BOB>`",
        "```\nmulti\n  line &lt;code&gt;\n```",
        "*a `b* c` d*",
        "<#C0UNKNOWN> <#C0DESK|desk> <!everyone> <!subteam^S0OPS|@ops>",
        "line one\n*line two*\n\n_line four_",
        "emoji :tada: and 🎉 *ünïcödé* _日本語_",
        "",
    ],
)
def test_slack_text_slack_is_stable(wire: str) -> None:
    assert r(p(wire)) == wire


def test_nested_styles_of_equal_extent_render_in_one_order() -> None:
    # Text cannot say which of two equal spans was outside; bold always is.
    assert r(p("~*x*~")) == "*~x~*"
    assert r(p(r(p("~*x*~")))) == "*~x~*"


def test_mentions_of_other_networks_and_foreign_spans() -> None:
    text = Text(
        "ping Alice and carol and here",
        (
            Span("mention", 5, 10, network="matrix", user="@alice:corp.test"),
            Span("mention", 15, 20, network="irc", user="carol"),
            Span("mention", 25, 29, network="slack", user="not an id> <!channel"),
        ),
    )
    assert r(text) == "ping @Alice and @carol and @here"


def test_styles_render_where_slack_reads_them() -> None:
    # Inside a word: zero-width spaces give the markers the boundary they need.
    inner = Text("hello world", (Span("bold", 1, 4),))
    assert r(inner) == f"h{ZWSP}*ell*{ZWSP}o world"
    assert p(r(inner)) == inner
    # Across lines: closed before each line break and reopened after it.
    lines = Text("one\ntwo", (Span("italic", 0, 7),))
    assert r(lines) == "_one_\n_two_"
    # Edge whitespace moves outside the markers.
    spaced = Text("a  b  c", (Span("strike", 1, 6),))
    assert r(spaced) == "a  ~b~  c"
    # Underline has no mrkdwn; the words stay.
    assert r(Text("under", (Span("underline", 0, 5),))) == "under"


def test_literal_markers_from_elsewhere_do_not_turn_into_formatting() -> None:
    for plain in ("a *b* c", "x _y_ z", "~gone~", "`tick` `tock`", "```fenced```"):
        wire = r(Text(plain))
        assert ZWSP in wire
        assert p(wire) == Text(plain)
    # Literals that Slack would not read as formatting are left alone.
    for plain in ("2 * 3 * 4", "*not closed", "snake_case"):
        assert r(Text(plain)) == plain


def test_links_render_safely() -> None:
    odd = Text("odd", (Span("link", 0, 3, url="https://x.test/a|b>c&d"),))
    assert r(odd) == "<https://x.test/a%7Cb&gt;c&amp;d|odd>"
    bad = Text("click", (Span("link", 0, 5, url="javascript:alert(1)"),))
    assert r(bad) == "click"
    label = Text("<b>&", (Span("link", 0, 4, url="https://x.test"),))
    assert r(label) == "<https://x.test|&lt;b&gt;&amp;>"


def test_code_spans_that_mrkdwn_cannot_hold() -> None:
    multi = Text("a\nb", (Span("code", 0, 3),))
    assert r(multi) == "```a\nb```"
    ticked = Text("x`y", (Span("code", 0, 3),))
    assert p(r(ticked)).plain == "x`y"


# -- hostile input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "plain",
    [
        "<@U0ALICE>",
        "<!channel> everyone look",
        "<https://evil.test|https://bank.test>",
        "&lt;@U0ALICE&gt;",
        "<#C0GENERAL|general>",
    ],
)
def test_text_that_looks_like_control_sequences_stays_text(plain: str) -> None:
    wire = r(Text(plain))
    assert "<" not in wire and ">" not in wire
    assert p(wire) == Text(plain)


@pytest.mark.parametrize(
    "wire",
    [
        "<>",
        "<|>",
        "<@>",
        "<#>",
        "<!>",
        "< >",
        "<<@U0ALICE>>",
        "&amp",
        "&#60;",
        "<javascript:alert(1)|click>",
        "<not a url|label>",
        "*_~`" * 50,
        "\x00\x1b[31m",
        "```",
        ZWSP * 3 + "*" + ZWSP,
    ],
)
def test_odd_wire_text_parses_without_error(wire: str) -> None:
    text = p(wire)
    for span in text.spans:
        assert 0 <= span.start < span.end <= len(text.plain)
    r(text)


def test_pathological_input_stays_fast() -> None:
    # 12,000 characters each: linear work takes a fraction of a second, quadratic many seconds.
    for wire in ("*a " * 4000, "_" * 12_000, "`a " * 4000, "<@U0ALICE> *x " * 1000, "*" + "a_" * 6000):
        started = time.process_time()
        text = p(wire)
        r(text)
        assert time.process_time() - started < 1.5, wire[:20]


# -- property: canonical text survives mrkdwn -------------------------------------------

WORDS = ["alpha", "b", "2*3", "*", "_x_", "~", "`", "snake_case", "x&y", "<tag>", "a*b*c", "é", "日本"]
SEPARATORS = ["", " ", "  ", "\n", ", ", " *", "_ "]
STYLES = ["bold", "italic", "strike"]


def _random_text(rng: random.Random) -> Text:
    plain = ""
    bounds = [0]
    atoms: list[Span] = []
    for _ in range(rng.randint(1, 8)):
        plain += rng.choice(SEPARATORS)
        start = len(plain)
        roll = rng.random()
        if roll < 0.1:
            plain += "Alice Smith"
            atoms.append(Span("mention", start, len(plain), network="slack", user="U0ALICE"))
        elif roll < 0.2:
            plain += "docs"
            atoms.append(Span("link", start, len(plain), url="https://docs.test/?a=1&b=2"))
        elif roll < 0.3:
            plain += rng.choice(["print(x)", "a_b", "x * y"])
            atoms.append(Span("code", start, len(plain)))
        else:
            plain += rng.choice(WORDS)
        bounds += [start, len(plain)]
    styles = []
    for _ in range(rng.randint(0, 4)):
        a, b = sorted(rng.sample(bounds, 2)) if len(set(bounds)) > 1 else (0, 0)
        if a < b:
            styles.append(Span(rng.choice(STYLES), a, b))
    return Text(plain, tuple(sorted(atoms + styles, key=lambda s: (s.start, -s.end))))


def _signature(text: Text) -> list[tuple[str, frozenset[str], str, str, bool]]:
    """What a reader sees per character: styles, link, mention, code.

    Styles on whitespace do not show, and styles on a literal `*_~`` ` `` at the edge
    of a styled run cannot be written in mrkdwn; neither is compared.
    """
    out = []
    for i, ch in enumerate(text.plain):
        active = [s for s in text.spans if s.start <= i < s.end]
        shown = not ch.isspace() and ch not in "*_~`"
        styles = frozenset(s.kind for s in active if s.kind in STYLES) if shown else frozenset()
        link = next((s.url for s in active if s.kind == "link"), "")
        user = next((s.user for s in active if s.kind == "mention"), "")
        code = any(s.kind in ("code", "pre") for s in active)
        out.append((ch, styles, link, user, code))
    return out


def _expected(text: Text) -> Text:
    # Styles over part of a code span or link cannot be shown: code and links are whole.
    atoms = [s for s in text.spans if s.kind in ("code", "link", "mention")]
    kept = [
        s
        for s in text.spans
        if s.kind not in STYLES
        or all(s.end <= a.start or s.start >= a.end or (s.start <= a.start and s.end >= a.end) for a in atoms)
    ]
    return Text(text.plain, tuple(kept))


@pytest.mark.parametrize("seed", range(300))
def test_random_text_survives_slack(seed: int) -> None:
    rng = random.Random(seed)
    text = _random_text(rng)
    wire = r(text)
    back = parse(wire, "slack", NAMES.get)
    assert _signature(back) == _signature(_expected(text)), (text, wire)
    assert r(parse(r(back), "slack", NAMES.get)) == r(back)


def test_a_styled_block_over_lines_renders_without_markers_slack_would_show() -> None:
    """Found by hypothesis: `*```x\n```*` is not bold on Slack (styles live within a line), so the
    stars showed as text; the block goes unstyled, the words around it keep theirs."""
    text = Text("b x\ny c", (Span("bold", 0, 7), Span("pre", 2, 5)))
    assert r(text) == "*b* ```x\ny``` *c*"
    assert p(r(text)).plain == "b x\ny c"
