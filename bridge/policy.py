"""Pure policy decisions: may this person's event be relayed, and where.

No I/O here: everything needed arrives as arguments, so every rule can be
tested exhaustively and the router stays a thin pipeline. Checks run in a
fixed order and the first refusal names its rule:

1. the sender: unknown (`unmapped`), disabled (`disabled`);
2. the sender's own network: group access (`groups:<net>`), files (`files:<net>`);
3. each destination: group access, files and their size, data-loss rules.

A destination refused by step 3 is *withheld*; the event still goes to the
others. When every destination is refused the event is blocked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from bridge.model import Edit, Event, Identity, Message, Portal


@dataclass(frozen=True)
class NetworkPolicy:
    """What one network (or one room on it) allows."""

    allow_groups: frozenset[str] | None = None  # None: everyone
    deny_groups: frozenset[str] = frozenset()
    files: Literal["allow", "block"] | None = None  # None: not set here (allowed unless set elsewhere)
    max_file_mb: float | None = None

    def merged(self, override: NetworkPolicy | None) -> NetworkPolicy:
        if override is None:
            return self
        return NetworkPolicy(
            allow_groups=override.allow_groups if override.allow_groups is not None else self.allow_groups,
            deny_groups=self.deny_groups | override.deny_groups,
            files=override.files if override.files is not None else self.files,
            max_file_mb=override.max_file_mb if override.max_file_mb is not None else self.max_file_mb,
        )


@dataclass(frozen=True)
class Rule:
    """A data-loss rule on text leaving for `networks` (None: every network)."""

    name: str
    action: Literal["block", "flag"]
    networks: frozenset[str] | None = None
    keywords: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    detector: Callable[[str], bool] | None = None

    def matches(self, text: str) -> bool:
        if self.detector is not None and self.detector(text):
            return True
        if self.pattern is not None and self.pattern.search(text):
            return True
        lowered = text.casefold()
        return any(word.casefold() in lowered for word in self.keywords)

    def applies_to(self, network: str) -> bool:
        return self.networks is None or network in self.networks


@dataclass(frozen=True)
class RoomPolicy:
    overrides: NetworkPolicy | None = None
    rules: frozenset[str] | None = None  # names of the rules that apply here; None: all


@dataclass(frozen=True)
class PolicySet:
    unmapped: Literal["deny", "relay"] = "deny"
    notice: str | None = None
    networks: Mapping[str, NetworkPolicy] = field(default_factory=dict)
    rooms: Mapping[str, RoomPolicy] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    def for_network(self, portal: str, network: str) -> NetworkPolicy:
        base = self.networks.get(network, NetworkPolicy())
        room = self.rooms.get(portal)
        return base.merged(room.overrides if room else None)

    def rules_for(self, portal: str) -> tuple[Rule, ...]:
        room = self.rooms.get(portal)
        if room is None or room.rules is None:
            return self.rules
        return tuple(r for r in self.rules if r.name in room.rules)


@dataclass(frozen=True)
class Refusal:
    rule: str
    reason: str


@dataclass(frozen=True)
class Decision:
    action: Literal["relay", "block"]
    rule: str | None = None
    reason: str = ""
    flags: tuple[str, ...] = ()
    withheld: Mapping[str, Refusal] = field(default_factory=dict)  # destination network -> why

    @property
    def blocked(self) -> bool:
        return self.action == "block"


RELAY = Decision("relay")


def _group_refusal(identity: Identity | None, policy: NetworkPolicy, network: str) -> Refusal | None:
    groups = identity.groups if identity else frozenset()
    who = identity.name if identity else "this sender"
    if policy.allow_groups is not None and not groups & policy.allow_groups:
        allowed = ", ".join(sorted(policy.allow_groups))
        return Refusal(f"groups:{network}", f"{who} is not in a group allowed on {network} ({allowed})")
    denied = groups & policy.deny_groups
    if denied:
        return Refusal(
            f"groups:{network}", f"{who} is in {', '.join(sorted(denied))}, not allowed on {network}"
        )
    return None


def _file_refusal(event: Event, policy: NetworkPolicy, network: str, direction: str) -> Refusal | None:
    if not isinstance(event, Message) or not event.attachments:
        return None
    if policy.files == "block":
        return Refusal(f"files:{network}", f"files may not be bridged {direction} {network} here")
    if policy.max_file_mb is not None:
        for att in event.attachments:
            if att.size > policy.max_file_mb * 1024 * 1024:
                return Refusal(
                    f"files:{network}",
                    f"{att.name} is larger than {policy.max_file_mb:g} MB allowed on {network}",
                )
    return None


def decide(
    policy: PolicySet, identity: Identity | None, portal: Portal, event: Event, destinations: tuple[str, ...]
) -> Decision:
    """The decision for one inbound event, before it is archived."""
    flags: list[str] = []
    if identity is None:
        if policy.unmapped == "deny":
            return Decision(
                "block",
                rule="unmapped",
                reason=f"{event.sender.native_id} on {event.network} is not in the corporate directory",
            )
        flags.append("unmapped")
    elif not identity.enabled:
        return Decision("block", rule="disabled", reason=f"{identity.name} is disabled in the directory")

    source = policy.for_network(portal.id, event.network)
    refusal = _group_refusal(identity, source, event.network) or _file_refusal(
        event, source, event.network, "from"
    )
    if refusal:
        return Decision("block", rule=refusal.rule, reason=refusal.reason, flags=tuple(flags))

    text = event.text.plain if isinstance(event, Message | Edit) else ""
    rules = policy.rules_for(portal.id)
    matched = [rule for rule in rules if text and rule.matches(text)]
    flags.extend(rule.name for rule in matched if rule.action == "flag")
    withheld: dict[str, Refusal] = {}
    for network in destinations:
        dest = policy.for_network(portal.id, network)
        refusal = _group_refusal(identity, dest, network) or _file_refusal(event, dest, network, "to")
        if refusal is None:
            for rule in matched:
                if rule.action == "block" and rule.applies_to(network):
                    refusal = Refusal(rule.name, f"it matches the data-loss rule '{rule.name}'")
                    break
        if refusal:
            withheld[network] = refusal
    if destinations and len(withheld) == len(destinations):
        first = withheld[destinations[0]]
        return Decision("block", rule=first.rule, reason=first.reason, flags=tuple(flags), withheld=withheld)
    return Decision("relay", flags=tuple(flags), withheld=withheld)
