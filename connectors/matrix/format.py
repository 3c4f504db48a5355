"""Matrix message content ↔ `bridge.text.Text`.

Incoming HTML is read by `tokens` (linear time on any input) and only the subset
Element sends is understood; everything else is reduced to its text. Outgoing
HTML is generated from `Text` alone, so hostile markup can never pass through.
A pill is a mention only when it names a person: one to a ghost whose id reads
like a broadcast (`@_sb_slack_=21channel`) is text, since broadcasts come only
from `m.mentions.room`, which the connector checks against the room's power levels.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import quote, unquote

from bridge.text import SPAN_ORDER, Span, SpanKind, Text, TextBuilder, well_formed
from connectors.matrix.ghosts import Ghosts
from connectors.matrix.tokens import EndTag, tokens

HTML_FORMAT = "org.matrix.custom.html"

_INLINE: dict[str, SpanKind] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "del": "strike",
    "s": "strike",
    "strike": "strike",
    "u": "underline",
    "ins": "underline",
    "code": "code",
}
_TAGS: dict[SpanKind, str] = {
    "bold": "strong",
    "italic": "em",
    "strike": "del",
    "underline": "u",
    "code": "code",
}
# Line breaks these blocks leave around themselves, as Element's plain body does; those a
# `<br>` already made count towards them. A code block only needs lines of its own: Element
# puts it between paragraphs when it wants blank lines, and the renderer writes them as `<br>`.
_BLOCK_BREAKS = {
    "p": 2,
    "blockquote": 2,
    "pre": 1,
    "ul": 2,
    "ol": 2,
    "h1": 2,
    "h2": 2,
    "h3": 2,
    "h4": 2,
    "h5": 2,
    "h6": 2,
    "hr": 2,
    "table": 2,
    "div": 1,
    "li": 1,
    "tr": 1,
    "details": 1,
    "summary": 1,
}
# Whatever is inside these is never shown: reply fallbacks and active content.
_SKIPPED = frozenset({"mx-reply", "script", "style", "head", "title", "template", "iframe", "object", "svg"})
_VOID = frozenset(
    {"br", "img", "hr", "wbr", "input", "meta", "link", "area", "base", "col", "embed", "source"}
)
_SAFE_SCHEMES = ("http://", "https://", "mailto:", "ftp://", "matrix:", "tel:")
_MATRIX_TO = re.compile(r"^https://matrix\.to/#/([^/?#]+)")
_MATRIX_URI = re.compile(r"^matrix:u/([^/?#]+)")
_SPACE = re.compile(r"[ \t\n\r\f]+")
_NOT_A_USER_ID = re.compile(r"[\s<>|\x00-\x1f\x7f]")
# Larger HTML is not read (the plain body stands in): Matrix events are at most 64 KiB anyway.
MAX_HTML_CHARS = 64 * 1024
# What a broadcast reads as here: `@room` is Matrix's own (everyone in the room), the others
# are other networks' broadcasts as shown here, so they go back the way they came.
_BROADCAST_WORDS = {"@room": "!channel", "@channel": "!channel", "@here": "!here", "@everyone": "!everyone"}
_BROADCAST = re.compile(
    r"(?<![\w@])(?:" + "|".join(map(re.escape, _BROADCAST_WORDS)) + r")(?![\w-]|:\w)"  # not @room:server
)
# Deeper nesting is read as text: a span more or an indent more per level would make hostile
# markup cost its square in work or output.
MAX_NESTING = 32  # formatting elements open at once
MAX_INDENT = 16  # list and quote levels shown
# Spans a broadcast word inside is not one: it is code, a link's label or a name.
_OPAQUE: frozenset[SpanKind] = frozenset({"code", "pre", "link", "mention"})


class FormatError(Exception):
    """A message's HTML was refused or could not be read: its plain body stands in, on record."""


def parse_content(
    content: Mapping[str, Any], *, network: str, ghosts: Ghosts, reply: bool, html: bool = True
) -> Text:
    """The text of an `m.room.message` content (or of its `m.new_content`).

    `reply`: the event is a reply, so a plain body may start with a quoted fallback.
    `html`: read `formatted_body`; a FormatError says it is over MAX_HTML_CHARS or unreadable,
    and the caller converts again with `html=False` and flags the event `format_fallback`.
    """
    try:
        text = _content_text(content, network=network, ghosts=ghosts, reply=reply, html=html)
    except FormatError:
        raise
    except Exception as exc:  # whatever hostile markup finds, it must not cost the event
        raise FormatError(f"{type(exc).__name__}: {exc}") from exc
    mentions = content.get("m.mentions")
    # Only an intentional room mention broadcasts: a word typed alone pings nobody on Matrix.
    if isinstance(mentions, Mapping) and mentions.get("room") is True:
        return _with_broadcasts(text, network)
    return text


