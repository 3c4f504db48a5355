"""The gateway: from an inbound event to an archived record and its deliveries.

network ─► connector ─► Router.receive ─► directory, policy ─► archive + outbox
(one transaction) ─► return to the connector (which then acks its source) ─►
delivery workers. Sender names, mention translation and fallbacks for what a
destination cannot show are done here, once, for every network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial

from sqlalchemy.exc import InterfaceError, OperationalError

from bridge.archive import AsyncArchive
from bridge.archive.quotes import Quoted, quoted
from bridge.archive.reactions import standing_reaction
from bridge.archive.store import OutboxDraft, RecordDraft
from bridge.codec import attachment_to_json, text_to_json
from bridge.connector import Capabilities, SinkUnavailable
from bridge.directory import Directory
from bridge.model import Attachment, Delete, Edit, Event, Identity, Message, Portal, Reaction, Receipt
from bridge.names import GHOST_TEMPLATE, RELAY_TEMPLATE, sender_for
from bridge.policy import Decision, PolicySet, Refusal, Target, decide
from bridge.text import Span, Text, TextBuilder

log = logging.getLogger("switchboard.router")
# What an unreachable, locked or full database raises: the event can be offered again.
ARCHIVE_DOWN = (OperationalError, InterfaceError, OSError)
QUOTE_CHARS = 40  # how much of the answered message a quoted reply repeats

Notify = Callable[[str, str, str, str], Awaitable[None]]  # network, room, user, text
Enqueue = Callable[[tuple], None]


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    label: str
    capabilities: Capabilities
    display_template: str | None = None

    @property
    def template(self) -> str:
        if self.display_template:
            return self.display_template
        return GHOST_TEMPLATE if self.capabilities.per_sender_display else RELAY_TEMPLATE


class PortalIndex:
    """Bridged rooms by (network, native room id)."""

    def __init__(self) -> None:
        self._by_room: dict[tuple[str, str], Portal] = {}
        self.portals: dict[str, Portal] = {}

    def add(self, portal: Portal) -> None:
        """Add a portal, or replace it when one more of its rooms was joined."""
        self.portals[portal.id] = portal
        for network, room in portal.rooms:
            self._by_room[(network, room)] = portal

    def find(self, network: str, room: str) -> Portal | None:
        return self._by_room.get((network, room))


class Router:
    def __init__(
        self,
        archive: AsyncArchive,
        directory: Directory,
        portals: PortalIndex,
        networks: Mapping[str, NetworkInfo],
        policy: PolicySet,
        enqueue: Enqueue,
        notify: Notify,
    ) -> None:
        self.archive = archive
        self.directory = directory
        self.portals = portals
        self.networks = networks
        self.policy = policy
        self.enqueue = enqueue
        self.notify = notify
        self.ready = asyncio.Event()
        self._notices: set[asyncio.Task[None]] = set()

    async def receive(self, event: Event) -> Receipt:
        """Archive `event` and queue its deliveries; return only after the commit.

        Raises SinkUnavailable when the archive cannot be reached: nothing was kept.
        """
        try:
            return await self._receive(event)
        except ARCHIVE_DOWN as exc:
            raise SinkUnavailable(f"the archive is unavailable: {exc}") from exc

    async def _receive(self, event: Event) -> Receipt:
        await self.ready.wait()
        portal = self.portals.find(event.network, event.room)
        if portal is None:
            return Receipt("ignored", reason="room is not bridged")
        identity = await self.directory.lookup(event.network, event.sender.native_id)
        destinations = tuple(n for n in portal.networks if n != event.network and n in self.networks)
        target = await self._target(event)
        decision = decide(self.policy, identity, portal, event, destinations, target)
        removes = await self._removed_reaction(event)
        draft = self._record(event, portal, identity, decision, removes)
        quote = await self._quote(event, destinations)
        relayed = not decision.blocked and not (isinstance(event, Message) and not event.relay)
        deliveries = self._deliveries(event, portal, identity, decision, quote, removes) if relayed else []
        appended = await self.archive.write(
            partial(self.archive.store.append_in, draft=draft, deliveries=deliveries)
        )
        if appended is None:
            return Receipt("duplicate")
        if decision.blocked or decision.withheld or decision.files_withheld:
            self._tell_sender(event, decision)
        if decision.blocked:
            return Receipt("blocked", appended.seq, decision.reason)
        self.enqueue(appended.outbox)
        return Receipt("archived", appended.seq)

    def _record(
        self, event: Event, portal: Portal, identity: Identity | None, decision: Decision, removes: str | None
    ) -> RecordDraft:
        kind = {Message: "message", Edit: "edit", Delete: "delete", Reaction: "reaction"}[type(event)]
        draft = RecordDraft(
            kind="policy_block" if decision.blocked else kind,
            occurred_at=event.occurred_at,
            network=event.network,
            room=event.room,
            native_id=event.native_id,
            portal=portal.id,
            sender=event.sender.native_id,
            sender_display=event.sender.display,
            identity=identity,
            flags=[*event.flags, *decision.flags],
            rule=decision.rule,
            reason=decision.reason or None,
        )
        if decision.blocked:
            draft.attrs["event_kind"] = kind
        else:
            _record_withheld(draft, decision)
        if isinstance(event, Message | Edit):
            content: dict = {"text": text_to_json(event.text)}
            if isinstance(event, Message):
                content["message_kind"] = event.kind
                if event.attachments:
                    content["attachments"] = [_archived(a) for a in event.attachments]
                    draft.files = tuple(a.data for a in event.attachments if a.data is not None)
                if event.reply_to:
                    draft.attrs["reply_to"] = event.reply_to
                if event.thread_id:
                    draft.attrs["thread_id"] = event.thread_id
                if event.native is not None:
                    content["native"] = dict(event.native)
            draft.content = content
            draft.plain = event.text.plain
        if isinstance(event, Reaction):
            # The key is its text, so a search for 👍 finds who reacted so.
            draft.content = {"text": text_to_json(Text.of(event.key))}
            draft.plain = event.key
            if event.removed:
                draft.attrs["removed"] = True
            if removes:
                draft.attrs["removes"] = removes
        if isinstance(event, Edit | Delete | Reaction):
            draft.attrs["target_native_id"] = event.target_native_id
        return draft

    async def _target(self, event: Event) -> Target | None:
        """Who sent the archived message an edit or delete names (None: not archived)."""
        if not isinstance(event, Edit | Delete):
            return None
        original = await self._original(event, event.target_native_id)
        return None if original is None else Target(original.network, original.sender, original.name)

    async def _removed_reaction(self, event: Event) -> str | None:
        """For a reaction taken back, the native id of the reaction it takes back (if archived)."""
        if not isinstance(event, Reaction) or not event.removed:
            return None
        return await self.archive.call(
            standing_reaction,
            self.archive.store.engine,
            event.network,
            event.room,
            event.sender.native_id,
            event.target_native_id,
            event.key,
        )

    async def _quote(self, event: Event, destinations: tuple[str, ...]) -> Text | None:
        """`↪ Name: first words… | ` for destinations that cannot show replies or threads; for a
        reaction, the line `reacted 👍 to "first words…"` for those that cannot show reactions."""
        if isinstance(event, Reaction):
            if event.removed or all(self.networks[d].capabilities.reactions for d in destinations):
                return None
            original = await self._original(event, event.target_native_id)
            target = f'"{original.text}"' if original and original.text else "a message"
            # A Matrix key may be any text, of any length; the archive keeps it whole.
            key = event.key if len(event.key) <= QUOTE_CHARS else event.key[:QUOTE_CHARS] + "…"
            return Text.of(f"reacted {key} to {target}")
        answered = isinstance(event, Message) and (event.reply_to or event.thread_id)
        if not answered or all(self.networks[d].capabilities.threads for d in destinations):
            return None
        original = await self._original(event, answered)
        if original is None:
            return None
        return Text.of(f"↪ {original.name}: {original.text} | ")

    async def _original(self, event: Event, native_id: str) -> Quoted | None:
        """The archived message `native_id` on the event's own network, its text cut to a quote."""
        original = await self.archive.call(
            quoted, self.archive.store.engine, event.network, event.room, native_id
        )
        if original is None:
            return None
        words = original.text.replace("\n", " ").strip()
        if len(words) > QUOTE_CHARS:
            words = words[:QUOTE_CHARS].rsplit(" ", 1)[0] + "…"
        return replace(original, text=words)

    def _deliveries(
        self,
        event: Event,
        portal: Portal,
        identity: Identity | None,
        decision: Decision,
        quote: Text | None,
        removes: str | None,
    ) -> list[OutboxDraft]:
        source = self.networks[event.network]
        out = []
        for network, room in portal.rooms:
            if network == event.network or network not in self.networks or network in decision.withheld:
                continue
            dest = self.networks[network]
            if isinstance(event, Delete) and not dest.capabilities.deletes:
                continue
            if isinstance(event, Reaction) and event.removed and not (removes and dest.capabilities.deletes):
                continue
            sender = sender_for(event.sender, identity, source.label, dest.template)
            payload: dict = {"sender": sender.__dict__, "room": room}
            if isinstance(event, Message):
                text = self._mentions_for(event.text, dest)
                if quote is not None and not dest.capabilities.threads:
                    text = _prefixed(quote, text)
                files = () if network in decision.files_withheld else event.attachments
                payload |= {
                    "kind": "message",
                    "message_kind": event.kind,
                    "text": text_to_json(text),
                    "attachments": [attachment_to_json(a) for a in files],
                    "reply_to": event.reply_to,
                    "thread_id": event.thread_id,
                }
            elif isinstance(event, Reaction):
                payload |= _reaction_payload(event, dest.capabilities, quote, removes)
            elif isinstance(event, Edit):
                payload |= {
                    "kind": "edit",
                    "text": text_to_json(self._mentions_for(event.text, dest)),
                    "target": event.target_native_id,
                }
            else:
                payload |= {"kind": "delete", "text": text_to_json(Text()), "target": event.target_native_id}
            payload["source"] = [event.network, event.room]
            out.append(OutboxDraft(network, room, payload))
        return out

    def _mentions_for(self, text: Text, dest: NetworkInfo) -> Text:
        """Point each mention at the mentioned person's handle on `dest`, where they have one."""
        changes: dict[int, tuple[str, Span]] = {}
        for i, span in enumerate(text.spans):
            if span.kind != "mention":
                continue
            person = self.directory.resolve(span.network, span.user)
            handle = person.handle(dest.name) if person else None
            if span.network == dest.name:
                handle = span.user
            if handle is None:
                continue
            if dest.capabilities.per_sender_display:
                visible = person.name if person else text.plain[span.start : span.end]
            else:
                visible = handle  # relay networks highlight on the nick itself
            changes[i] = (visible, Span("mention", span.start, span.end, network=dest.name, user=handle))
        return text.replace_spans(changes)  # at once: one at a time costs mentions × spans

    def _tell_sender(self, event: Event, decision: Decision) -> None:
        if decision.blocked:
            message = f"Your message was not relayed: {decision.reason}."
        else:
            message = " ".join(
                f"Your {what} not relayed to {_refusals(refused)}."
                for what, refused in (
                    ("message was", decision.withheld),
                    ("files were", decision.files_withheld),
                )
                if refused
            )
        task = asyncio.create_task(self._notify(event, message))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _notify(self, event: Event, message: str) -> None:
        try:
            await self.notify(event.network, event.room, event.sender.native_id, message)
        except Exception as exc:  # a notice is a courtesy; never let it break receiving
            log.warning("could not tell %s on %s why: %s", event.sender.native_id, event.network, exc)


