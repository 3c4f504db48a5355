from __future__ import annotations

import pytest

from bridge.text import Span, Text
from connectors.matrix.format import parse_content, parse_html, render, strip_reply_fallback
from connectors.matrix.ghosts import Ghosts

GHOSTS = Ghosts("_sb_", "corp.test")


def parse(html: str) -> Text:
    return parse_html(html, network="matrix", ghosts=GHOSTS)


def to_matrix(text: Text) -> tuple[str, str | None]:
    return render(text, network="matrix", ghosts=GHOSTS)


def spans(text: Text) -> list[tuple[str, str]]:
    return [(s.kind, text.plain[s.start : s.end]) for s in text.spans]


def test_inline_formatting() -> None:
    text = parse(
        "<b>b</b> <strong>s</strong> <i>i</i> <em>e</em> <del>d</del> <s>s2</s> <u>u</u> <code>c</code>"
    )
    assert text.plain == "b s i e d s2 u c"
    assert spans(text) == [
        ("bold", "b"),
        ("bold", "s"),
        ("italic", "i"),
        ("italic", "e"),
        ("strike", "d"),
        ("strike", "s2"),
        ("underline", "u"),
        ("code", "c"),
    ]


def test_links_and_mentions() -> None:
    text = parse(
        'see <a href="https://example.com/a?b=1&amp;c=2">docs</a>, '
        '<a href="https://matrix.to/#/@alice:corp.test">Alice</a> and '
        '<a href="https://matrix.to/#/%40_sb_irc__bob=5baway=5d%3Acorp.test">Bob</a>'
    )
    assert text.plain == "see docs, Alice and Bob"
    link, alice, bob = text.spans
    assert (link.kind, link.url) == ("link", "https://example.com/a?b=1&c=2")
    assert (alice.kind, alice.network, alice.user) == ("mention", "matrix", "@alice:corp.test")
    # A pill of one of our ghosts is the original network's user again.
    assert (bob.kind, bob.network, bob.user) == ("mention", "irc", "Bob[away]")
    assert text.plain[bob.start : bob.end] == "Bob"


def test_blocks_become_lines() -> None:
    html = (
        "<p>first</p>\n<p>second<br />\nthird</p>\n"
        "<blockquote>\n<p>quoted</p>\n</blockquote>\n"
        "<ul>\n<li>one</li>\n<li><p>two</p></li>\n</ul>\n"
        '<ol start="3">\n<li>three</li>\n<li>four</li>\n</ol>\n'
    )
    assert parse(html).plain == "first\n\nsecond\nthird\n\n> quoted\n\n- one\n- two\n\n3. three\n4. four"


def test_code_block_keeps_its_layout() -> None:
    text = parse('<p>run</p>\n<pre><code class="language-sh">ls  -l\n  cd /tmp\n</code></pre>\n<p>done</p>')
    assert text.plain == "run\n\nls  -l\n  cd /tmp\n\ndone"
    assert spans(text) == [("pre", "ls  -l\n  cd /tmp")]


def test_whitespace_collapses_like_html() -> None:
    assert parse("  a \n  <b> b </b>\n c  ").plain == "a b c"


def test_entities_are_decoded() -> None:
    assert parse("&lt;b&gt; &amp; &quot;x&quot; &#x1F389;").plain == '<b> & "x" 🎉'


def test_reply_fallback_is_dropped() -> None:
    html = '<mx-reply><blockquote><a href="https://matrix.to/#/!r:corp.test/$e">In reply to</a> old</blockquote></mx-reply>new'
    assert parse(html) == Text.of("new")
    assert strip_reply_fallback("> <@alice:corp.test> old\n> more\n\nnew\n> kept") == "new\n> kept"
    content = {"body": "> <@alice:corp.test> old\n\nnew"}
    assert parse_content(content, network="matrix", ghosts=GHOSTS, reply=True).plain == "new"
    # A message that merely starts with a quote is not a reply: the quote is content.
    assert parse_content(content, network="matrix", ghosts=GHOSTS, reply=False).plain == content["body"]


