"""Properties of everything that turns IRC input into events and events into IRC lines.

For any input: nothing raises, what is claimed to round-trip does, no CR, LF
or NUL reaches the wire, and the work grows linearly with the input. Work is
counted in executed Python lines of the bridge's own code (deterministic,
unlike time on a shared machine); the C calls those lines make (slices,
finds) are each bounded by the piece of input they look at.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.model import Outbound, Sender
from bridge.text import Span, Text
from connectors.irc.format import CODES, mentions_as_nicks, parse, render
from connectors.irc.line import Line, message_kind, parse_line
from connectors.irc.outbound import Templates, payloads
from connectors.irc.split import split_line, utf8_len, wire_safe

ROOT = Path(__file__).parents[2]
TRACED = (str(ROOT / "connectors" / "irc"), str(ROOT / "bridge" / "text.py"))
FORMATTING = set("\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f")
STYLES = tuple(CODES)  # the styles IRC can show
# Characters that mean something to the parsers, mixed with anything at all.
TRICKY_CHARS = st.sampled_from(
    [
        *"\x00\x01\x02\x03\x04\x0f\x10\x11\x16\x1d\x1e\x1f\r\n\t ,:;=@!\\()./0123456789abcdefABCDEF",
        "\ud800",
        "é",
        "😀",
        "\u200d",
    ]
)
TRICKY = st.one_of(TRICKY_CHARS, st.sampled_from(["http://", "https://a.test/"]))
ANY_TEXT = st.lists(st.one_of(TRICKY, st.characters()), max_size=80).map("".join)
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALICE = Sender("matrix", "@alice:corp.test", "Alice Smith", "Alice Smith", "Matrix", "E1001")


def steps(fn: Callable[..., Any], *args: Any) -> int:
    """How many lines of the bridge's own code `fn(*args)` executes."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "call":
            return tracer if frame.f_code.co_filename.startswith(TRACED) else None
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn(*args)
    finally:
        sys.settrace(previous)
    return count


def assert_linear(fn: Callable[[Any], Any], make: Callable[[int], Any], n: int = 1500) -> None:
    """Doubling the input at most doubles the work (plus a little for sorting)."""
    small, large = steps(fn, make(n)), steps(fn, make(2 * n))
    assert large <= 2.2 * small + 50, (small, large)


def styles(text: Text) -> list[frozenset[str]]:
    """The IRC-visible styles of each character."""
    per_char: list[set[str]] = [set() for _ in text.plain]
    pre = [False] * len(text.plain)
    for span in text.spans:
        for i in range(max(span.start, 0), min(span.end, len(text.plain))):
            if span.kind == "pre":
                pre[i] = True
            elif span.kind in STYLES:
                per_char[i].add(span.kind)
    return [frozenset(s - {"code"} if p else s) for s, p in zip(per_char, pre, strict=True)]


@st.composite
def styled_texts(draw: st.DrawFn, alphabet: st.SearchStrategy[str] | None = None) -> Text:
    visible = st.characters(min_codepoint=0x20, exclude_characters="\x7f", exclude_categories=("Cs",))
    plain = draw(st.text(visible if alphabet is None else alphabet, max_size=40))
    spans = []
    for _ in range(draw(st.integers(0, 8))):
        start = draw(st.integers(0, len(plain)))
        end = draw(st.integers(start, len(plain)))
        spans.append(Span(draw(st.sampled_from(STYLES)), start, end))
    return Text(plain, tuple(spans))


# -- format.parse --------------------------------------------------------------


@SETTINGS
@given(ANY_TEXT)
def test_parse_never_raises_and_keeps_every_visible_character(raw: str) -> None:
    text = parse(raw, "irc", lambda nick: f"id-{nick}")
    assert not FORMATTING & set(text.plain)
    assert all(0 <= s.start < s.end <= len(text.plain) for s in text.spans)
    assert len(text.mentions()) <= 1
    # Everything but formatting codes (and colour numbers) is kept, in order.
    kept = iter(raw)
    assert all(ch in kept for ch in text.plain)
    assert "\x01" in text.plain if "\x01" in raw else True


@SETTINGS
@given(ANY_TEXT)
def test_render_after_parse_is_stable(raw: str) -> None:
    once = render(parse(raw, "irc"))
    assert render(parse(once, "irc")) == once


@SETTINGS
@given(styled_texts())
def test_styles_survive_render_and_parse(text: Text) -> None:
    back = parse(render(text), "irc")
    assert back.plain == text.plain.replace("\t", " ")
    assert styles(back) == styles(text)


@SETTINGS
@given(
    styled_texts(st.one_of(TRICKY_CHARS, st.characters())),
    st.lists(st.sampled_from(["https://a.test/x", "mailto:b@c"])),
)
def test_render_never_emits_controls_but_formatting(text: Text, urls: list[str]) -> None:
    links = tuple(Span("link", s.start, s.end, url=url) for s, url in zip(text.spans, urls, strict=False))
    text = Text(text.plain, text.spans + links)
    body = render(text)
    assert not {ch for ch in body if ch < " " or ch == "\x7f"} - FORMATTING
    extra = sum(len(url) + 3 for url in urls) + 10 * len(text.spans)
    assert len(body) <= len(text.plain) + extra  # output grows with the input, no more


