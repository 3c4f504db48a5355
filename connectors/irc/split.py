"""Making text safe for the IRC wire and cutting it into lines that fit.

IRC lines are limited in bytes, not characters: 512 including CRLF, and a
server relays our line with our `:nick!user@host` prefix added, silently
cutting what no longer fits. So pieces are measured in UTF-8 bytes against a
budget the caller computes from the prefix the server will add.
"""

from __future__ import annotations

import unicodedata

from connectors.irc.format import CODE_ORDER, CODES, RESET, TOGGLES, text_safe

# CR and LF would end the command and start another one; NUL ends strings in
# many servers. The wire must never see them inside a line, nor a lone
# surrogate, which UTF-8 cannot encode.
_WIRE = str.maketrans({"\r": " ", "\n": " ", "\0": None, **{chr(c): "\ufffd" for c in range(0xD800, 0xE000)}})
# A cut next to one of these (joiner, variation selectors) would tear one visible glyph apart.
_JOINERS = frozenset("\u200d\ufe0e\ufe0f")
# Pieces never shrink below this many bytes to make room for a long sender name.
MIN_TEXT_BYTES = 64


def wire_safe(line: str) -> str:
    return line.translate(_WIRE)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def split_line(line: str, budget: int) -> list[str]:
    """Cut one rendered IRC line into pieces of at most `budget` UTF-8 bytes.

    A cut falls on the last space in the second half of the piece when there
    is one (the space is dropped, as in word wrapping), else between two
    characters. Formatting still open at a cut is reopened on the next piece,
    because every IRC line starts unformatted.
    """
    if budget < 4:
        raise ValueError(f"a budget of {budget} bytes cannot hold every character")
    pieces: list[str] = []
    carry = ""
    done = 0  # characters of `line` already in pieces
    while True:
        if utf8_len(carry) + 4 > budget:  # pathological budget: formatting yields to text
            carry = ""
        # No piece holds more than `budget` characters, so look no further: a long
        # line costs the same per piece, not the length of what is left each time.
        window = line[done : done + budget + 1]
        text = carry + window
        if done + len(window) == len(line) and utf8_len(text) <= budget:
            pieces.append(text)
            return pieces
        cut = _fit(text, budget, len(carry))
        space = text.rfind(" ", len(carry) + 1, cut + 1)
        if space > 0 and utf8_len(text[:space]) >= budget // 2:
            piece, done = text[:space], done + space + 1 - len(carry)
        else:
            piece, done = text[:cut], done + cut - len(carry)
        pieces.append(piece)
        carry = _reopen(piece)


def _fit(text: str, budget: int, floor: int) -> int:
    """The largest index whose prefix fits in `budget` bytes, not inside a glyph if avoidable."""
    used = 0
    cut = len(text)
    for index, ch in enumerate(text):
        used += utf8_len(ch)
        if used > budget:
            cut = index
            break
    end = cut
    while end > floor + 1 and (
        unicodedata.combining(text[end]) or text[end] in _JOINERS or text[end - 1] in _JOINERS
    ):
        end -= 1
    return end if end > floor + 1 else cut


def _reopen(piece: str) -> str:
    """The codes that restore the formatting active at the end of `piece`."""
    active: set[str] = set()
    for ch in piece:
        if ch in TOGGLES:
            active ^= {ch}
        elif ch == RESET:
            active.clear()
    return "".join(CODES[kind] for kind in CODE_ORDER if CODES[kind] in active)


def frame(template: str, name: str, body: str, budget: int) -> list[str]:
    """`body` split to fit `budget` once `template` puts `name` around each piece.

    Every piece gets the template, so continuation lines still say who spoke.
    A name too long to leave MIN_TEXT_BYTES for text is shortened.
    """
    name = text_safe(name)
    overhead = utf8_len(template.format(name="", text=""))
    room_for_name = budget - overhead - MIN_TEXT_BYTES
    if utf8_len(name) > room_for_name:
        name = _truncate(name, max(room_for_name - utf8_len("…"), 0)) + "…"
    text_budget = budget - utf8_len(template.format(name=name, text=""))
    return [template.format(name=name, text=piece) for piece in split_line(body, text_budget)]


def _truncate(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
