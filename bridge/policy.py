"""Pure policy decisions: may this person's event be relayed, and where.

No I/O here: everything needed arrives as arguments, so every rule can be
tested exhaustively and the router stays a thin pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.model import Event, Identity, Portal


@dataclass(frozen=True)
class Decision:
    action: Literal["relay", "block"]
    rule: str | None = None
    reason: str = ""
    flags: tuple[str, ...] = ()

    @property
    def blocked(self) -> bool:
        return self.action == "block"


RELAY = Decision("relay")


def decide(identity: Identity | None, unmapped: str, portal: Portal, event: Event) -> Decision:
    """The decision for one inbound event, before it is archived."""
    if identity is None:
        if unmapped == "relay":
            return Decision("relay", flags=("unmapped",))
        return Decision(
            "block",
            rule="unmapped",
            reason=f"{event.sender.native_id} on {event.network} is not in the corporate directory",
        )
    if not identity.enabled:
        return Decision("block", rule="disabled", reason=f"{identity.name} is disabled in the directory")
    return RELAY