@pytest.mark.parametrize(
    "make",
    [
        lambda n: "\x02a" * n,
        lambda n: "\x03" + "12," * n,
        lambda n: "\x1f\x1d\x02\x11\x1e" * n + "x" * n,
        lambda n: "https://a.test/" + ")" * n,
        lambda n: "see https://a.test/ " * (n // 10),
        lambda n: "nick" * n + ": hi",
    ],
    ids=["toggles", "colour-args", "all-styles", "closing-brackets", "many-links", "long-address"],
)
def test_parse_is_linear(make: Callable[[int], str]) -> None:
    assert_linear(lambda raw: parse(raw, "irc", lambda nick: nick), make)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: Text("a" * n, tuple(Span("bold", i, i + 1) for i in range(0, n, 2))),
        lambda n: Text("a" * n, tuple(Span("italic", i, n) for i in range(n))),
        lambda n: Text("a" * n, tuple(Span("code", 0, n) for _ in range(n))),
        lambda n: Text(
            "ab " * n, tuple(Span("link", 3 * i, 3 * i + 2, url="https://x.test/") for i in range(n))
        ),
    ],
    ids=["short-spans", "staircase", "stacked", "labelled-links"],
)
def test_render_is_linear(make: Callable[[int], Text]) -> None:
    assert_linear(render, make, n=800)


def test_retargeting_many_mentions_is_linear() -> None:
    def make(n: int) -> Text:
        return Text(
            "ab " * n, tuple(Span("mention", 3 * i, 3 * i + 2, network="irc", user="ab") for i in range(n))
        )

    renamed = mentions_as_nicks(make(3), "irc", lambda user: user + "_away")
    assert renamed.plain == "ab_away ab_away ab_away "
    assert [(s.start, s.end) for s in renamed.spans] == [(0, 7), (8, 15), (16, 23)]
    assert_linear(lambda text: mentions_as_nicks(text, "irc", lambda user: user + "_away"), make, n=800)


# -- the raw line parser -----------------------------------------------------------


@SETTINGS
@given(ANY_TEXT)
def test_parse_line_never_raises(raw: str) -> None:
    line = parse_line(raw)
    if line is not None:
        assert line.command and " " not in line.command
        assert all(" " not in p for p in line.params[:-1])
        kind, body = message_kind("PRIVMSG", line.params[-1] if line.params else "")
        assert kind in ("text", "emote") and (kind == "text" or "\x01" not in body)


WORD = st.text(st.characters(exclude_characters=" \r\n\x00"), min_size=1, max_size=12)
TAG_KEY = st.from_regex(r"\+?[a-z][a-z0-9./-]{0,10}", fullmatch=True)
TAG_VALUE = st.text(st.characters(exclude_characters="\r\n\x00"), max_size=12)


def escape_tag(value: str) -> str:
    return value.translate(str.maketrans({"\\": "\\\\", ";": "\\:", " ": "\\s", "\r": "\\r", "\n": "\\n"}))


@SETTINGS
@given(
    st.lists(st.tuples(TAG_KEY, TAG_VALUE), max_size=4),
    st.one_of(st.just(""), WORD.filter(lambda w: not w.startswith(":"))),
    st.from_regex(r"[A-Za-z]{1,10}|[0-9]{3}", fullmatch=True),
    st.lists(WORD.filter(lambda w: not w.startswith(":")), max_size=5),
    st.one_of(st.none(), st.text(st.characters(exclude_characters="\r\n\x00"), max_size=40)),
)
def test_a_composed_line_parses_back_to_its_parts(
    tags: list[tuple[str, str]], source: str, command: str, middle: list[str], trailing: str | None
) -> None:
    raw = ""
    if tags:
        raw += "@" + ";".join(f"{k}={escape_tag(v)}" if v else k for k, v in tags) + " "
    if source:
        raw += f":{source} "
    raw += command + "".join(f" {p}" for p in middle)
    if trailing is not None:
        raw += f" :{trailing}"
    params = (*middle, trailing) if trailing is not None else tuple(middle)
    assert parse_line(raw) == Line(tuple(tags), source, command.upper(), params)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: "@" + "a=b\\\\\\:;" * n + " PRIVMSG #c :x",
        lambda n: "CMD" + " x" * n,
        lambda n: "CMD" + " " * n + ":" + "t" * n,
        lambda n: ":" + "s" * n + " PRIVMSG #c :\x01ACTION " + "\x01" * n,
    ],
    ids=["escaped-tags", "many-params", "spaces", "long-source"],
)
def test_parse_line_is_linear(make: Callable[[int], str]) -> None:
    assert_linear(lambda raw: message_kind("PRIVMSG", parse_line(raw).params[-1]), make)


# -- to the wire ---------------------------------------------------------------------


@SETTINGS
@given(
    ANY_TEXT, st.sampled_from(["text", "emote"]), st.sampled_from(["message", "edit"]), st.integers(80, 450)
)
def test_no_cr_lf_or_nul_reaches_the_wire_and_lines_fit(
    text: str, kind: str, event: str, budget: int
) -> None:
    out = Outbound("k", 1, "#c", ALICE, event, Text.of(text), kind)  # type: ignore[arg-type]
    for line in payloads(out, Templates(), budget):
        wire = wire_safe(f"PRIVMSG #c :{line}")
        assert not {"\r", "\n", "\x00"} & set(line + wire)
        assert utf8_len(line) <= budget


def test_splitting_is_linear() -> None:
    assert_linear(lambda line: split_line(line, 400), lambda n: "word " * n + "é日" * n)
