"""Canonical rich text: plain text plus typed spans.

Each network converts its own markup to and from this form, so no converter
ever needs to know another network's markup. Offsets are Python string
indices into `plain`. Spans may nest; parsers of flat markup (IRC control
codes) may also produce overlapping spans, and renderers must cope.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Literal

SpanKind = Literal["bold", "italic", "strike", "underline", "code", "pre", "link", "mention"]

# Users of mention spans that address a whole room rather than one person. They mean
# the same on every network, so each renders them in its own way whoever wrote them:
# `!channel` everyone in the room, `!here` those of them active now, `!everyone`
# everyone on the network (Slack's whole workspace).
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


@dataclass(frozen=True)
class Span:
    kind: SpanKind
    start: int
    end: int
    url: str = ""  # link target
    network: str = ""  # mention: the network the mentioned user belongs to
    user: str = ""  # mention: that user's native id

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
        out, start = [], 0
        while True:
            nl = self.plain.find("\n", start)
            if nl < 0:
                out.append(self.slice(start, len(self.plain)))
                return out
            out.append(self.slice(start, nl))
            start = nl + 1

    def mentions(self) -> list[Span]:
        return [s for s in self.spans if s.kind == "mention"]

    def with_spans(self, spans: Iterable[Span]) -> Text:
        """The same text with more spans, kept in the order a builder leaves them."""
        builder = TextBuilder()
        builder.extend(self)
        builder.spans.extend(spans)
        return builder.build()

    def replace_span_text(self, span: Span, new: str) -> Text:
        """Replace the text covered by one span, keeping every span consistent."""
        delta = len(new) - (span.end - span.start)
        plain = self.plain[: span.start] + new + self.plain[span.end :]
        spans = []
        for other in self.spans:
            if other == span:
                spans.append(replace(other, end=other.start + len(new)))
            elif other.start >= span.end:
                spans.append(other.shifted(delta))
            elif other.end <= span.start:
                spans.append(other)
            else:  # encloses the replaced span
                spans.append(replace(other, end=other.end + delta))
        return Text(plain, tuple(spans))

    def segments(self) -> Iterator[tuple[str, tuple[Span, ...]]]:
        """Runs of text with the spans active over each, in SPAN_ORDER."""
        cuts = {0, len(self.plain)}
        for span in self.spans:
            cuts.add(span.start)
            cuts.add(span.end)
        points = sorted(c for c in cuts if 0 <= c <= len(self.plain))
        for a, b in pairwise(points):
            active = [s for s in self.spans if s.start <= a and s.end >= b]
            active.sort(key=lambda s: (SPAN_ORDER.index(s.kind), s.start, -s.end))
            yield self.plain[a:b], tuple(active)


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
        self, kind: SpanKind, start: int, *, url: str = "", network: str = "", user: str = ""
    ) -> None:
        """Close a span that began at `start` and ends here; empty spans vanish."""
        if self.length > start:
            self.spans.append(Span(kind, start, self.length, url=url, network=network, user=user))

    def extend(self, text: Text) -> None:
        base = self.length
        self.append(text.plain)
        self.spans.extend(s.shifted(base) for s in text.spans)

    def build(self) -> Text:
        spans = sorted(self.spans, key=lambda s: (s.start, -s.end, SPAN_ORDER.index(s.kind)))
        return Text("".join(self.parts), tuple(spans))
