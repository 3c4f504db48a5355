"""Hostile Matrix messages (issue 9, holes 1, 2, 3, 15): each is converted, on record, in linear work."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from bridge.codec import canonical, text_from_json, text_to_json
from bridge.model import Edit, Message
from bridge.text import Span, Text, well_formed
from connectors.irc.format import render as irc_render
from connectors.matrix import tokens as tokens_module
from connectors.matrix.format import MAX_HTML_CHARS, parse_content, parse_html, render
from connectors.matrix.ghosts import Ghosts
from connectors.matrix.inbound import Inbound
from connectors.matrix.outbound import message_content
from connectors.matrix.tokens import EndTag, StartTag, tokens
from connectors.slack.format import parse as slack_parse
from connectors.slack.format import render as slack_render
from tests.opcount import Scanned, growth

GHOSTS = Ghosts("_sb_", "corp.test")
INBOUND = Inbound("matrix", GHOSTS, "@switchboard:corp.test")
HTML = "org.matrix.custom.html"
RENDERERS: dict[str, Callable[[Text], Any]] = {
    "matrix": lambda t: render(t, network="matrix", ghosts=GHOSTS),
    "slack": lambda t: slack_render(t, "slack"),
    "irc": irc_render,
}


def event(content: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "room_id": "!room:corp.test",
        "event_id": "$ev",
        "sender": "@alice:corp.test",
        "origin_server_ts": 1_700_000_000_123,
        "content": content,
        **extra,
    }


def html_message(formatted: str, body: str = "the body") -> dict[str, Any]:
    return event({"msgtype": "m.text", "body": body, "format": HTML, "formatted_body": formatted})


def parse(html: str) -> Text:
    return parse_html(html, network="matrix", ghosts=GHOSTS)


# -- hole 1: one message must not stop Matrix inbound ---------------------------------


@pytest.mark.parametrize(
    "html",
    ["<![", "a <![CDATA[x]]> b", "<![if !supportLists]>x<![endif]>", "<!", "<!-", "<!--", "</", "<", "<a"],
)
def test_markup_that_broke_the_stdlib_parser_is_read(html: str) -> None:
    converted = INBOUND.convert(html_message(html + " tail"))
    assert isinstance(converted, Message)
    assert converted.flags == ()  # read as HTML5 reads it, no fallback needed


def test_a_pill_after_cdata_still_mentions() -> None:
    text = parse('<![CDATA[x]]> hi <a href="https://matrix.to/#/@bob:corp.test">Bob</a>')
    assert text.plain == "hi Bob"
    assert [(s.kind, s.user) for s in text.spans] == [("mention", "@bob:corp.test")]


def test_html_over_the_cap_falls_back_to_the_body_on_record() -> None:
    huge = "<b>x</b>" * (MAX_HTML_CHARS // 8 + 1)
    converted = INBOUND.convert(html_message(huge, body="plain version"))
    assert isinstance(converted, Message)
    assert converted.text == Text.of("plain version")
    assert converted.flags == ("format_fallback",)
    edit = INBOUND.convert(
        event(
            {
                "msgtype": "m.text",
                "body": "* x",
                "m.new_content": {"msgtype": "m.text", "body": "new", "format": HTML, "formatted_body": huge},
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"},
            }
        )
    )
    assert isinstance(edit, Edit) and edit.text == Text.of("new") and edit.flags == ("format_fallback",)


def test_a_failing_parse_falls_back_instead_of_failing_the_event(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever a future parser bug raises (the stdlib one raised AssertionError), the event survives.
    def broken(html: str, **_: Any) -> Text:
        raise AssertionError("unexpected markup")

    monkeypatch.setattr("connectors.matrix.format.parse_html", broken)
    converted = INBOUND.convert(html_message("<b>x</b>", body="x"))
    assert isinstance(converted, Message)
    assert (converted.text, converted.flags) == (Text.of("x"), ("format_fallback",))


def test_malformed_events_still_raise_the_documented_errors() -> None:
    for bad in (
        {k: v for k, v in html_message("<b>x</b>").items() if k != "sender"},
        {**html_message("<b>x</b>"), "origin_server_ts": "soon"},
        event("not an object"),
        event(["a list"], type="m.room.redaction"),
    ):
        with pytest.raises((KeyError, TypeError, ValueError)):
            INBOUND.convert(bad)


# -- hole 2: linear work on adversarial input -----------------------------------------


def test_tokenizer_reads_an_unclosed_tag_flood_as_nothing() -> None:
    assert list(tokens("<a " * 30_000)) == []
    assert list(tokens("x <a href='y")) == ["x "]
    assert list(tokens('<A HREF="a&amp;b" x>t</A >')) == [
        StartTag("a", {"href": "a&b", "x": None}),
        "t",
        EndTag("a"),
    ]


@pytest.mark.parametrize(
    "html",
    [
        "<a " * 30_000,  # CVE-2025-6069: the stdlib parser rescans the rest from every `<`
        "<a" * 30_000,
        '<a href="x' * 20_000,
        "<a b=" * 20_000,
        "<a b='" * 20_000,
        "</a " * 20_000,
        "<![" * 30_000,
        "<!--" * 20_000,
        "<!" * 30_000,
        "<?" * 30_000,
        "<" * 60_000,
        "<script>" * 10_000,
        "<style>a</style" * 5_000,
        "&amp;&" * 10_000,
        "<b>x" * 15_000,
    ],
)
def test_the_tokenizer_examines_each_character_a_bounded_number_of_times(
    html: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scanned = Scanned()
    for name in ("_WS", "_TAG_NAME", "_ATTR_NAME", "_UNQUOTED"):
        monkeypatch.setattr(f"connectors.matrix.tokens.{name}", scanned.pattern(getattr(tokens_module, name)))
    monkeypatch.setattr(
        "connectors.matrix.tokens._RAW_TEXT",
        {tag: scanned.pattern(p) for tag, p in tokens_module._RAW_TEXT.items()},
    )
    for _ in tokens(scanned.text(html)):
        pass
    assert scanned.chars <= 4 * len(html)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: "<a " * n,  # CVE-2025-6069: 28.7 s for 60 KB on the stdlib parser
        lambda n: "<a" * n,
        lambda n: "<b>" * n + "x",  # deeply nested
        lambda n: "<b>a" * n,
        lambda n: "<i>a" * n + "</b>" * n,  # stray end tags under a deep stack
        lambda n: "<ul><li>a" * n,  # indentation per level
        lambda n: "<blockquote>" * (n // 2) + "a<br>" * (n // 2),  # a quote marker per level and line
        lambda n: "a<p><br>" * n,  # breaks owed after breaks
        lambda n: "<!--" + "-" * n,
        lambda n: '<a href="' + "x" * n,
        lambda n: "&amp;" * n,
    ],
)
def test_parse_and_render_work_grows_linearly(make: Any) -> None:
    def run(n: int) -> Any:
        html = make(n)
        return lambda: render(parse(html), network="matrix", ghosts=GHOSTS)

    assert growth(run, 1500) < 2.5


@pytest.mark.parametrize(
    "make",
    [
        lambda n: "<blockquote>" * n + "a<br>" * n,
        lambda n: "<ul><li>a" * n,
        lambda n: "<b><i>a" * n,
        lambda n: "<a href='https://e.com/'>a" * n,
    ],
)
def test_output_of_deep_nesting_grows_linearly(make: Any) -> None:
    def size(n: int) -> int:
        text = parse(make(n))
        _, formatted = render(text, network="matrix", ghosts=GHOSTS)
        return len(text.plain) + len(formatted or "")

    assert size(6000) <= 2.1 * size(3000)


def test_broadcast_words_beside_code_cost_linear_work() -> None:
    def run(n: int) -> Any:
        content = {
            "body": "x",
            "format": HTML,
            "formatted_body": "<code>x</code> @room " * n,
            "m.mentions": {"room": True},
        }
        return lambda: parse_content(content, network="matrix", ghosts=GHOSTS, reply=False)

    assert growth(run, 1000) < 2.5
    content = {
        "body": "x",
        "format": HTML,
        "formatted_body": "<code>@room</code> @room",
        "m.mentions": {"room": True},
    }
    text = parse_content(content, network="matrix", ghosts=GHOSTS, reply=False)
    assert [(s.kind, s.start, s.broadcast) for s in text.spans] == [("code", 0, False), ("mention", 6, True)]


@pytest.mark.parametrize("to", ["matrix", "slack", "irc"])
@pytest.mark.parametrize("unit", ["<https://e.com/|x> ", "<@U0ALICE> "])
def test_many_links_and_mentions_render_in_linear_work(to: str, unit: str) -> None:
    def run(n: int) -> Any:
        text = slack_parse(unit * n, "slack")
        return lambda: RENDERERS[to](text)

    assert growth(run, 1000) < 2.5


@pytest.mark.parametrize("to", ["matrix", "slack", "irc"])
def test_many_spans_render_in_linear_work(to: str) -> None:
    # 40,000 characters of `*a* ` took 3.5 s per destination with the quadratic segments().
    def run(n: int) -> Any:
        text = slack_parse("*a* " * n, "slack")
        return lambda: RENDERERS[to](text)

    assert growth(run, 1000) < 2.5
    text = slack_parse("*a* " * 10_000, "slack")
    assert len(text.spans) == 10_000
    assert len(list(text.segments())) == 20_000


def test_lines_of_a_many_line_message_cost_linear_work() -> None:
    def run(n: int) -> Any:
        text = slack_parse("*a*\n" * n, "slack")
        return text.lines

    assert growth(run, 1000) < 2.5


# -- hole 3: a pill cannot forge a broadcast ------------------------------------------


@pytest.mark.parametrize(
    ("ghost", "native"),
    [
        ("@_sb_slack_=21channel:corp.test", "!channel"),
        ("@_sb_slack_=21everyone:corp.test", "!everyone"),
        ("@_sb_slack_=21here:corp.test", "!here"),
        ("@_sb_slack_=21subteam=5e_s0_o_p_s:corp.test", "!subteam^S0OPS"),
    ],
)
def test_a_forged_ghost_pill_is_plain_text(ghost: str, native: str) -> None:
    assert GHOSTS.parse(ghost) == ("slack", native)  # what the pill decodes to
    html = f'hey <a href="https://matrix.to/#/{ghost}">everyone</a>'
    for content in (
        {"body": "hey everyone", "format": HTML, "formatted_body": html},
        {"body": "hey everyone", "format": HTML, "formatted_body": html, "m.mentions": {"user_ids": [ghost]}},
    ):
        text = parse_content(content, network="matrix", ghosts=GHOSTS, reply=False)
        assert text == Text.of("hey everyone")
        assert slack_render(text, "slack") == "hey everyone"


@pytest.mark.parametrize("user", ["!channel", "!everyone", "!here", "!subteam^S0OPS"])
def test_no_renderer_pings_for_a_span_no_broadcast_parser_made(user: str) -> None:
    forged = Text("@all look", (Span("mention", 0, 4, network="slack", user=user),))
    assert "<!" not in slack_render(forged, "slack")
    content = message_content_for(forged)
    assert "room" not in content["m.mentions"]
    allowed = Text("@all look", (Span("mention", 0, 4, network="slack", user=user, broadcast=True),))
    assert slack_render(allowed, "slack").startswith(f"<{user}")


def message_content_for(text: Text) -> dict[str, Any]:
    from bridge.model import Outbound, Sender

    out = Outbound(
        key="k",
        seq=1,
        room="!r:corp.test",
        text=text,
        kind="message",
        sender=Sender("slack", "U1", "A", "A", ""),
    )
    return message_content(out, network="matrix", ghosts=GHOSTS)


def test_the_broadcast_mark_survives_the_archive_codec() -> None:
    text = Text("@room", (Span("mention", 0, 5, network="matrix", user="!channel", broadcast=True),))
    assert text_from_json(json.loads(canonical(text_to_json(text)))) == text
    plain = Text("x", (Span("bold", 0, 1),))
    assert "broadcast" not in json.dumps(text_to_json(plain))  # records without one are unchanged


def test_room_mentions_from_allowed_senders_still_broadcast() -> None:
    content = {"body": "@room lunch", "m.mentions": {"room": True}}
    text = parse_content(content, network="matrix", ghosts=GHOSTS, reply=False)
    assert [(s.user, s.broadcast) for s in text.mentions()] == [("!channel", True)]
    assert slack_render(text, "slack") == "<!channel> lunch"


# -- hole 15: lone surrogates are archived as sent ------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        {"msgtype": "m.text", "body": "bad \ud800 body"},
        {
            "msgtype": "m.text",
            "body": "bad \ud800 body",
            "format": HTML,
            "formatted_body": "<b>bad \ud800</b> body",
        },
        {
            "msgtype": "m.text",
            "body": "x",
            "format": HTML,
            "formatted_body": '<a href="https://e.com/\udfff">l</a>',
        },
    ],
)
def test_lone_surrogates_are_kept_reversibly_in_canonical_json(content: dict[str, Any]) -> None:
    converted = INBOUND.convert(event(content))
    assert isinstance(converted, Message)
    record = {"text": text_to_json(converted.text)}
    encoded = canonical(record)
    encoded.decode("utf-8")  # valid UTF-8, so the database and hashing take it
    assert b"\\ud800" in encoded or b"\\udfff" in encoded
    assert text_from_json(json.loads(encoded)["text"]) == converted.text  # the original, unchanged
    assert canonical(json.loads(encoded)) == encoded  # the same bytes again: hashes verify


def test_canonical_bytes_of_ordinary_text_are_unchanged() -> None:
    assert canonical({"b": "é 🎉 \\ud800", "a": 1}) == '{"a":1,"b":"é 🎉 \\\\ud800"}'.encode()


def test_surrogates_are_replaced_only_where_a_network_cannot_carry_them() -> None:
    assert well_formed("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert well_formed("é 🎉") == "é 🎉"
    irc_render(Text.of("a\ud800b")).encode("utf-8")  # IRC writes UTF-8 bytes
    assert irc_render(Text.of("a\ud800b")) == "a\ufffdb"
