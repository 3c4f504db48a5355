"""IRC control codes to and from `bridge.text.Text`.

IRC formatting is a flat stream of toggles, so parsing keeps one open span
per style and rendering emits a toggle wherever the set of active styles
changes. Colours have no canonical form: they are parsed and dropped.
Both directions are single sweeps (rendering sorts span boundaries once), so
no message, however many spans or links it has, costs more than n log n.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from itertools import pairwise
from urllib.parse import urlsplit

from bridge.text import Span, SpanKind, Text, TextBuilder, well_formed

BOLD = "\x02"
COLOR = "\x03"
HEX_COLOR = "\x04"
RESET = "\x0f"
MONOSPACE = "\x11"
REVERSE = "\x16"
ITALIC = "\x1d"
STRIKE = "\x1e"
UNDERLINE = "\x1f"

TOGGLES: dict[str, SpanKind] = {
    BOLD: "bold",
    ITALIC: "italic",
    UNDERLINE: "underline",
    STRIKE: "strike",
    MONOSPACE: "code",
}
CODES: dict[SpanKind, str] = {kind: code for code, kind in TOGGLES.items()}
# Toggles that start at the same offset are written in this order (and ones
# that stop, in reverse), so rendering is deterministic and round trips are stable.
CODE_ORDER: tuple[SpanKind, ...] = ("code", "bold", "italic", "underline", "strike")

_COLOR_ARGS = re.compile(r"\d{1,2}(?:,\d{1,2})?")
_HEX_COLOR_ARGS = re.compile(r"[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?")
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"]+", re.IGNORECASE)
_URL_TRAILING = ".,:;!?'*"
# RFC 2812 nicknames: a letter or special first, then letters, digits, specials and '-'.
NICK = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*")
# A line addressed to someone: "nick: text" or "nick, text".
_ADDRESSED = re.compile(rf"({NICK.pattern})[:,](?=\s|$)")

# In text from elsewhere, C0 controls would act as IRC formatting or CTCP
# delimiters (\x01), and CR/LF/NUL would break the line: none may pass. A lone
# surrogate cannot be encoded as UTF-8 at all: it is shown as U+FFFD.
_CONTROLS = str.maketrans(
    {
        **{chr(c): None for c in range(32)},
        **{chr(c): "\ufffd" for c in range(0xD800, 0xE000)},
        "\t": " ",
        "\r": " ",
        "\n": " ",
        "\x7f": None,
    }
)
_SPECIAL = frozenset((*TOGGLES, COLOR, HEX_COLOR, RESET, REVERSE))

NickResolver = Callable[[str], str | None]


def parse(raw: str, network: str, resolve_nick: NickResolver | None = None) -> Text:
    """Parse one IRC message body.

    `resolve_nick` maps a nick a line is addressed to ("alice: hi") to the
    nick as the channel knows it, or None when nobody by that name is there;
    without it every nick-shaped word before ": " counts as a mention.
    """
    out = TextBuilder()
    opened: dict[SpanKind, int] = {}
    i = 0
    while i < len(raw):
        ch = raw[i]
        i += 1
        if ch in TOGGLES:
            kind = TOGGLES[ch]
            if kind in opened:
                out.add_span(kind, opened.pop(kind))
            else:
                opened[kind] = out.length
        elif ch == COLOR:
            match = _COLOR_ARGS.match(raw, i)
            i = match.end() if match else i
        elif ch == HEX_COLOR:
            match = _HEX_COLOR_ARGS.match(raw, i)
            i = match.end() if match else i
        elif ch == RESET:
            for kind, start in opened.items():
                out.add_span(kind, start)
            opened.clear()
        elif ch == REVERSE:
            continue
        else:
            start = i - 1
            while i < len(raw) and raw[i] not in _SPECIAL:
                i += 1
            out.append(raw[start:i])
    for kind, start in opened.items():
        out.add_span(kind, start)
    text = out.build()
    return _add_mention(_add_links(text), network, resolve_nick)


def _add_links(text: Text) -> Text:
    links = []
    for match in _URL.finditer(text.plain):
        url = _trim_url(match.group())
        links.append(Span("link", match.start(), match.start() + len(url), url=url))
    return text.with_spans(links)


def _trim_url(url: str) -> str:
    # Prose around a URL ("see https://x.test/a.") must not become part of it;
    # a closing bracket stays only when the URL itself opened one (wiki links).
    opened, closed = url.count("("), url.count(")")
    end = len(url)
    while end and (url[end - 1] in _URL_TRAILING or (url[end - 1] == ")" and opened < closed)):
        closed -= url[end - 1] == ")"
        end -= 1
    return url[:end]


def _add_mention(text: Text, network: str, resolve_nick: NickResolver | None) -> Text:
    match = _ADDRESSED.match(text.plain)
    if not match:
        return text
    nick = match.group(1)
    user = resolve_nick(nick) if resolve_nick else nick
    if not user:
        return text
    mention = Span("mention", 0, len(nick), network=network, user=user)
    return text.with_spans([mention])


def render(text: Text) -> str:
    """Text as one IRC message body (newlines are the caller's business)."""
    text = _expand_links(text)
    plain = text.plain
    # Where each style starts (+1) and stops (-1); spans are clipped to the text.
    changes: defaultdict[int, list[tuple[SpanKind, int]]] = defaultdict(list)
    for span in text.spans:
        start, end = max(span.start, 0), min(span.end, len(plain))
        if start < end and (span.kind in CODES or span.kind == "pre"):
            changes[start].append((span.kind, 1))
            changes[end].append((span.kind, -1))
    depth: Counter[SpanKind] = Counter()
    parts: list[str] = []
    active: set[SpanKind] = set()
    for a, b in pairwise(sorted({0, len(plain), *changes})):
        for kind, step in changes.get(a, ()):
            depth[kind] += step
        chunk = text_safe(plain[a:b])
        if not chunk:
            continue  # styles around nothing visible would be noise
        # Code inside a pre block would only add noise: pre is sent as plain lines.
        in_pre = depth["pre"] > 0
        wanted = {kind for kind in CODES if depth[kind] > 0 and not (in_pre and kind == "code")}
        parts.append(_toggles(active, wanted))
        active = wanted
        parts.append(chunk)
    parts.append(_toggles(active, set()))
    return "".join(parts)


def _toggles(active: set[SpanKind], wanted: set[SpanKind]) -> str:
    # Closing innermost first, then opening outermost first, keeps the codes
    # nested the way clients write them.
    closing = [CODES[kind] for kind in reversed(CODE_ORDER) if kind in active - wanted]
    opening = [CODES[kind] for kind in CODE_ORDER if kind in wanted - active]
    return "".join(closing + opening)


def text_safe(text: str) -> str:
    """Visible text only: no control character can act on the IRC side."""
    return well_formed(text.translate(_CONTROLS))


def _expand_links(text: Text) -> Text:
    """Show each link's target: a bare URL stays as it is, a label becomes `label <url>`."""
    changes: dict[int, tuple[str, Span]] = {}
    for i, link in enumerate(text.spans):
        if link.kind == "link" and link.url:
            label = text.plain[link.start : link.end]
            shown = link_text(label, link.url)
            if shown != label:
                changes[i] = (shown, link)
    return text.replace_spans(changes)


def mentions_as_nicks(text: Text, network: str, nick_for: Callable[[str], str | None]) -> Text:
    """Mentions of people on `network` show the nick they use now, so their client highlights it.

    The core names them by native id (a services account), which need not be
    the nick they are using, and someone else may even hold that nick.
    """
    changes: dict[int, tuple[str, Span]] = {}
    for i, span in enumerate(text.spans):
        nick = nick_for(span.user) if span.kind == "mention" and span.network == network else None
        if nick is not None and nick != text.plain[span.start : span.end]:
            changes[i] = (nick, span)
    return text.replace_spans(changes)


def link_text(label: str, url: str) -> str:
    if label == url or not label.strip():
        return url
    if url.startswith("mailto:") and url[len("mailto:") :] == label:
        return label
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and label.rstrip("/") == (parts.netloc + parts.path).rstrip("/"):
        return url
    return f"{label} <{url}>"
