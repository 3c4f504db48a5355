"""Canonical rich text: plain text plus typed spans.

Each network converts its own markup to and from this form, so no converter
ever needs to know another network's markup. Offsets are Python string
indices into `plain`. Spans may nest; parsers of flat markup (IRC control
codes) may also produce overlapping spans, and renderers must cope.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Literal

SpanKind = Literal["bold", "italic", "strike", "underline", "code", "pre", "link", "mention"]

# Users of mention spans that address a whole room rather than one person. They mean
# the same on every network, so each renders them in its own way whoever wrote them:
# `!channel` everyone in the room, `!here` those of them active now, `!everyone`
# everyone on the network (Slack's whole workspace). Such a span (and a group ping) pings
# only when its `broadcast` is set, which only a network's own broadcast parser does, for
# senders that network allowed: a user id that merely reads `!channel` pings nobody.
BROADCASTS = frozenset({"!here", "!channel", "!everyone"})

# Order in which renderers open tags that start at the same offset.
SPAN_ORDER: tuple[SpanKind, ...] = (
    "link",
    "mention",
    "pre",
    "code",
    "bold",
    "italic",
    "underline",
    "strike",
)


LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, pairs are already one code point


def paired(s: str) -> str:
    """`s` with each high surrogate that is followed by a low one made the character they
    stand for, as JSON reads `\\ud83d\\ude00`: two halves can meet when text is joined (a
    parser putting `\\ud83d<b>\\ude00` together), and the archive must read back what it wrote."""
    if LONE_SURROGATE.search(s) is None:
        return s
    return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def well_formed(s: str) -> str:
    """`s` where Unicode must be well formed (UTF-8 on a wire, a database column): a lone
    surrogate, which JSON can carry and UTF-8 cannot, becomes U+FFFD. Only for what a network
    or column cannot carry otherwise; the archived record keeps the original."""
    return LONE_SURROGATE.sub("\ufffd", paired(s))


_ORDER = {kind: n for n, kind in enumerate(SPAN_ORDER)}


@dataclass(frozen=True)
class Span:
    kind: SpanKind
    start: int
    end: int
    url: str = ""  # link target
    network: str = ""  # mention: the network the mentioned user belongs to
    user: str = ""  # mention: that user's native id
    broadcast: bool = False  # mention: a room broadcast or group ping the source network allowed

    def shifted(self, delta: int) -> Span:
        return replace(self, start=self.start + delta, end=self.end + delta)


@dataclass(frozen=True)
class Text:
    plain: str = ""
    spans: tuple[Span, ...] = ()

    @classmethod
    def of(cls, plain: str) -> Text:
        return cls(plain, ())

    def __str__(self) -> str:
        return self.plain

    def __bool__(self) -> bool:
        return bool(self.plain)

    def slice(self, start: int, end: int) -> Text:
        """The text between two offsets, spans clipped to it."""
        spans = []
        for span in self.spans:
            s, e = max(span.start, start), min(span.end, end)
            if s < e:
                spans.append(replace(span, start=s - start, end=e - start))
        return Text(self.plain[start:end], tuple(spans))

    def lines(self) -> list[Text]:
        # Each span is clipped only to the lines it covers, so the cost is the size of the result.
        starts = [0, *(i + 1 for i, ch in enumerate(self.plain) if ch == "\n")]
        ends = [s - 1 for s in starts[1:]] + [len(self.plain)]
        per_line: list[list[Span]] = [[] for _ in starts]
        for span in self.spans:
            first = max(0, bisect_right(starts, span.start) - 1)
            for n in range(first, bisect_left(starts, span.end)):
                s, e = max(span.start, starts[n]), min(span.end, ends[n])
                if s < e:
                    per_line[n].append(replace(span, start=s - starts[n], end=e - starts[n]))
        return [
            Text(self.plain[a:b], tuple(spans)) for a, b, spans in zip(starts, ends, per_line, strict=True)
        ]

    def mentions(self) -> list[Span]:
        return [s for s in self.spans if s.kind == "mention"]

    def with_spans(self, spans: Iterable[Span]) -> Text:
        """The same text with more spans, kept in the order a builder leaves them."""
        builder = TextBuilder()
        builder.extend(self)
        builder.spans.extend(spans)
        return builder.build()

    def replace_spans(self, changes: Mapping[int, tuple[str, Span]]) -> Text:
        """Replace the text of spans at once: `changes` maps an index into `spans` to the new text
        there and the span that covers it (its offsets are set here). Every other span moves with
        the text around it; one enclosing a replaced span grows or shrinks with it. Of replaced
        spans that overlap, the first keeps its change. One pass, however many spans change."""
        done: list[tuple[int, int, int, int]] = []  # old start, old end, new start, new end
        accepted: set[int] = set()
        pieces: list[str] = []
        at = delta = 0
        for i in sorted(changes, key=lambda i: self.spans[i].start):
            span, (new, _) = self.spans[i], changes[i]
            if span.start < at or span.start > span.end:
                continue
            pieces += [self.plain[at : span.start], new]
            start = span.start + delta
            done.append((span.start, span.end, start, start + len(new)))
            accepted.add(i)
            delta += len(new) - (span.end - span.start)
            at = span.end
        pieces.append(self.plain[at:])
        ends = [old_end for _, old_end, _, _ in done]

        def moved(p: int) -> int:
            k = bisect_right(ends, p)  # replaced spans ending at or before p
            if k < len(done) and done[k][0] < p:  # inside the next one
                old_start, _, new_start, new_end = done[k]
                return min(new_start + p - old_start, new_end)
            return p + (done[k - 1][3] - done[k - 1][1] if k else 0)

        spans = tuple(
            replace(changes[i][1], start=moved(s.start), end=moved(s.end))
            if i in accepted
            else replace(s, start=moved(s.start), end=moved(s.end))
            for i, s in enumerate(self.spans)
        )
        return Text("".join(pieces), spans)

    def segments(self) -> Iterator[tuple[str, tuple[Span, ...]]]:
        """Runs of text with the spans active over each, in SPAN_ORDER.

        A sweep over span boundaries: O(n log n) plus the size of what it yields."""
        size = len(self.plain)
        starting: dict[int, list[int]] = {}
        ending: dict[int, list[int]] = {}
        cuts = {0, size}
        for i, span in enumerate(self.spans):
            cuts.update((span.start, span.end))
            if max(span.start, 0) < span.end:
                starting.setdefault(max(span.start, 0), []).append(i)
                ending.setdefault(span.end, []).append(i)
        points = sorted(c for c in cuts if 0 <= c <= size)
        active: dict[int, tuple[int, int, int]] = {}  # span index -> its sort key
        for a, b in pairwise(points):
            for i in ending.get(a, ()):
                active.pop(i, None)
            for i in starting.get(a, ()):
                span = self.spans[i]
                active[i] = (_ORDER[span.kind], span.start, -span.end)
            ordered = sorted(active, key=active.__getitem__)
            yield self.plain[a:b], tuple(self.spans[i] for i in ordered)


@dataclass
class TextBuilder:
    """Appends text and spans while a parser walks native markup."""

    parts: list[str] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    length: int = 0

    def append(self, s: str) -> None:
        self.parts.append(s)
        self.length += len(s)

    def add_span(
        self,
        kind: SpanKind,
        start: int,
        *,
        url: str = "",
        network: str = "",
        user: str = "",
        broadcast: bool = False,
    ) -> None:
        """Close a span that began at `start` and ends here; empty spans vanish."""
        if self.length > start:
            self.spans.append(
                Span(kind, start, self.length, url=url, network=network, user=user, broadcast=broadcast)
            )

    def extend(self, text: Text) -> None:
        base = self.length
        self.append(text.plain)
        self.spans.extend(s.shifted(base) for s in text.spans)

    def build(self) -> Text:
        spans = sorted(self.spans, key=lambda s: (s.start, -s.end, _ORDER[s.kind]))
        return Text("".join(self.parts), tuple(spans))
