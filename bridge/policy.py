"""Pure policy decisions: may this person's event be relayed, and where.

No I/O here: everything needed arrives as arguments, so every rule can be
tested exhaustively and the router stays a thin pipeline. Checks run in a
fixed order and the first refusal names its rule:

1. the sender: unknown (`unmapped`), disabled (`disabled`);
2. an edit or delete: its target must be archived (`unknown_target`); an edit
   must come from the target's sender, a delete from its sender or from
   someone the source network lets delete others' messages (`not_author`);
3. the sender's own network: group access (`groups:<net>`), files (`files:<net>`);
4. each destination: group access, files and their size, data-loss rules.

A destination refused by step 4 is *withheld*; the event still goes to the
others. When every destination is refused the event is blocked. Files refused
(by step 3 or 4) do not refuse a message that has words: it goes without them,
and its files are withheld (`files_withheld`) from those destinations.

Data-loss rules read what a reader can reach, not only what is shown: the
text, every link target and attachment names, after NFKC and with format
characters (zero-width spaces, soft hyphens, bidi controls) removed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

from bridge.model import Delete, Edit, Event, Identity, Message, Portal, Reaction


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
        """Whether `text`, as `readable` gives it, holds what this rule looks for."""
        if self.detector is not None and self.detector(text):
            return True
        if self.pattern is not None and self.pattern.search(text):
            return True
        lowered = text.casefold()
        # Keywords are read in the form the text is: a full-width keyword still finds its word.
        return any(normalised(word).casefold() in lowered for word in self.keywords)

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
    files_withheld: Mapping[str, Refusal] = field(default_factory=dict)  # gets the words, not the files

    @property
    def blocked(self) -> bool:
        return self.action == "block"


RELAY = Decision("relay")


@dataclass(frozen=True)
class Target:
    """The archived message an edit or delete names: who sent it."""

    network: str
    sender: str  # native id on `network`
    name: str  # as a reason names them


def readable(event: Event) -> str:
    """Everything of `event` a reader can reach, in the form data-loss rules read it."""
    parts: list[str] = []
    if isinstance(event, Message | Edit):
        parts.append(event.text.plain)
        parts.extend(unquote(s.url) for s in event.text.spans if s.url)
    if isinstance(event, Message):
        parts.extend(a.name for a in event.attachments)
    if isinstance(event, Reaction):
        parts.append(event.key)  # a Matrix reaction key is free text
    return normalised("\n".join(parts))


def normalised(text: str) -> str:
    """NFKC (full-width digits become digits) without format characters (category Cf)."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) != "Cf")


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


def _authorship_refusal(identity: Identity | None, event: Event, target: Target | None) -> Refusal | None:
    if not isinstance(event, Edit | Delete):
        return None
    what = "edits" if isinstance(event, Edit) else "deletes"
    if target is None:
        return Refusal("unknown_target", f"the message it {what} is not in the archive")
    if (target.network, target.sender) == (event.network, event.sender.native_id):
        return None
    if isinstance(event, Delete) and event.moderator:
        return None
    who = identity.name if identity else event.sender.native_id
    if isinstance(event, Edit):
        return Refusal("not_author", f"{who} may not edit a message sent by {target.name}")
    return Refusal(
        "not_author",
        f"{who} may not delete a message sent by {target.name} (only its sender or a moderator may)",
    )


def decide(
    policy: PolicySet,
    identity: Identity | None,
    portal: Portal,
    event: Event,
    destinations: tuple[str, ...],
    target: Target | None = None,
) -> Decision:
    """The decision for one inbound event, before it is archived; `target` is the archived
    message an edit or delete names (None: the archive does not have it)."""
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

    # Words to send without the files: without them, a refused file refuses the whole message.
    has_words = isinstance(event, Message) and bool(event.text.plain.strip())
    source = policy.for_network(portal.id, event.network)
    source_files = _file_refusal(event, source, event.network, "from")
    refusal = _authorship_refusal(identity, event, target) or _group_refusal(identity, source, event.network)
    if refusal is None and source_files and not has_words:
        refusal = source_files
    if refusal:
        return Decision("block", rule=refusal.rule, reason=refusal.reason, flags=tuple(flags))

    text = readable(event)
    rules = policy.rules_for(portal.id)
    matched = [rule for rule in rules if text and rule.matches(text)]
    flags.extend(rule.name for rule in matched if rule.action == "flag")
    withheld: dict[str, Refusal] = {}
    files_withheld: dict[str, Refusal] = {}
    for network in destinations:
        dest = policy.for_network(portal.id, network)
        refusal = _group_refusal(identity, dest, network)
        file_refusal = None if refusal else source_files or _file_refusal(event, dest, network, "to")
        if file_refusal and not has_words:
            refusal = file_refusal
        if refusal is None:
            refusal = next(
                (
                    Refusal(rule.name, f"it matches the data-loss rule '{rule.name}'")
                    for rule in matched
                    if rule.action == "block" and rule.applies_to(network)
                ),
                None,
            )
        if refusal:
            withheld[network] = refusal
        elif file_refusal:
            files_withheld[network] = file_refusal
    if destinations and len(withheld) == len(destinations):
        first = withheld[destinations[0]]
        return Decision("block", rule=first.rule, reason=first.reason, flags=tuple(flags), withheld=withheld)
    return Decision("relay", flags=tuple(flags), withheld=withheld, files_withheld=files_withheld)