@pytest.mark.parametrize(
    "html",
    [
        "<script>alert(1)</script>hi",
        '<img src="x" onerror="alert(1)">hi',
        "<style>body{display:none}</style>hi",
        '<a href="javascript:alert(1)" onclick="alert(2)">hi</a>',
        '<b onmouseover="alert(1)">hi</b>',
        "<iframe src='https://evil'>x</iframe>hi",
    ],
)
def test_hostile_html_never_passes_through(html: str) -> None:
    text = parse(html)
    assert text.plain == "hi"
    _, formatted = to_matrix(text)
    for needle in ("script", "onerror", "onclick", "onmouseover", "javascript", "iframe", "style"):
        assert needle not in (formatted or "")


def test_html_content_falls_back_to_body() -> None:
    content = {
        "body": "plain *text*",
        "format": "org.matrix.custom.html",
        "formatted_body": "<b>plain</b> text",
    }
    assert spans(parse_content(content, network="matrix", ghosts=GHOSTS, reply=False)) == [("bold", "plain")]
    content = {"body": "only body", "format": "something/else", "formatted_body": "<b>x</b>"}
    assert parse_content(content, network="matrix", ghosts=GHOSTS, reply=False) == Text.of("only body")


def test_unclosed_and_stray_tags() -> None:
    text = parse("<b>bold <i>both</b> after</i></u>")
    assert text.plain == "bold both after"
    assert ("bold", "bold both") in spans(text)
    assert ("italic", "both") in spans(text)


def test_render_plain_text_has_no_html() -> None:
    assert to_matrix(Text.of("a < b & c\nnext")) == ("a < b & c\nnext", None)


def test_render_escapes_and_nests() -> None:
    text = Text("<x> bold both italic", (Span("bold", 4, 13), Span("italic", 9, 20)))
    body, formatted = to_matrix(text)
    assert body == text.plain
    assert formatted == "&lt;x&gt; <strong>bold <em>both</em></strong><em> italic</em>"


def test_render_mentions_as_pills() -> None:
    text = Text(
        "Alice, Bob and Carol",
        (
            Span("mention", 0, 5, network="matrix", user="@alice:corp.test"),
            Span("mention", 7, 10, network="irc", user="Bob[away]"),
            Span("mention", 15, 20, network="slack", user="U0CAROL"),
        ),
    )
    _, formatted = to_matrix(text)
    assert formatted == (
        '<a href="https://matrix.to/#/@alice:corp.test">Alice</a>, '
        '<a href="https://matrix.to/#/@_sb_irc__bob=5baway=5d:corp.test">Bob</a> and '
        '<a href="https://matrix.to/#/@_sb_slack__u0_c_a_r_o_l:corp.test">Carol</a>'
    )


def test_render_refuses_unsafe_links() -> None:
    text = Text('click "me"', (Span("link", 0, 10, url='javascript:alert("x")'),))
    assert to_matrix(text)[1] == 'click "me"'
    text = Text("docs", (Span("link", 0, 4, url='https://e.com/?q="><script>'),))
    assert to_matrix(text)[1] == '<a href="https://e.com/?q=&quot;&gt;&lt;script&gt;">docs</a>'


@pytest.mark.parametrize(
    "text",
    [
        Text("hello bold world", (Span("bold", 6, 10),)),
        Text("a\nb", (Span("italic", 0, 3),)),
        Text("x code y", (Span("code", 2, 6),)),
        Text("before\n\nline 1\n  line 2\n\nafter", (Span("pre", 8, 23),)),
        Text("look:\ndef f():\n    return 1", (Span("pre", 6, 27),)),
        Text("code\nnext", (Span("pre", 0, 4),)),
        Text("a\n\n\nb\n\n\nc", (Span("pre", 4, 5),)),
        Text("one\ntwo", (Span("pre", 0, 3), Span("pre", 4, 7))),
        Text("one\n\ntwo", (Span("pre", 0, 3), Span("pre", 5, 8))),
        Text("one\n\n\ntwo", (Span("pre", 0, 3), Span("pre", 6, 9))),
        Text("\nmulti\n  line\n", (Span("pre", 0, 14),)),
        Text("ping Bob now", (Span("mention", 5, 8, network="irc", user="Bob"),)),
        Text("see site", (Span("link", 4, 8, url="https://example.com/"),)),
        Text(
            "all five",
            (Span("bold", 0, 8), Span("italic", 0, 8), Span("strike", 4, 8), Span("underline", 0, 3)),
        ),
    ],
)
def test_render_then_parse_round_trips(text: Text) -> None:
    _, formatted = to_matrix(text)
    assert formatted is not None
    assert parse(formatted).plain == text.plain
    assert sorted(parse(formatted).spans, key=repr) == sorted(text.spans, key=repr)


