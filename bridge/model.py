"""Normalized events and the people and rooms they belong to.

Every connector turns its network's native events into these types, and the
core never sees anything else. Native ids stay strings, exactly as the network
gave them, so they can be mapped back later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from bridge.text import Text

MessageKind = Literal["text", "emote", "notice"]


@dataclass(frozen=True)
class RemoteUser:
    """A sender as its own network knows it."""

    network: str
    native_id: str
    display: str = ""


@dataclass(frozen=True)
class Identity:
    """A person from the corporate directory."""

    employee_id: str
    name: str
    department: str = ""
    groups: frozenset[str] = frozenset()
    enabled: bool = True
    handles: tuple[tuple[str, str], ...] = ()

    def handle(self, network: str) -> str | None:
        for net, native_id in self.handles:
            if net == network:
                return native_id
        return None


@dataclass(frozen=True)
class Attachment:
    name: str
    mimetype: str
    size: int
    sha256: str
    url: str = ""
    data: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Portal:
    """A bridged room: one native room per network."""

    id: str
    rooms: tuple[tuple[str, str], ...]

    def room(self, network: str) -> str | None:
        for net, room in self.rooms:
            if net == network:
                return room
        return None

    @property
    def networks(self) -> tuple[str, ...]:
        return tuple(net for net, _ in self.rooms)


@dataclass(frozen=True)
class Message:
    network: str
    room: str
    native_id: str
    sender: RemoteUser
    text: Text
    occurred_at: datetime
    kind: MessageKind = "text"
    reply_to: str | None = None
    thread_id: str | None = None
    attachments: tuple[Attachment, ...] = ()
    # What the connector noticed while capturing (e.g. `format_fallback`, `unverified_identity`,
    # `caught_up`); archived with the record's flags, beside the policy rules that flagged it.
    flags: tuple[str, ...] = ()
    # The network's own content, archived as sent, when `text` shows only part of it (a
    # location, a poll, a message type the connector does not know): nothing a person sent
    # is lost to the bridge's reading of it.
    native: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    relay: bool = True  # False: archived only (a poll vote), relayed nowhere


@dataclass(frozen=True)
class Edit:
    network: str
    room: str
    native_id: str
    sender: RemoteUser
    target_native_id: str
    text: Text
    occurred_at: datetime
    # What the connector noticed while capturing (e.g. `format_fallback`, `unverified_identity`,
    # `caught_up`); archived with the record's flags, beside the policy rules that flagged it.
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delete:
    network: str
    room: str
    native_id: str
    sender: RemoteUser
    target_native_id: str
    occurred_at: datetime
    # What the connector noticed while capturing (e.g. `format_fallback`, `unverified_identity`,
    # `caught_up`); archived with the record's flags, beside the policy rules that flagged it.
    flags: tuple[str, ...] = ()
    # The source network lets the sender delete others' messages here (Matrix: their power
    # level reaches the room's `redact`; Slack reports only deletions it allowed). Without
    # it, the router relays a delete only from the deleted message's own sender.
    moderator: bool = False


@dataclass(frozen=True)
class Reaction:
    """A person reacting to a message with an emoji, or taking that reaction back.

    `key` is the Unicode emoji where the network's shortcode is known (Slack's `thumbsup`
    becomes 👍), else the network's own form (`:party-parrot:`, or any text Matrix allows).
    """

    network: str
    room: str
    native_id: str
    sender: RemoteUser
    target_native_id: str
    key: str
    occurred_at: datetime
    removed: bool = False
    flags: tuple[str, ...] = ()


Event = Message | Edit | Delete | Reaction


@dataclass(frozen=True)
class Sender:
    """Who an outbound event speaks for, as the destination should show them."""

    network: str
    native_id: str
    display_name: str
    name: str
    network_label: str
    employee_id: str | None = None
    avatar_url: str = ""


@dataclass(frozen=True)
class Outbound:
    """One delivery of an archived event to one destination room.

    `key` is stable across retries and restarts, so networks with idempotent
    sends (Matrix transaction ids) never post twice.
    """

    key: str
    seq: int
    room: str
    sender: Sender
    kind: Literal["message", "edit", "delete", "reaction"]
    text: Text  # for a reaction: its key (the emoji)
    message_kind: MessageKind = "text"
    target_native_id: str | None = None
    reply_to_native_id: str | None = None
    thread_native_id: str | None = None  # the thread root, in the destination's ids
    attachments: tuple[Attachment, ...] = ()
    # Set when this key may have been sent already (a previous run died between the send and
    # recording it, or a send failed in an unknown way): no earlier than this. A network
    # without idempotent sends looks for its earlier post from then on instead of posting again.
    maybe_sent_since: datetime | None = None


@dataclass(frozen=True)
class Receipt:
    """What the core did with an inbound event; returned after the commit."""

    status: Literal["archived", "duplicate", "ignored", "blocked"]
    seq: int | None = None
    reason: str = ""