def _content_text(
    content: Mapping[str, Any], *, network: str, ghosts: Ghosts, reply: bool, html: bool
) -> Text:
    body = content.get("body")
    body = body if isinstance(body, str) else ""
    formatted = content.get("formatted_body")
    if html and content.get("format") == HTML_FORMAT and isinstance(formatted, str):
        if len(formatted) > MAX_HTML_CHARS:
            raise FormatError(f"formatted_body of {len(formatted)} characters")
        text = parse_html(formatted, network=network, ghosts=ghosts)
        if text or not body:
            return text
    return Text.of(strip_reply_fallback(body) if reply else body)


def _with_broadcasts(text: Text, network: str) -> Text:
    # covered[i]: characters before offset i inside code, a link or a name; each match is then one lookup.
    depth = [0] * (len(text.plain) + 1)
    for s in text.spans:
        if s.kind in _OPAQUE and s.start < s.end:
            depth[max(s.start, 0)] += 1
            depth[min(s.end, len(text.plain))] -= 1
    covered, inside, total = [0], 0, 0
    for step in depth[:-1]:
        inside += step
        total += inside > 0
        covered.append(total)
    found = [
        Span("mention", m.start(), m.end(), network=network, user=_BROADCAST_WORDS[m.group()], broadcast=True)
        for m in _BROADCAST.finditer(text.plain)
        if covered[m.end()] == covered[m.start()]
    ]
    return text.with_spans(found)


def strip_reply_fallback(body: str) -> str:
    """Drop the `> <@user> quoted` lines (and the blank line after) older clients prepend to replies."""
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i == 0:
        return body
    if i < len(lines) and lines[i] == "":
        i += 1
    return "\n".join(lines[i:])


def parse_html(html: str, *, network: str, ghosts: Ghosts) -> Text:
    parser = _Parser(network=network, ghosts=ghosts)
    for token in tokens(html):
        if isinstance(token, str):
            parser.handle_data(token)
        elif isinstance(token, EndTag):
            parser.handle_endtag(token.name)
        elif token.self_closing:
            parser.handle_startendtag(token.name, token.attrs)
        else:
            parser.handle_starttag(token.name, token.attrs)
    return parser.finish()


def mention_target(href: str, *, network: str, ghosts: Ghosts) -> tuple[str, str] | None:
    """(network, native user id) that a pill link points at, or None for other links."""
    match = _MATRIX_TO.match(href) or _MATRIX_URI.match(href)
    if match is None:
        return None
    mxid = unquote(match.group(1))
    if match.re is _MATRIX_URI:
        mxid = "@" + mxid
    if not mxid.startswith("@") or ":" not in mxid:
        return None  # a room or event link, not a user
    return ghosts.parse(mxid) or (network, mxid)


def _names_person(user: str) -> bool:
    # `!…` is how broadcasts and groups travel (`!channel`, `!subteam^S1`); no network's user id
    # looks like that, nor holds spaces, controls or markup characters.
    return bool(user) and not user.startswith("!") and _NOT_A_USER_ID.search(user) is None


@dataclass
class _Open:
    tag: str
    kind: SpanKind | None = None
    url: str = ""
    network: str = ""
    user: str = ""
    start: int | None = None  # set when the element's first content arrives


@dataclass
class _List:
    ordered: bool
    number: int


