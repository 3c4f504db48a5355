"""Properties of Matrix formatting and event conversion, on generated input (hypothesis).

Never raises (but the documented errors of a malformed event), round-trips what the
renderer claims, and costs work in proportion to the input.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.model import Delete, Edit, Message, Outbound, Reaction, Sender
from bridge.text import Span, SpanKind, Text
from connectors.matrix.format import FormatError, parse_content, parse_html, render
from connectors.matrix.ghosts import Ghosts
from connectors.matrix.inbound import Inbound
from connectors.matrix.outbound import message_content
from tests.opcount import operations

GHOSTS = Ghosts("_sb_", "corp.test")
INBOUND = Inbound("matrix", GHOSTS, "@switchboard:corp.test")
HTML = "org.matrix.custom.html"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces hostile and ordinary HTML is made of, so short strings reach deep parser states.
PIECES = [
    *"<>/!-=\"' &;#\n\tab",
    "\ud800",
    "\udfff",
    "é",
    "🎉",
    "<b>",
    "</b>",
    "<i>",
    "</i>",
    "<code>",
    "</code>",
    "<pre>",
    "</pre>",
    "<p>",
    "</p>",
    "<br>",
    "<br/>",
    "<ul>",
    "<ol start=x>",
    "<li>",
    "</ul>",
    "<blockquote>",
    "</blockquote>",
    "<mx-reply>",
    "</mx-reply>",
    "<script>",
    "</script>",
    "<![",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<!DOCTYPE html>",
    "<?xml?>",
    '<img alt="pic">',
    '<a href="https://matrix.to/#/@bob:corp.test">',
    '<a href="https://matrix.to/#/@_sb_slack_=21channel:corp.test">',
    '<a href="https://matrix.to/#/@_sb_irc_bob:corp.test">',
    '<a href="matrix:u/alice:corp.test">',
    '<a href="https://example.com/?a=1&amp;b">',
    '<a href="javascript:x">',
    "</a>",
    "&amp;",
    "&lt;",
    "&#x1F389;",
    "&#0;",
    "&bogus;",
    "@room",
    "@here",
]
html_text = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def mostly(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually the valid value, sometimes any JSON at all."""
    return st.integers(0, 5).flatmap(lambda n: json_value if n == 5 else strategy)


