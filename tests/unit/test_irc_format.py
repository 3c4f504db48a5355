"""IRC control codes to and from canonical text."""

from __future__ import annotations

import pytest

from bridge.text import Span, Text
from connectors.irc.format import link_text, parse, render
from connectors.irc.wire import ReplacingLineBuffer


def kinds(text: Text) -> list[tuple[str, str]]:
    return [(s.kind, text.plain[s.start : s.end]) for s in text.spans]


def test_toggles_become_spans() -> None:
    text = parse("\x02bold\x02 \x1dit\x1d \x1fun\x1f \x1estrike\x1e \x11code\x11", "irc")
    assert text.plain == "bold it un strike code"
    assert kinds(text) == [
        ("bold", "bold"),
        ("italic", "it"),
        ("underline", "un"),
        ("strike", "strike"),
        ("code", "code"),
    ]


def test_colours_are_dropped_with_their_digits() -> None:
    text = parse("\x0304red\x03 \x0304,12on blue\x03 \x031,2x \x0399 \x03,5 \x04FF0000hex\x04", "irc")
    assert text.plain == "red on blue x  ,5 hex"
    assert text.spans == ()


def test_reset_closes_everything_and_unclosed_codes_end_with_the_line() -> None:
    text = parse("\x02\x1dboth\x0f plain \x02tail", "irc")
    assert text.plain == "both plain tail"
    assert sorted(kinds(text)) == [("bold", "both"), ("bold", "tail"), ("italic", "both")]


def test_reverse_is_dropped() -> None:
    assert parse("a\x16b\x16c", "irc").plain == "abc"


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("see https://example.test/a.", "https://example.test/a"),
        ("(https://example.test/x)", "https://example.test/x"),
        ("https://en.wikipedia.test/wiki/Foo_(bar), ok", "https://en.wikipedia.test/wiki/Foo_(bar)"),
        ("get ftp://files.test/f.txt!", "ftp://files.test/f.txt"),
    ],
)
def test_urls_become_links(raw: str, url: str) -> None:
    text = parse(raw, "irc")
    links = [s for s in text.spans if s.kind == "link"]
    assert len(links) == 1
    assert links[0].url == url
    assert text.plain[links[0].start : links[0].end] == url


def test_addressed_nick_becomes_a_mention() -> None:
    for raw in ("alice: hi there", "alice, hi there", "alice:"):
        text = parse(raw, "irc")
        assert text.mentions() == [Span("mention", 0, 5, network="irc", user="alice")], raw


def test_mention_uses_the_channel_spelling_and_needs_a_member() -> None:
    members = {"alice": "Alice"}
    assert parse("ALICE: hi", "irc", lambda nick: members.get(nick.lower())).mentions() == [
        Span("mention", 0, 5, network="irc", user="Alice")
    ]
    assert (
        parse("Note: nobody is called Note", "irc", lambda nick: members.get(nick.lower())).mentions() == []
    )


def test_only_nick_shaped_words_at_the_start_are_mentions() -> None:
    for raw in ("9lives: no", "hello alice: no", "alice:no", "https://x.test: no"):
        assert parse(raw, "irc").mentions() == [], raw


def test_render_codes_links_and_mentions() -> None:
    text = Text(
        "bold it code bob docs https://x.test/ x",
        (
            Span("bold", 0, 4),
            Span("italic", 5, 7),
            Span("code", 8, 12),
            Span("mention", 13, 16, network="matrix", user="@bob:corp.test"),
            Span("link", 17, 21, url="https://docs.test/"),
            Span("link", 22, 37, url="https://x.test/"),
        ),
    )
    assert (
        render(text) == "\x02bold\x02 \x1dit\x1d \x11code\x11 bob docs <https://docs.test/> https://x.test/ x"
    )


def test_link_labels() -> None:
    assert link_text("https://a.test/", "https://a.test/") == "https://a.test/"
    assert link_text("a.test", "https://a.test/") == "https://a.test/"
    assert link_text("bob@a.test", "mailto:bob@a.test") == "bob@a.test"
    assert link_text("", "https://a.test/") == "https://a.test/"
    assert link_text("the docs", "https://a.test/") == "the docs <https://a.test/>"


def test_formatting_around_a_labelled_link_covers_the_url() -> None:
    text = Text("see docs now", (Span("bold", 0, 8), Span("link", 4, 8, url="https://d.test/")))
    assert render(text) == "\x02see docs <https://d.test/>\x02 now"


def test_pre_is_plain_and_overlapping_spans_render() -> None:
    assert render(Text("x = 1", (Span("pre", 0, 5), Span("code", 0, 5)))) == "x = 1"
    overlapping = Text("abc", (Span("bold", 0, 2), Span("italic", 1, 3)))
    assert render(overlapping) == "\x02a\x1db\x02c\x1d"


def test_broadcasts_read_as_written() -> None:
    text = Text(
        "@here and @channel",
        (
            Span("mention", 0, 5, network="slack", user="!here"),
            Span("mention", 10, 18, network="matrix", user="!channel"),
        ),
    )
    assert render(text) == "@here and @channel"


def test_control_characters_in_text_cannot_act_on_irc() -> None:
    text = Text.of("\x01ACTION evil\x01 \x02not bold\x03 4 tab\there\r\nX\x00")
    assert render(text) == "ACTION evil not bold 4 tab here  X"


@pytest.mark.parametrize(
    "raw",
    [
        "\x02bold\x02 and \x1ditalic\x1d and \x11code\x11",
        "see https://example.test/path?q=1 and \x02https://bold.test/\x02",
        "\x02a\x1db\x02c\x1d",
        "\x02\x1dboth\x1d\x02 x",
        "plain text, nothing else",
        "日本語 \x02太字\x02 ✓",
    ],
)
def test_round_trip_is_exact(raw: str) -> None:
    assert render(parse(raw, "irc")) == raw


@pytest.mark.parametrize(
    "raw", ["\x02open", "\x0304red\x03 \x02b\x02\x02c\x02", "\x02\x1d\x0fx", "a\x0f\x02b\x0f"]
)
def test_round_trip_is_stable_for_untidy_input(raw: str) -> None:
    once = render(parse(raw, "irc"))
    assert render(parse(once, "irc")) == once
    assert parse(once, "irc").plain == parse(raw, "irc").plain


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    buffer = ReplacingLineBuffer()
    buffer.feed(b":a!b@c PRIVMSG #x :caf\xe9 ok\r\n:a!b@c PRIVMSG #x :\xc3\xa9t\xc3\r\n")
    assert list(buffer) == [":a!b@c PRIVMSG #x :caf\ufffd ok", ":a!b@c PRIVMSG #x :\xe9t\ufffd"]
