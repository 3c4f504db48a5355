"""Matrix polls (MSC3381, stable `m.poll.*` and unstable `org.matrix.msc3381.poll.*`) as text.

Element sends the unstable names to this day; both forms are read. A poll's whole
content is archived beside this text, so what the text leaves out is still kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

UNSTABLE = "org.matrix.msc3381.poll."
POLL_TYPES = {
    f"{prefix}{part}": part for prefix in ("m.poll.", UNSTABLE) for part in ("start", "response", "end")
}
_TEXT = "org.matrix.msc1767.text"


def poll_part(event_type: object) -> str | None:
    """`start`, `response` or `end` for a poll event type, else None."""
    return POLL_TYPES.get(event_type) if isinstance(event_type, str) else None


def start_text(content: Mapping[str, Any]) -> str:
    """`📊 Poll: question` and one numbered line per answer."""
    poll = _mapping(content.get("m.poll") or content.get(f"{UNSTABLE}start"))
    question = text_of(_mapping(poll.get("question"))) or text_of(content)
    lines = [f"📊 Poll: {question}".rstrip()]
    answers = poll.get("answers")
    for n, answer in enumerate(answers if isinstance(answers, list) else (), 1):
        lines.append(f"{n}. {text_of(_mapping(answer))}")
    return "\n".join(lines)


def response_text(content: Mapping[str, Any]) -> str:
    """`🗳 voted: a, b` with the answer ids chosen (the start names them)."""
    chosen = content.get("m.selections")
    if chosen is None:
        chosen = _mapping(content.get(f"{UNSTABLE}response")).get("answers")
    ids = [str(a) for a in chosen] if isinstance(chosen, list) else []
    return "🗳 voted: " + (", ".join(ids) if ids else "nothing (vote withdrawn)")


def end_text(content: Mapping[str, Any]) -> str:
    """`📊 Poll ended` with the sender's summary and the counts, when the event has them."""
    lines = ["📊 Poll ended"]
    summary = text_of(content)
    if summary:
        lines[0] += f": {summary}"
    results = _mapping(content.get("m.poll.results"))
    lines.extend(f"{answer}: {count}" for answer, count in results.items())
    return "\n".join(lines)


def text_of(obj: Mapping[str, Any]) -> str:
    """The text of an extensible-events object: `m.text` (stable), the MSC1767 string, or `body`."""
    stable = obj.get("m.text")
    if isinstance(stable, list):
        for item in stable:
            item = _mapping(item)
            body = item.get("body")
            if isinstance(body, str) and item.get("mimetype", "text/plain") == "text/plain":
                return body
    for key in (_TEXT, "body"):
        value = obj.get(key)
        if isinstance(value, str):
            return value
    return ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