@st.composite
def some_of(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """The fields, each usually valid, a few of them left out."""
    return {key: draw(value) for key, value in fields.items() if draw(st.integers(0, 19)) < 19}


relation = some_of(
    {
        "rel_type": mostly(st.sampled_from(["m.replace", "m.thread", "m.annotation"])),
        "event_id": mostly(st.just("$orig")),
        "is_falling_back": st.booleans(),
        "m.in_reply_to": mostly(some_of({"event_id": mostly(st.just("$r"))})),
    }
)
new_content = some_of(
    {
        "msgtype": mostly(st.sampled_from(["m.text", "m.notice"])),
        "body": mostly(html_text),
        "format": mostly(st.just(HTML)),
        "formatted_body": mostly(html_text),
        "m.mentions": mostly(some_of({"room": mostly(st.just(True))})),
    }
)
content_strategy = some_of(
    {
        "msgtype": mostly(
            st.sampled_from(["m.text", "m.emote", "m.notice", "m.image", "m.file", "m.location"])
        ),
        "body": mostly(html_text),
        "format": mostly(st.just(HTML)),
        "formatted_body": mostly(html_text),
        "filename": mostly(st.text(max_size=8)),
        "url": mostly(st.just("mxc://corp.test/abc")),
        "m.mentions": mostly(some_of({"room": mostly(st.just(True))})),
        "m.relates_to": st.one_of(st.nothing(), relation) | json_value,
        "m.new_content": mostly(new_content),
        "redacts": mostly(st.just("$gone")),
    }
)
event_strategy = some_of(
    {
        "type": mostly(
            st.sampled_from(["m.room.message", "m.room.message", "m.room.redaction", "m.reaction"])
        ),
        "room_id": mostly(st.just("!room:corp.test")),
        "event_id": mostly(st.just("$ev")),
        "sender": mostly(
            st.sampled_from(["@alice:corp.test"] * 4 + ["@_sb_slack_u1:corp.test", "@switchboard:corp.test"])
        ),
        "origin_server_ts": mostly(st.integers(min_value=0, max_value=2**42)),
        "content": mostly(content_strategy),
        "redacts": mostly(st.just("$gone")),
    }
)


def well_formed_spans(text: Text) -> bool:
    return all(0 <= s.start < s.end <= len(text.plain) for s in text.spans)


@SETTINGS
@given(html_text)
def test_parse_html_never_raises_and_keeps_spans_in_the_text(html: str) -> None:
    text = parse_html(html, network="matrix", ghosts=GHOSTS)
    assert well_formed_spans(text)
    assert not any(s.broadcast for s in text.spans)  # only m.mentions.room makes one
    assert not any(s.kind == "mention" and s.user.startswith("!") for s in text.spans)


@SETTINGS
@given(content_strategy, st.booleans())
def test_parse_content_raises_nothing_but_format_errors(content: dict[str, Any], reply: bool) -> None:
    try:
        text = parse_content(content, network="matrix", ghosts=GHOSTS, reply=reply)
    except FormatError:
        text = parse_content(content, network="matrix", ghosts=GHOSTS, reply=reply, html=False)
    assert well_formed_spans(text)


# What Matrix inbound notices while capturing: HTML it could not read, an edit with only its
# fallback, a message type, event or vote it relays only as its body or not at all.
CAPTURE_FLAGS = {
    "format_fallback",
    "edit_fallback",
    "unknown_msgtype",
    "unknown_event",
    "encrypted",
    "poll_response",
}


@SETTINGS
@given(event_strategy)
def test_inbound_convert_raises_only_the_documented_malformed_event_errors(event: dict[str, Any]) -> None:
    try:
        converted = INBOUND.convert(event)
    except (KeyError, TypeError, ValueError):
        return  # malformed: the connector skips it with a warning
    assert converted is None or isinstance(converted, Message | Edit | Delete | Reaction)
    if isinstance(converted, Message | Edit):
        assert well_formed_spans(converted.text)
        assert set(converted.flags) <= CAPTURE_FLAGS


# -- render → parse ---------------------------------------------------------------------

WORDS = ["alpha", "b", "x<y", "a&b", '"q"', "é", "日本", "🎉", "@room", "<b>", "&amp;", "1.", "-", ">"]
STYLE_KINDS: list[SpanKind] = ["bold", "italic", "strike", "underline", "code"]
MENTIONS = [("matrix", "@bob:corp.test"), ("irc", "bob"), ("slack", "U0CAROL")]


@st.composite
def renderable_texts(draw: st.DrawFn) -> Text:
    """Words joined by single spaces or line breaks, with laminar (properly nested) spans on
    word boundaries: what the renderer promises to write so that it reads back the same."""
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=12))
    seps = draw(st.lists(st.sampled_from([" ", "\n"]), min_size=len(words) - 1, max_size=len(words) - 1))
    bounds, plain = [], ""
    for i, word in enumerate(words):
        if i:
            plain += seps[i - 1]
        bounds.append((len(plain), len(plain) + len(word)))
        plain += word
    spans: list[Span] = []
    for _ in range(draw(st.integers(0, 6))):
        a = draw(st.integers(0, len(words) - 1))
        b = draw(st.integers(a, len(words) - 1))
        start, end = bounds[a][0], bounds[b][1]
        if any(s.start < start < s.end < end or start < s.start < end < s.end for s in spans):
            continue  # overlapping spans are cut into pieces by the renderer
        kind = draw(st.sampled_from([*STYLE_KINDS, "link", "mention"]))
        if any(s.kind == kind and (s.start, s.end) == (start, end) for s in spans):
            continue
        if kind == "link":
            spans.append(
                Span("link", start, end, url=draw(st.sampled_from(["https://e.com/a?b=1&c", "mailto:x@y"])))
            )
        elif kind == "mention":
            if "\n" in plain[start:end] or any(s.kind in ("mention", "link") for s in spans):
                continue  # a pill is one name on one line, not inside a link
            network, user = draw(st.sampled_from(MENTIONS))
            spans.append(Span("mention", start, end, network=network, user=user))
        else:
            spans.append(Span(kind, start, end))
    return Text(plain, tuple(sorted(spans, key=lambda s: (s.start, -s.end))))


def _shape(text: Text) -> list[tuple[str, int, int, str, str, str]]:
    return sorted((s.kind, s.start, s.end, s.url, s.network, s.user) for s in text.spans)


@SETTINGS
@given(renderable_texts())
def test_what_render_writes_parses_back_the_same(text: Text) -> None:
    out = Outbound(
        key="k",
        seq=1,
        room="!r:corp.test",
        text=text,
        kind="message",
        sender=Sender("irc", "x", "X", "X", ""),
    )
    content = message_content(out, network="matrix", ghosts=GHOSTS)
    back = parse_content(content, network="matrix", ghosts=GHOSTS, reply=False)
    assert back.plain == text.plain
    assert _shape(back) == _shape(text)


# -- linear work ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), min_size=4, max_size=12).map("".join))
def test_parse_and_render_work_is_linear_in_repetitions(unit: str) -> None:
    # Whatever a short piece of markup does, repeating it 2n times costs about twice n times.
    def work(n: int) -> int:
        html = unit * n
        return operations(
            lambda: render(parse_html(html, network="matrix", ghosts=GHOSTS), network="matrix", ghosts=GHOSTS)
        )

    assert work(800) <= 2.3 * work(400) + 2000
