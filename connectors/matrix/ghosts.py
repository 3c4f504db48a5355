"""Matrix user ids of the bridge's ghosts: one per remote user.

A ghost id is `@{prefix}{network}_{native id}:{server_name}`. Matrix
localparts allow only `a-z 0-9 . _ = - /`, so both parts are escaped
reversibly: the id of a mentioned ghost must decode back to the exact remote
user, and the escaping must be a bijection so two remote users never share a
ghost.
"""

from __future__ import annotations

from dataclasses import dataclass

_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-/")
_HEX = frozenset("0123456789abcdef")


def escape(native_id: str) -> str:
    """Escape any string into the localpart alphabet: `A`→`_a`, `_`→`__`, other bytes → `=xx`."""
    out: list[str] = []
    for ch in native_id:
        if ch in _LITERAL:
            out.append(ch)
        elif "A" <= ch <= "Z":
            out.append("_" + ch.lower())
        elif ch == "_":
            out.append("__")
        else:
            out.extend(f"={b:02x}" for b in ch.encode("utf-8"))
    return "".join(out)


def unescape(escaped: str) -> str:
    """Invert `escape`; ValueError for anything `escape` could not have produced."""
    raw = bytearray()
    i = 0
    while i < len(escaped):
        ch = escaped[i]
        if ch in _LITERAL:
            raw.append(ord(ch))
            i += 1
        elif ch == "_" and i + 1 < len(escaped) and (escaped[i + 1] == "_" or "a" <= escaped[i + 1] <= "z"):
            raw.append(ord("_" if escaped[i + 1] == "_" else escaped[i + 1].upper()))
            i += 2
        elif ch == "=" and set(escaped[i + 1 : i + 3]) <= _HEX and len(escaped[i + 1 : i + 3]) == 2:
            raw.append(int(escaped[i + 1 : i + 3], 16))
            i += 3
        else:
            raise ValueError(f"not an escaped id: {escaped!r}")
    text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    # Non-canonical spellings (`=61` for `a`) would let two ghosts map to one user.
    if escape(text) != escaped:
        raise ValueError(f"not a canonical escaped id: {escaped!r}")
    return text


@dataclass(frozen=True)
class Ghosts:
    """The ghost namespace of one bridge on one homeserver."""

    prefix: str
    server_name: str

    def mxid(self, network: str, native_id: str) -> str:
        return f"@{self.prefix}{_network_part(network)}_{escape(native_id)}:{self.server_name}"

    def owns(self, mxid: str) -> bool:
        """Whether `mxid` lies in our exclusive namespace (ours, whether or not it decodes)."""
        return mxid.startswith("@" + self.prefix) and mxid.endswith(":" + self.server_name)

    def parse(self, mxid: str) -> tuple[str, str] | None:
        """(network, native id) of a ghost, or None for anyone else."""
        if not self.owns(mxid):
            return None
        local = mxid[1 + len(self.prefix) : -len(self.server_name) - 1]
        part, sep, escaped = local.partition("_")
        if not sep:
            return None
        try:
            network = unescape(part.replace("=5f", "__"))
            if _network_part(network) != part:
                return None
            return network, unescape(escaped)
        except ValueError:
            return None

    def user_regex(self) -> str:
        """The exclusive user namespace for the appservice registration."""
        return "@" + _regex_escape(self.prefix) + ".*:" + _regex_escape(self.server_name)


def _network_part(network: str) -> str:
    # The network part contains no `_`, so the first `_` of a localpart always
    # separates it from the escaped native id (whose own escapes start with `_`).
    part = "".join("=5f" if ch == "_" else escape(ch) for ch in network)
    if "_" in part:
        raise ValueError(f"network name {network!r} has upper-case letters; it cannot be part of a ghost id")
    return part


def _regex_escape(s: str) -> str:
    # re.escape would also escape `-` and `/`; Synapse's regex engine accepts either,
    # but a minimal escape keeps the registration readable.
    return "".join("\\" + ch if ch in ".^$*+?{}[]\\|()" else ch for ch in s)
