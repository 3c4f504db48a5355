"""A linear-time HTML tokenizer: start tags, end tags and text, nothing else.

CPython's `html.parser` as this bridge's Python (3.11.7) has it rescans the rest of
the input from every unclosed `<` (quadratic, CVE-2025-6069, fixed only in later
patch releases) and raises AssertionError on `<![`; this one reads each character a
bounded number of times and never raises. It
follows the HTML5 tokenizer where they differ: comments, doctypes, `<!…>`, `<?…>`
and `<![CDATA[…]]>` are dropped; a tag still open at the end of the input is
dropped; a `<` that starts no tag is text; script and style hold raw text. Names
are lowercased and text and attribute values unescaped, as
`HTMLParser(convert_charrefs=True)` does, so its callers see the same events.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape

# HTML's whitespace is ASCII only; `\s` would also split at U+00A0 and the like.
_WS = re.compile(r"[\t\n\f\r ]*")
_TAG_NAME = re.compile(r"[^\t\n\f\r />]*")
_ATTR_NAME = re.compile(r"[^\t\n\f\r />][^\t\n\f\r />=]*")
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_RAW_TEXT = {tag: re.compile(f"</{tag}", re.IGNORECASE) for tag in ("script", "style")}


@dataclass(frozen=True)
class StartTag:
    name: str
    attrs: dict[str, str | None]  # a valueless attribute is None; the last of duplicates wins
    self_closing: bool = False


@dataclass(frozen=True)
class EndTag:
    name: str


Token = StartTag | EndTag | str


def tokens(html: str) -> Iterator[Token]:
    """The tags and (unescaped) text runs of `html`, in order."""
    n, i, text_from = len(html), 0, 0
    while True:
        lt = html.find("<", i)
        if lt < 0:
            if text_from < n:
                yield unescape(html[text_from:])
            return
        after = html[lt + 1 : lt + 2]
        closing = after == "/"
        name_at = lt + 2 if closing else lt + 1
        opens_tag = html[name_at : name_at + 1].isascii() and html[name_at : name_at + 1].isalpha()
        if not opens_tag and after not in ("!", "?", "/"):
            i = lt + 1  # a lone `<` is text
            continue
        if text_from < lt:
            yield unescape(html[text_from:lt])
        if opens_tag:
            tag = _tag(html, name_at)
            if tag is None:
                return  # the input ends inside a tag
            name, attrs, self_closing, i = tag
            if closing:
                yield EndTag(name)
            else:
                yield StartTag(name, attrs, self_closing)
                if name in _RAW_TEXT and not self_closing:
                    end = _RAW_TEXT[name].search(html, i)
                    stop = n if end is None else end.start()
                    if stop > i:
                        yield html[i:stop]
                    i = stop
        else:
            i = _skip_markup(html, lt)
        text_from = i


def _skip_markup(html: str, start: int) -> int:
    """Where the comment, declaration or bogus comment starting at `start` ends."""
    if html.startswith("<!--", start):
        for empty in ("<!-->", "<!--->"):
            if html.startswith(empty, start):
                return start + len(empty)
        end = html.find("-->", start + 4)
        return len(html) if end < 0 else end + 3
    end = html.find(">", start + 2)
    return len(html) if end < 0 else end + 1


def _tag(html: str, at: int) -> tuple[str, dict[str, str | None], bool, int] | None:
    """(name, attributes, self-closing, offset after `>`) of the tag whose name starts at `at`;
    None when the input ends first."""
    n = len(html)
    match = _TAG_NAME.match(html, at)
    name, j = match.group().lower(), match.end()
    attrs: dict[str, str | None] = {}
    while True:
        j = _WS.match(html, j).end()
        if j >= n:
            return None
        if html[j] == ">":
            return name, attrs, False, j + 1
        if html[j] == "/":
            if html.startswith("/>", j):
                return name, attrs, True, j + 2
            j += 1
            continue
        match = _ATTR_NAME.match(html, j)
        key, j = match.group().lower(), match.end()
        j = _WS.match(html, j).end()
        value: str | None = None
        if html.startswith("=", j):
            j = _WS.match(html, j + 1).end()
            if j >= n:
                return None
            quote = html[j]
            if quote in "\"'":
                end = html.find(quote, j + 1)
                if end < 0:
                    return None
                value, j = unescape(html[j + 1 : end]), end + 1
            else:
                match = _UNQUOTED.match(html, j)
                value, j = unescape(match.group()), match.end()
        attrs[key] = value
