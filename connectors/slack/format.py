"""Slack mrkdwn (the wire form of message text) ↔ `bridge.text.Text`.

Slack escapes only `&`, `<` and `>`; everything between `<` and `>` is a
control sequence (`<@U123>`, `<#C123|name>`, `<!here>`, `<url|label>`).
Styles are marker pairs (`*bold*`, `_italic_`, `~strike~`, `` `code` ``,
```` ```pre``` ````) that Slack honours only at word boundaries and within one
line, and mrkdwn has no escape for a literal marker. So the renderer places
its own markers where Slack will read them, and when literal `*_~`` ` `` in
the text would pair up into formatting nobody wrote, it fences them with
zero-width spaces; the parser drops zero-width spaces next to markers again.

Mentions keep the network's own ids: `<@U123>` becomes a mention span with
user `U123`; broadcasts (`<!here>`) and user groups (`<!subteam^S1|@ops>`)
become mention spans whose user is the sequence itself (`!here`), so they
survive a trip through the core and render back unchanged. Broadcasts are
`bridge.text.BROADCASTS`, which other networks parse too: one written
anywhere renders as Slack's own (`<!channel>` for Matrix's `@room`). Channel mentions
become links to `https://slack.com/app_redirect?channel=C123`, which any
reader can open and which this renderer turns back into `<#C123|name>`.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from bridge.text import BROADCASTS, Span, SpanKind, Text, TextBuilder

NameLookup = Callable[[str], str | None]

ZWSP = "\u200b"
_STYLE_MARKERS: dict[str, SpanKind] = {"*": "bold", "_": "italic", "~": "strike"}
_MARKER_FOR: dict[SpanKind, str] = {kind: marker for marker, kind in _STYLE_MARKERS.items()}
_MARKER_CHARS = frozenset("*_~`")
_CHANNEL_URL = "https://slack.com/app_redirect?channel="

_SEQUENCE = re.compile(r"<([^<>]+)>")
_SPECIAL = re.compile(r"[<`*_~]")
_STYLE_CHAR = re.compile(r"[*_~]")
_TICK = re.compile(r"`")
_NEWLINE = re.compile(r"\n")
_PLAIN = re.compile(r"[^<&`*_~]*")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")
_SUBTEAM = re.compile(r"!subteam\^[A-Z0-9]+")
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
_SAFE_SCHEMES = ("http://", "https://", "mailto:", "ftp://", "tel:")
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]{2,})(?:\|[^<>]*)?>")
_CHANNEL_MENTION = re.compile(r"<#([CGD][A-Z0-9]{2,})(?:\|)?>")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    if "&" not in text:
        return text
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


def mentioned_users(wire: str) -> list[str]:
    """User ids mentioned in wire text, so their names can be fetched before parsing."""
    return list(dict.fromkeys(_USER_MENTION.findall(wire)))


def unnamed_channels(wire: str) -> list[str]:
    """Channel ids mentioned without a name (`<#C123>`, `<#C123|>`), to look up before parsing."""
    return list(dict.fromkeys(_CHANNEL_MENTION.findall(wire)))


def channel_url(channel_id: str) -> str:
    return _CHANNEL_URL + channel_id


# -- parsing --------------------------------------------------------------------


def parse(
    wire: str,
    network: str,
    user_name: NameLookup | None = None,
    channel_name: NameLookup | None = None,
) -> Text:
    """Slack wire text as canonical text; `user_name`/`channel_name` resolve ids to names."""
    if _PLAIN.fullmatch(wire):
        return Text(wire)
    parser = _Parser(wire, network, user_name or _no_name, channel_name or _no_name)
    parser.run(0, len(wire), frozenset())
    return parser.out.build()


def _no_name(_: str) -> str | None:
    return None


def _is_space(ch: str) -> bool:
    return ch.isspace() or ch == ZWSP


def _first(positions: list[int], low: int, high: int) -> int | None:
    """The first of the sorted `positions` in [low, high)."""
    k = bisect_left(positions, low)
    return positions[k] if k < len(positions) and positions[k] < high else None


@dataclass(frozen=True)
class _Code:
    kind: Literal["code", "pre"]
    start: int  # of the opening marker
    content_start: int
    content_end: int
    end: int  # after the closing marker


class _Parser:
    def __init__(self, wire: str, network: str, user_name: NameLookup, channel_name: NameLookup) -> None:
        self.wire = wire
        self.network = network
        self.user_name = user_name
        self.channel_name = channel_name
        self.out = TextBuilder()
        self.sequences = {m.start(): m for m in _SEQUENCE.finditer(wire)} if "<" in wire else {}
        blocked = bytearray(len(wire) + 1)
        for m in self.sequences.values():
            blocked[m.start() : m.end()] = b"\x01" * (m.end() - m.start())
        self.newlines = [m.start() for m in _NEWLINE.finditer(wire)]
        # Code binds tighter than styles, as in Markdown: find it first, so that a
        # style marker inside code never closes a style opened outside it.
        self.code: dict[int, _Code] = {}
        if "`" in wire:
            ticks = [m.start() for m in _TICK.finditer(wire) if not blocked[m.start()]]
            for code in self._code_spans(ticks):
                self.code[code.start] = code
                blocked[code.start : code.end] = b"\x01" * (code.end - code.start)
        # Candidate closers, found once so that hostile input costs O(n log n), not O(n²).
        self.closers: dict[str, list[int]] = {m: [] for m in _STYLE_MARKERS}
        for m in _STYLE_CHAR.finditer(wire):
            i = m.start()
            if not blocked[i] and self._can_close(i):
                self.closers[m.group()].append(i)

    def _code_spans(self, ticks: list[int]) -> list[_Code]:
        wire = self.wire
        fences = [i for i in ticks if wire.startswith("```", i)]
        spans: list[_Code] = []
        k = 0
        while k < len(ticks):
            i = ticks[k]
            close: int | None = None
            if wire.startswith("```", i):
                close = _first(fences, i + 4, len(wire))
                if close is not None:
                    spans.append(_Code("pre", i, i + 3, close, close + 3))
            if close is None and self._char(i + 1) != ZWSP:
                close = _first(ticks, i + 2, self._line_end(i))
                if close is not None and self._char(close - 1) != ZWSP:
                    spans.append(_Code("code", i, i + 1, close, close + 1))
                else:
                    close = None
            if close is None:
                k += 1
            else:
                k = bisect_right(ticks, spans[-1].end - 1)
        return spans

    def _char(self, i: int) -> str:
        return self.wire[i] if 0 <= i < len(self.wire) else ""

    def _can_open(self, i: int) -> bool:
        before, after = self._char(i - 1), self._char(i + 1)
        return not before.isalnum() and after != "" and not _is_space(after)

    def _can_close(self, i: int) -> bool:
        before, after = self._char(i - 1), self._char(i + 1)
        return before != "" and not _is_space(before) and not after.isalnum()

    def _line_end(self, i: int) -> int:
        k = bisect_left(self.newlines, i)
        return self.newlines[k] if k < len(self.newlines) else len(self.wire)

    def run(self, start: int, end: int, active: frozenset[str]) -> None:
        wire = self.wire
        i = literal = start
        while True:
            # Only `<` and the markers can start anything; skip the words between them.
            found = _SPECIAL.search(wire, i, end)
            if found is None:
                break
            i = found.start()
            seq = self.sequences.get(i)
            if seq is not None:
                self._literal(literal, i)
                self._sequence(seq.group(1))
                i = literal = seq.end()
                continue
            code = self.code.get(i) if not active & {"code", "pre"} else None
            if code is not None:
                self._literal(literal, i)
                begin = self.out.length
                self.run(code.content_start, code.content_end, active | {code.kind})
                self.out.add_span(code.kind, begin)
                i = literal = code.end
                continue
            kind = _STYLE_MARKERS.get(wire[i])
            if kind is not None and kind not in active and "code" not in active and "pre" not in active:
                close = _first(self.closers[wire[i]], i + 2, min(end, self._line_end(i)))
                if close is not None and self._can_open(i):
                    self._literal(literal, i)
                    begin = self.out.length
                    self.run(i + 1, close, active | {kind})
                    self.out.add_span(kind, begin)
                    i = literal = close + 1
                    continue
            i += 1
        self._literal(literal, end)

    def _literal(self, start: int, end: int) -> None:
        if start >= end:
            return
        chunk = self.wire[start:end]
        if ZWSP in chunk:
            chunk = "".join(
                ch
                for k, ch in enumerate(chunk, start)
                if ch != ZWSP
                or not (self._char(k - 1) in _MARKER_CHARS or self._char(k + 1) in _MARKER_CHARS)
            )
        self.out.append(unescape(chunk))

    def _sequence(self, inner: str) -> None:
        target, bar, label = inner.partition("|")
        label = unescape(label)
        begin = self.out.length
        if target.startswith("@"):
            user = target[1:]
            self.out.append(self.user_name(user) or label or user)
            self.out.add_span("mention", begin, network=self.network, user=user)
        elif target.startswith("#"):
            channel = target[1:]
            self.out.append("#" + (label or self.channel_name(channel) or channel))
            self.out.add_span("link", begin, url=channel_url(channel))
        elif target in BROADCASTS or _SUBTEAM.fullmatch(target):
            # Without a label a group shows its id: `<!subteam^S123>` reads @S123.
            self.out.append(
                label
                if label.startswith("@")
                else "@" + (label or target[1:].partition("^")[2] or target[1:])
            )
            self.out.add_span("mention", begin, network=self.network, user=target, broadcast=True)
        elif target.startswith("!"):
            # <!date^…|fallback> and the like: readers see the fallback.
            self.out.append(label or target[1:])
        elif _SCHEME.match(target):
            url = unescape(target)
            self.out.append(label if bar and label else url)
            self.out.add_span("link", begin, url=url)
        else:
            self.out.append(unescape(f"<{inner}>"))


# -- rendering ------------------------------------------------------------------


class _Unit:
    """A word (or several), a run of spaces, a line break or one literal marker; or
    one control sequence or code span, rendered whole (an atom)."""

    __slots__ = ("atom", "marker", "marks", "space", "styles", "text")

    def __init__(
        self, text: str, styles: frozenset[str], atom: bool = False, marks: tuple[int, ...] = ()
    ) -> None:
        self.text = text
        self.styles = styles
        self.atom = atom
        self.marks = marks  # offsets of the markers inside an atom (code fences)
        self.space = not atom and text.isspace()
        # A literal `*_~`` ` ``: Slack might read it as formatting.
        self.marker = not atom and text in _MARKER_CHARS


_TOKEN = re.compile(r"\n|[^\S\n]+|[*_~`]|[^\s*_~`]+")
_STYLED_PIECE = re.compile(r"\n|[^\S\n]+|\S(?:[^\n]*\S)?")
# Each pass can only move literals out of runs; real text needs one or two.
_MAX_PASSES = 4
_ATOM_PRIORITY = {"pre": 0, "code": 1, "link": 2, "mention": 2}


def render(text: Text, network: str) -> str:
    """`text` as Slack wire text; mentions of users on `network` become `<@U…>`."""
    if not text.spans and not _MARKER_CHARS.intersection(text.plain):
        return escape(text.plain)
    units = _units(text, network)
    if not any(u.styles or u.marker for u in units):
        return "".join(u.text if u.atom else escape(u.text) for u in units)
    loose: set[int] = set()
    for _ in range(_MAX_PASSES):
        emitted = _Emitter(units, loose=loose)
        wire = emitted.emit()
        guards = _guards(wire, emitted) if emitted.literals else {}
        if not guards:
            return wire
        # A fence right inside one of our markers would unmake it: leave that literal
        # out of the styled run instead, and look again.
        clashing = {
            index
            for index, (before, after) in guards.items()
            if (before and emitted.literals[index][0] - 1 in emitted.ours)
            or (after and emitted.literals[index][0] + 1 in emitted.ours)
        }
        if clashing <= loose:
            break
        loose |= clashing
    return _Emitter(units, guards, loose).emit()


def _units(text: Text, network: str) -> list[_Unit]:
    plain = text.plain
    atoms: dict[int, Span] = {}
    end = 0
    candidates = sorted(
        (s for s in text.spans if s.kind in _ATOM_PRIORITY and s.start < s.end),
        key=lambda s: (s.start, _ATOM_PRIORITY[s.kind], -s.end),
    )
    for span in candidates:
        if span.start >= end:
            atoms[span.start] = span
            end = span.end
    # Styles change only at these offsets; between two of them the text is one piece.
    changes: dict[int, list[tuple[str, int]]] = {}
    for span in text.spans:
        if span.kind in _MARKER_FOR and span.start < span.end:
            changes.setdefault(span.start, []).append((span.kind, 1))
            changes.setdefault(span.end, []).append((span.kind, -1))
    cuts = sorted({0, len(plain), *changes, *atoms, *(a.end for a in atoms.values())})
    refs = sorted((s for s in text.spans if s.kind in ("mention", "link")), key=lambda s: s.start)
    depth = dict.fromkeys(_MARKER_FOR, 0)
    units: list[_Unit] = []
    atom: Span | None = None
    covering: frozenset[str] = frozenset()
    styles: frozenset[str] = frozenset()
    for a, b in pairwise(cuts):
        if a in changes:
            for kind, step in changes[a]:
                depth[kind] += step
            styles = frozenset(kind for kind, n in depth.items() if n > 0)
        if atom is None and a in atoms:
            atom, covering = atoms[a], styles
        if atom is None:
            units.extend(_pieces(plain, a, b, styles))
            continue
        covering &= styles
        if b < atom.end:
            continue
        rendered = _atom(text, atom, network, refs)
        if rendered is None:
            # Not expressible in mrkdwn: its visible text stays, as literal text.
            shown = _fallback_text(text, atom, network)
            units.extend(_pieces(shown, 0, len(shown), covering))
        else:
            # Slack reads style markers within one line only: around a block that spans lines
            # they would show as literal `*`, so such a block goes unstyled.
            shown_styles = frozenset() if "\n" in rendered else covering
            units.append(_Unit(rendered, shown_styles, atom=True, marks=_fence_marks(rendered)))
        atom = None
    return units


def _pieces(plain: str, start: int, end: int, styles: frozenset[str]) -> list[_Unit]:
    """The units of literal text: as few as the emitter needs to place markers well."""
    if _MARKER_CHARS.isdisjoint(plain[start:end]):
        if not styles:
            return [_Unit(plain[start:end], styles)]
        # Styled: markers go around words, so edge spaces and line breaks stand alone.
        return [_Unit(m.group(), styles) for m in _STYLED_PIECE.finditer(plain, start, end)]
    return [_Unit(m.group(), styles) for m in _TOKEN.finditer(plain, start, end)]


def _visible(text: Text, span: Span) -> str:
    return text.plain[span.start : span.end]


def _atom(text: Text, span: Span, network: str, refs: list[Span]) -> str | None:
    visible = _visible(text, span)
    if span.kind == "mention":
        return _mention(span, visible, network)
    if span.kind == "link":
        return _link(span.url, visible)
    inner = _inline(text, span, refs, network)
    if span.kind == "pre":
        return "```" + inner.replace("```", "``" + ZWSP + "`") + "```"
    if "`" in visible:
        return None
    if "\n" in visible:
        return "```" + inner + "```"
    return "`" + inner + "`"


def _fence_marks(rendered: str) -> tuple[int, ...]:
    n = len(rendered)
    if rendered.startswith("```"):
        return (0, 1, 2, n - 3, n - 2, n - 1)
    if rendered.startswith("`"):
        return (0, n - 1)
    return ()


def _fallback_text(text: Text, span: Span, network: str) -> str:
    visible = _visible(text, span)
    if span.kind == "mention" and not visible.startswith("@"):
        return "@" + visible
    return visible


def _mention(span: Span, visible: str, network: str) -> str | None:
    user = span.user
    if not span.broadcast and user.startswith("!"):
        return None  # a user id that reads like a broadcast or group ping is text
    if user in BROADCASTS:  # the canonical names are Slack's own
        return f"<{user}>"
    if span.network != network:
        return None
    if _USER_ID.fullmatch(user):
        return f"<@{user}>"
    if _SUBTEAM.fullmatch(user):
        handle = visible if visible.startswith("@") else "@" + visible
        if handle == "@" + user.partition("^")[2]:
            return f"<{user}>"
        return f"<{user}|{escape(handle)}>"
    return None


def _link(url: str, visible: str) -> str | None:
    if url.startswith(_CHANNEL_URL):
        channel = url[len(_CHANNEL_URL) :]
        # A bare `#` is no name: `<#C123|>` would read back as the channel's own name.
        if _CHANNEL_ID.fullmatch(channel) and visible.startswith("#") and len(visible) > 1:
            name = visible[1:]
            return f"<#{channel}>" if name == channel else f"<#{channel}|{escape(name)}>"
    if not url.lower().startswith(_SAFE_SCHEMES):
        return None
    target = escape(url).replace("|", "%7C")
    if visible == url:
        return f"<{target}>"
    return f"<{target}|{escape(visible)}>"


def _inline(text: Text, block: Span, refs: list[Span], network: str) -> str:
    """The inside of a code block: escaped text with its mentions and links, no styles.

    `refs` are the text's mentions and links sorted by start.
    """
    out: list[str] = []
    pos = block.start
    for span in refs[bisect_left(refs, block.start, key=lambda s: s.start) :]:
        if span.start >= block.end:
            break
        if span.start < pos or span.end > block.end:
            continue
        out.append(escape(text.plain[pos : span.start]))
        visible = _visible(text, span)
        rendered = _mention(span, visible, network) if span.kind == "mention" else _link(span.url, visible)
        out.append(rendered if rendered is not None else escape(visible))
        pos = span.end
    out.append(escape(text.plain[pos : block.end]))
    return "".join(out)


@dataclass
class _Emitter:
    units: list[_Unit]
    # unit index -> (a zero-width space before it, after it): fences for literal markers
    guards: dict[int, tuple[bool, bool]] = field(default_factory=dict)
    loose: set[int] = field(default_factory=set)  # literal markers kept out of the edges of runs
    parts: list[str] = field(default_factory=list)
    length: int = 0
    ours: dict[int, str] = field(default_factory=dict)  # offset -> style marker we placed
    fences: list[int] = field(default_factory=list)  # offsets of code fence backticks
    literals: dict[int, tuple[int, frozenset[str]]] = field(default_factory=dict)  # unit -> (offset, open)

    def emit(self) -> str:
        styles = self._clean_styles()
        run_end = self._run_ends(styles) if any(styles) else {}
        stack: list[str] = []
        loose = self.loose
        last = len(styles) - 1
        for i, unit in enumerate(self.units):
            wanted = styles[i]
            if i in loose:
                # Not next to any marker of ours: close before it what closes after it.
                wanted = wanted & styles[i + 1] if i < last else frozenset()
            if stack and not wanted.issuperset(stack):
                keep = next(k for k, kind in enumerate(stack) if kind not in wanted)
                for kind in reversed(stack[keep:]):
                    self._marker(_MARKER_FOR[kind])
                del stack[keep:]
                if unit.text[:1].isalnum():
                    self._put(ZWSP)
            # Openers need a non-space right after them, so a reopening waits for one.
            if wanted and not unit.space and i not in loose and not wanted.issubset(stack):
                opening = sorted(
                    (k for k in wanted if k not in stack), key=lambda k: (-run_end[k][i], _MARKER_FOR[k])
                )
                if self.parts and self.parts[-1][-1:].isalnum():
                    self._put(ZWSP)
                for kind in opening:
                    self._marker(_MARKER_FOR[kind])
                    stack.append(kind)
            if unit.atom:
                self.fences.extend(self.length + k for k in unit.marks)
                self._put(unit.text)
            elif unit.marker:
                self._literal(i, unit.text, frozenset(stack))
            else:
                self._put(escape(unit.text))
        for kind in reversed(stack):
            self._marker(_MARKER_FOR[kind])
        return "".join(self.parts)

    def _clean_styles(self) -> list[frozenset[str]]:
        """Per unit, the styles it shows: never across a line break, never on edge whitespace."""
        units = self.units
        n = len(units)
        if not any(u.styles for u in units):
            return [u.styles for u in units]
        per_unit: list[set[str]] = [set() for _ in units]
        for kind in _MARKER_FOR:
            i = 0
            while i < n:
                if kind not in units[i].styles or units[i].text == "\n":
                    i += 1
                    continue
                j = i
                while j < n and kind in units[j].styles and units[j].text != "\n":
                    j += 1
                lo, hi = i, j
                while lo < hi and (units[lo].space or lo in self.loose):
                    lo += 1
                while hi > lo and (units[hi - 1].space or hi - 1 in self.loose):
                    hi -= 1
                for k in range(lo, hi):
                    per_unit[k].add(kind)
                i = j
        return [frozenset(s) for s in per_unit]

    def _run_ends(self, styles: list[frozenset[str]]) -> dict[str, list[int]]:
        ends: dict[str, list[int]] = {}
        n = len(styles)
        for kind in _MARKER_FOR:
            row = [0] * n
            end = n
            for i in range(n - 1, -1, -1):
                if kind not in styles[i]:
                    end = i
                row[i] = end
            ends[kind] = row
        return ends

    def _literal(self, index: int, marker: str, open_styles: frozenset[str]) -> None:
        before, after = self.guards.get(index, (False, False))
        if before:
            self._put(ZWSP)
        self.literals[index] = (self.length, open_styles)
        self._put(marker)
        if after:
            self._put(ZWSP)

    def _marker(self, marker: str) -> None:
        self.ours[self.length] = marker
        self._put(marker)

    def _put(self, s: str) -> None:
        self.parts.append(s)
        self.length += len(s)


def _guards(wire: str, emitted: _Emitter) -> dict[int, tuple[bool, bool]]:
    """Which literal markers need a zero-width space so Slack does not pair them up.

    After one (an opener with something to close it later on the line); before one
    (a closer inside a run of ours of the same style). Markers Slack would not pair
    anyway are left as they are, so text that came from Slack goes back unchanged.
    """

    def char(i: int) -> str:
        return wire[i] if 0 <= i < len(wire) else ""

    def can_open(i: int) -> bool:
        return not char(i - 1).isalnum() and char(i + 1) != "" and not _is_space(char(i + 1))

    def can_close(i: int) -> bool:
        return char(i - 1) != "" and not _is_space(char(i - 1)) and not char(i + 1).isalnum()

    newlines = [i for i, ch in enumerate(wire) if ch == "\n"]

    def line_end(i: int) -> int:
        k = bisect_left(newlines, i)
        return newlines[k] if k < len(newlines) else len(wire)

    closers: dict[str, list[int]] = {m: [] for m in [*_STYLE_MARKERS, "`"]}
    for offset, _ in emitted.literals.values():
        if wire[offset] == "`" or can_close(offset):
            closers[wire[offset]].append(offset)
    for offset, marker in emitted.ours.items():
        if can_close(offset):
            closers[marker].append(offset)
    closers["`"].extend(emitted.fences)
    for positions in closers.values():
        positions.sort()

    guards: dict[int, tuple[bool, bool]] = {}
    for index, (offset, open_styles) in emitted.literals.items():
        ch = wire[offset]
        later = _first(closers[ch], offset + 2, line_end(offset)) is not None
        if ch == "`":
            guard = (False, later)
        else:
            inside = _STYLE_MARKERS[ch] in open_styles
            guard = (inside and can_close(offset), not inside and can_open(offset) and later)
        if any(guard):
            guards[index] = guard
    return guards