class _Parser:
    def __init__(self, *, network: str, ghosts: Ghosts) -> None:
        self.network = network
        self.ghosts = ghosts
        self.out = TextBuilder()
        self.stack: list[_Open] = []
        self.on_stack: Counter[str] = Counter()  # tags in `stack`, so an end tag is matched at once
        self.unstarted = 0  # stack[unstarted:] have had no content yet
        self.styled = 0  # entries of `stack` that make a span
        self.lists: list[_List] = []
        self.skip = 0
        self.quote = 0
        self.pre: list[str] | None = None  # text of the open code block
        # Whitespace and block breaks are owed, and settled only when content
        # follows, so markup layout never leaves stray spaces or blank lines.
        self.breaks = 0
        self.space = False
        self.marker = ""
        self.at_line_start = True
        self.trailing = 0  # line breaks the output ends with

    def _append(self, s: str) -> None:
        self.out.append(s)
        kept = s.rstrip("\n")
        self.trailing = len(s) - len(kept) if kept else self.trailing + len(s)

    def _settle(self) -> None:
        if self.breaks and self.out.length:
            self._pay_breaks()
            self.at_line_start = True
        elif self.space and not self.at_line_start:
            self._append(" ")
        self.breaks = 0
        self.space = False
        if self.at_line_start and self.quote:
            self._append("> " * min(self.quote, MAX_INDENT))
        if self.marker:
            self._append(self.marker)
            self.marker = ""
        self.at_line_start = False
        for entry in self.stack[self.unstarted :]:
            entry.start = self.out.length
        self.unstarted = len(self.stack)

    def _content(self, s: str) -> None:
        self._settle()
        self._append(s)

    def _block(self, n: int) -> None:
        if not self.marker:  # a paragraph right inside a list item stays on the marker's line
            self.breaks = max(self.breaks, n)
        self.space = False

    def _newline(self) -> None:
        if self.breaks and self.out.length:
            self._pay_breaks()
        self.breaks = 0
        self.space = False
        self._append("\n")
        self.at_line_start = True

    def _pay_breaks(self) -> None:
        # A `<br>` right before a block already ended the line, as a browser shows it.
        self._append("\n" * max(0, self.breaks - self.trailing))

    def handle_starttag(self, tag: str, attrs: dict[str, str | None]) -> None:
        if self.skip:
            if tag in _SKIPPED:
                self.skip += 1
            return
        if tag in _SKIPPED:
            self.skip = 1
            return
        if self.pre is not None:
            if tag == "br":
                self.pre.append("\n")
            return  # a code block is one span; its inner markup (code, highlighting) is dropped
        if tag in _BLOCK_BREAKS:
            self._block(_BLOCK_BREAKS[tag])
        if tag == "br":
            self._newline()
        elif tag == "pre":
            self.pre = []
        elif tag == "blockquote":
            self.quote += 1
        elif tag in ("ul", "ol"):
            self.lists.append(_List(tag == "ol", _start_number(attrs)))
        elif tag == "li":
            self._list_item()
        elif tag == "img":
            alt = attrs.get("alt")
            if alt:
                self._text(alt)
        elif tag not in _VOID:
            entry = self._open(tag, attrs)
            if entry.kind is not None and self.styled >= MAX_NESTING:
                entry = _Open(tag)  # deeper styles add nothing a reader can see, only work
            self.styled += entry.kind is not None
            self.on_stack[tag] += 1
            self.stack.append(entry)

    def handle_startendtag(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def _open(self, tag: str, attrs: dict[str, str | None]) -> _Open:
        if tag == "a":
            href = (attrs.get("href") or "").strip()
            target = mention_target(href, network=self.network, ghosts=self.ghosts)
            if target is not None:
                if not _names_person(target[1]):
                    return _Open(tag)  # a forged pill is its label, as text
                return _Open(tag, "mention", network=target[0], user=target[1])
            if href.lower().startswith(_SAFE_SCHEMES):
                return _Open(tag, "link", url=href)
            return _Open(tag)
        return _Open(tag, _INLINE.get(tag))

    def _list_item(self) -> None:
        marker = "- "
        if self.lists and self.lists[-1].ordered:
            marker = f"{self.lists[-1].number}. "
            self.lists[-1].number += 1
        self.marker = "  " * min(max(0, len(self.lists) - 1), MAX_INDENT) + marker

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag in _SKIPPED:
                self.skip -= 1
            return
        if self.pre is not None:
            if tag == "pre":
                self._close_pre()
            return
        if tag in _BLOCK_BREAKS:
            self._block(_BLOCK_BREAKS[tag])
        if tag == "blockquote" and self.quote:
            self.quote -= 1
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        if not self.on_stack[tag]:
            return  # a stray end tag closes nothing
        while self.stack:
            entry = self._pop()
            if entry.tag == tag:
                break

    def _pop(self) -> _Open:
        entry = self.stack.pop()
        self.on_stack[entry.tag] -= 1
        self.styled -= entry.kind is not None
        self.unstarted = min(self.unstarted, len(self.stack))
        self._close(entry)
        return entry

    def _close(self, entry: _Open) -> None:
        if entry.kind is not None and entry.start is not None:
            self.out.add_span(entry.kind, entry.start, url=entry.url, network=entry.network, user=entry.user)

    def _close_pre(self) -> None:
        # Element ends every code block with a newline that is not part of the code.
        code = "".join(self.pre or ()).removesuffix("\n")
        self.pre = None
        if code:
            self._settle()
            start = self.out.length
            self._append(code)
            self.out.add_span("pre", start)
        self._block(_BLOCK_BREAKS["pre"])

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre is not None:
            self.pre.append(data)
            return
        self._text(data)

    def _text(self, data: str) -> None:
        for i, word in enumerate(_SPACE.split(data)):
            if i:
                self.space = True
            if word:
                self._content(word)

    def finish(self) -> Text:
        if self.pre is not None:
            self._close_pre()
        while self.stack:
            self._pop()
        text = self.out.build()
        # Trailing line breaks are layout, but a code block keeps every character of its own.
        end = max([len(text.plain.rstrip()), *(s.end for s in text.spans if s.kind == "pre")])
        return text.slice(0, end)


def _start_number(attrs: dict[str, str | None]) -> int:
    try:
        return int(attrs.get("start") or 1)
    except ValueError:
        return 1


def render(text: Text, *, network: str, ghosts: Ghosts) -> tuple[str, str | None]:
    """(body, formatted_body) for `text`; formatted_body is None when plain text says it all.
    Both are well-formed Unicode: a homeserver cannot carry a lone surrogate."""
    if not text.spans:
        return well_formed(text.plain), None
    return well_formed(text.plain), well_formed(_Renderer(network, ghosts).render(text))


@dataclass
class _Renderer:
    network: str
    ghosts: Ghosts
    parts: list[str] = field(default_factory=list)
    open: list[tuple[Span, str]] = field(default_factory=list)  # span and its closing tags

    def render(self, text: Text) -> str:
        segments = list(text.segments())
        for i, (chunk, active) in enumerate(segments):
            # Outer spans first, so nested spans close and reopen as little as possible.
            wanted = sorted(active, key=lambda s: (s.start, -s.end, SPAN_ORDER.index(s.kind)))
            keep = 0
            while keep < min(len(wanted), len(self.open)) and self.open[keep][0] == wanted[keep]:
                keep += 1
            while len(self.open) > keep:
                self.parts.append(self.open.pop()[1])
            for span in wanted[keep:]:
                opening, closing = self._tags(span)
                self.parts.append(opening)
                self.open.append((span, closing))
            if any(s.kind == "pre" for s, _ in self.open):
                self.parts.append(escape(chunk, quote=False))
                continue
            # The parser ends a code block's last line by itself, so the break after one is not
            # written; those before one are, as the parser counts them towards its own.
            if i > 0 and _has_pre(segments[i - 1][1]):
                chunk = chunk.removeprefix("\n")
            self.parts.append(escape(chunk, quote=False).replace("\n", "<br>"))
        while self.open:
            self.parts.append(self.open.pop()[1])
        return "".join(self.parts)

    def _tags(self, span: Span) -> tuple[str, str]:
        if span.kind == "mention":
            # A broadcast or a group (Slack's <!here>, <!subteam^…>) has no one person to pill;
            # a broadcast stays text, which m.mentions makes ping the room.
            if span.user.startswith("!"):
                return "", ""
            try:
                mxid = (
                    span.user if span.network == self.network else self.ghosts.mxid(span.network, span.user)
                )
            except ValueError:
                return "", ""
            return f'<a href="https://matrix.to/#/{quote(mxid, safe="@:=/+")}">', "</a>"
        if span.kind == "link":
            if not span.url.lower().startswith(_SAFE_SCHEMES):
                return "", ""
            return f'<a href="{escape(span.url, quote=True)}">', "</a>"
        if span.kind == "pre":
            # Like Element's, the code ends with a newline that the parser drops again.
            return "<pre><code>", "\n</code></pre>"
        if span.kind == "code" and any(s.kind == "pre" for s, _ in self.open):
            return "", ""
        tag = _TAGS[span.kind]
        return f"<{tag}>", f"</{tag}>"


def _has_pre(spans: tuple[Span, ...]) -> bool:
    return any(s.kind == "pre" for s in spans)