def _record_withheld(draft: RecordDraft, decision: Decision) -> None:
    """Which destinations did not get the message, or its files, and why (first rule named)."""
    notes = []
    for key, what, refused in (
        ("withheld", "withheld from", decision.withheld),
        ("files_withheld", "files withheld from", decision.files_withheld),
    ):
        if not refused:
            continue
        draft.attrs[key] = {net: r.rule for net, r in refused.items()}
        first = next(iter(refused.values()))
        draft.rule = draft.rule or first.rule
        notes.append(f"{what} {', '.join(refused)}: {first.reason}")
    if notes:
        draft.reason = "; ".join(notes)


def _refusals(refused: Mapping[str, Refusal]) -> str:
    return "; ".join(f"{net} ({r.reason})" for net, r in refused.items())


def _archived(attachment: Attachment) -> dict:
    """An attachment as its record's content lists it; `stored` when the archive keeps its bytes."""
    described = attachment_to_json(attachment)
    return described if attachment.data is None else described | {"stored": True}


def _reaction_payload(
    event: Reaction, capabilities: Capabilities, line: Text | None, removes: str | None
) -> dict:
    """A reaction where `capabilities` show one, else its short line; a removal deletes what the
    reaction became there (either one)."""
    if event.removed:
        return {"kind": "delete", "text": text_to_json(Text()), "target": removes}
    if capabilities.reactions:
        return {
            "kind": "reaction",
            "text": text_to_json(Text.of(event.key)),
            "target": event.target_native_id,
        }
    assert line is not None  # made for every destination without reactions
    return {"kind": "message", "message_kind": "emote", "text": text_to_json(line), "attachments": []}


def _prefixed(prefix: Text, text: Text) -> Text:
    builder = TextBuilder()
    builder.extend(prefix)
    builder.extend(text)
    return builder.build()
