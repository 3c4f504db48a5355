"""Canonical text: slicing, lines, span replacement and segments."""

from __future__ import annotations

from collections.abc import Callable

from bridge.text import Span, Text, TextBuilder
from tests.opcount import growth


def _sample() -> Text:
    b = TextBuilder()
    b.append("say ")
    start = b.length
    b.append("hello")
    b.add_span("bold", start)
    b.append(" to ")
    m = b.length
    b.append("Bob")
    b.add_span("mention", m, network="irc", user="bob")
    b.append("\nbye")
    return b.build()


def test_builder_and_segments() -> None:
    text = _sample()
    assert text.plain == "say hello to Bob\nbye"
    segs = list(text.segments())
    assert [s for s, _ in segs] == ["say ", "hello", " to ", "Bob", "\nbye"]
    assert [k.kind for k in segs[1][1]] == ["bold"]
    assert segs[3][1][0].user == "bob"


def test_empty_span_vanishes() -> None:
    b = TextBuilder()
    b.append("x")
    b.add_span("bold", 1)
    assert b.build().spans == ()


def test_lines_and_slice_clip_spans() -> None:
    first, second = _sample().lines()
    assert first.plain == "say hello to Bob" and second.plain == "bye"
    assert {s.kind for s in first.spans} == {"bold", "mention"}
    assert second.spans == ()
    part = first.slice(6, 14)
    assert part.plain == "llo to B"
    assert [(s.kind, s.start, s.end) for s in part.spans] == [("bold", 0, 3), ("mention", 7, 8)]


def test_replace_spans_shifts_following_spans() -> None:
    text = Text("hi Bob and bold", (Span("mention", 3, 6, network="irc", user="bob"), Span("bold", 11, 15)))
    out = text.replace_spans(
        {0: ("Bob Jones", Span("mention", 0, 0, network="matrix", user="@bob:corp.test"))}
    )
    assert out.plain == "hi Bob Jones and bold"
    assert [(s.kind, s.start, s.end, s.user) for s in out.spans] == [
        ("mention", 3, 12, "@bob:corp.test"),
        ("bold", 17, 21, ""),
    ]
    assert out.plain[17:21] == "bold"


def test_replace_spans_moves_enclosing_and_following_spans_at_once() -> None:
    text = Text(
        "to A and B now",
        (
            Span("bold", 0, 10),  # encloses both mentions
            Span("mention", 3, 4, user="a"),
            Span("mention", 9, 10, user="b"),
            Span("italic", 11, 14),
        ),
    )
    out = text.replace_spans({1: ("Alice", Span("mention", 0, 0, user="A")), 2: ("", Span("mention", 0, 0))})
    assert out.plain == "to Alice and  now"
    assert [(s.kind, out.plain[s.start : s.end]) for s in out.spans] == [
        ("bold", "to Alice and "),
        ("mention", "Alice"),
        ("mention", ""),
        ("italic", "now"),
    ]


def test_replacing_many_spans_costs_linear_work() -> None:
    def run(n: int) -> Callable[[], Text]:
        text = Text("@a " * n, tuple(Span("mention", 3 * i, 3 * i + 2, user="a") for i in range(n)))
        changes = {i: ("Alice Smith", Span("mention", 0, 0, user="E1")) for i in range(n)}
        return lambda: text.replace_spans(changes)

    assert growth(run, 1000) < 2.5


def test_overlapping_spans_segment_cleanly() -> None:
    text = Text("abcdef", (Span("bold", 0, 4), Span("italic", 2, 6)))
    assert [(s, [k.kind for k in ks]) for s, ks in text.segments()] == [
        ("ab", ["bold"]),
        ("cd", ["bold", "italic"]),
        ("ef", ["italic"]),
    ]