def test_broadcast_mentions_from_other_networks_render_as_plain_text() -> None:
    from bridge.text import Span, Text
    from connectors.matrix.format import render
    from connectors.matrix.ghosts import Ghosts

    text = Text("@here look", (Span("mention", 0, 5, network="slack", user="!here"),))
    body, html = render(text, network="matrix", ghosts=Ghosts("_sb_", "corp.test"))
    assert body == "@here look"
    assert html == "@here look" and "matrix.to" not in html


def test_code_blocks_need_only_a_line_of_their_own() -> None:
    # Text and blocks around a code block start on a new line; only <p> makes a blank one.
    assert parse("look:<pre><code>x\n</code></pre>next").plain == "look:\nx\nnext"
    assert parse("look:<br><pre><code>x\n</code></pre>").plain == "look:\nx"
    assert parse("<p>look:</p><pre><code>x\n</code></pre><p>next</p>").plain == "look:\n\nx\n\nnext"


def test_code_blocks_render_with_their_line_breaks() -> None:
    _, formatted = to_matrix(Text("look:\ndef f():\n    return 1", (Span("pre", 6, 27),)))
    assert formatted == "look:<br><pre><code>def f():\n    return 1\n</code></pre>"


def room(body: str, html: str | None = None, *, mentions: dict | None = None) -> Text:
    content: dict = {"body": body, "m.mentions": mentions if mentions is not None else {"room": True}}
    if html is not None:
        content |= {"format": "org.matrix.custom.html", "formatted_body": html}
    return parse_content(content, network="matrix", ghosts=GHOSTS, reply=False)


def test_a_room_mention_is_a_broadcast_named_as_written() -> None:
    text = room("@room @here, @channel and @everyone!")
    assert [(text.plain[s.start : s.end], s.network, s.user) for s in text.spans] == [
        ("@room", "matrix", "!channel"),
        ("@here", "matrix", "!here"),
        ("@channel", "matrix", "!channel"),
        ("@everyone", "matrix", "!everyone"),
    ]
    assert room("<b>@here</b> look", "<b>@here</b> look").mentions()[0].user == "!here"


def test_broadcast_words_without_a_room_mention_are_text() -> None:
    assert room("@here look", mentions={"user_ids": []}).spans == ()
    assert room("@here look", mentions={"room": "yes"}).spans == ()
    assert parse_content({"body": "@room look"}, network="matrix", ghosts=GHOSTS, reply=False).spans == ()


def test_broadcast_words_in_code_links_names_and_ids_are_not_broadcasts() -> None:
    html = (
        '<code>@here</code> <a href="https://e.test/">@here</a> '
        '<a href="https://matrix.to/#/@here:corp.test">@here</a> @room:corp.test x@here @heres'
    )
    text = room("", html)
    assert [s.kind for s in text.spans] == ["code", "link", "mention"]
    assert text.mentions()[0].user == "@here:corp.test"


def test_broadcasts_from_other_networks_round_trip() -> None:
    text = Text(
        "@here and @channel look",
        (
            Span("mention", 0, 5, network="slack", user="!here"),
            Span("mention", 10, 18, network="slack", user="!channel"),
        ),
    )
    body, formatted = to_matrix(text)
    back = room(body, formatted)
    assert back.plain == text.plain
    assert [(s.start, s.end, s.user) for s in back.spans] == [(s.start, s.end, s.user) for s in text.spans]
