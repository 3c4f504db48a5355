"""Chat text made safe to print on a reviewer's terminal.

Archived text is whatever someone typed on a network: an escape sequence in it
could retitle the window, hide the lines around it, or (on some terminals) type
commands; a bidi override can make text read differently from what it holds.
Every control character (C0, DEL, C1), line and paragraph separator and bidi
control is therefore shown as its escape (`\\x1b`, `\\u202e`), so the reviewer
sees that it is there and nothing acts on it. JSON output needs none of this:
json.dumps escapes them already.
"""

from __future__ import annotations

import re

# Bidi embeddings, overrides and isolates, the marks, and the Arabic letter mark.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
_UNSAFE_KEEPING_NEWLINES = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, keep_newlines: bool = False) -> str:
    """`text` with every character that could act on a terminal shown as its escape."""
    return (_UNSAFE_KEEPING_NEWLINES if keep_newlines else _UNSAFE).sub(_escape, text)
