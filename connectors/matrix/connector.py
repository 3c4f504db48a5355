"""The Matrix connector: an application service with one ghost per remote user."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from bridge.connector import Backoff, Capabilities, Connector, ConnectorContext, DeliveryError, Option, Sink
from bridge.model import Attachment, Delete, Event, Message, Outbound
from bridge.text import Span, Text
from connectors.matrix.appservice import AppserviceServer
from connectors.matrix.client import MatrixClient, MatrixError, q
from connectors.matrix.config import DEFAULT_GHOST_PREFIX, DEFAULT_MAX_FILE_MB, MatrixConfig
from connectors.matrix.ghosts import Ghosts
from connectors.matrix.inbound import MXC_URL, Inbound, MediaRef, media_ref
from connectors.matrix.outbound import (
    edit_content,
    file_content,
    message_content,
    reaction_content,
    text_content,
    txn_id,
)
from connectors.matrix.powers import RoomPowers, mentions_room, privileged_creators, without_room_mention

ROOMS_KEY = "rooms"
FETCH_ATTEMPTS = 3  # downloads of one file while its transaction waits
NUDGE_MAX_SECONDS = 10.0  # longest wait between pings while transactions fail


class MatrixConnector(Connector):
    """Receives pushed transactions; sends as ghosts `@{ghost_prefix}{network}_{id}:{server_name}`.

    Its options are the config's top-level `matrix:` section.
    """

    label: ClassVar[str] = "Matrix"
    capabilities: ClassVar[Capabilities] = Capabilities(
        edits=True, deletes=True, threads=True, files=True, per_sender_display=True, reactions=True
    )
    options: ClassVar[Mapping[str, Option]] = {
        "homeserver": Option(str, required=True, help="client-server API URL, e.g. http://127.0.0.1:8008"),
        "server_name": Option(
            str, required=True, help="the homeserver's name, the part after `:` in user ids"
        ),
        "appservice": Option(
            dict,
            required=True,
            help="id, listen (host:port the homeserver pushes to), as_token, hs_token, bot (localpart), "
            "aliases (optional regexes of room aliases the bridge may create when missing)",
        ),
        "ghost_prefix": Option(str, default=DEFAULT_GHOST_PREFIX, help="localpart prefix of ghost users"),
        "max_file_mb": Option(
            (int, float),
            default=DEFAULT_MAX_FILE_MB,
            help="largest file fetched from Matrix; larger ones are archived as name, type and size only",
        ),
        "allow_insecure": Option(
            bool, default=False, help="allow a plain http:// homeserver that is not on loopback"
        ),
    }

    def __init__(self, ctx: ConnectorContext) -> None:
        super().__init__(ctx)
        self.config = self.parse_options(ctx.options)
        self.ghosts = Ghosts(self.config.ghost_prefix, self.config.server_name)
        self.inbound = Inbound(ctx.name, self.ghosts, self.config.bot_mxid)
        self._sink: Sink | None = None
        self._client: MatrixClient | None = None
        self._server: AppserviceServer | None = None
        self._failing = False  # the last transaction failed; see _transaction_outcome
        self._nudger: asyncio.Task[None] | None = None
        self._rooms: set[str] = set()  # rooms join() was asked for; persisted, see start()
        self._awaited: set[str] = set()  # rooms join() was refused: an invite to them is accepted
        self._powers_by_room: dict[str, RoomPowers] = {}

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> MatrixConfig:
        return MatrixConfig.from_options(options)

    @classmethod
    def registration(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The appservice registration the homeserver loads (`app_service_config_files`)."""
        config = cls.parse_options(options)
        ghosts = Ghosts(config.ghost_prefix, config.server_name)
        return {
            "id": config.appservice_id,
            "url": config.url,
            "as_token": config.as_token,
            "hs_token": config.hs_token,
            "sender_localpart": config.bot,
            "namespaces": {
                "users": [{"exclusive": True, "regex": ghosts.user_regex()}],
                # Not exclusive: the rooms stay anyone's; we may only create them.
                "aliases": [{"exclusive": False, "regex": regex} for regex in config.alias_regexes],
                "rooms": [],
            },
            "rate_limited": False,
        }

    @property
    def client(self) -> MatrixClient:
        if self._client is None:
            raise RuntimeError("the Matrix connector is not started")
        return self._client

    async def start(self, sink: Sink) -> None:
        self._sink = sink
        # Rooms joined in earlier runs are known before the core joins them again:
        # the homeserver delivers queued transactions as soon as we listen.
        saved = await self.ctx.state.get(ROOMS_KEY)
        self._rooms = set(json.loads(saved)) if saved else set()
        self._client = MatrixClient(self.config, self.log)
        self._server = AppserviceServer(
            host=self.config.listen_host,
            port=self.config.listen_port,
            hs_token=self.config.hs_token,
            state=self.ctx.state,
            on_event=self._on_event,
            on_user_query=self._on_user_query,
            log=self.log,
            is_echo=lambda event: (
                event.get("type") == "m.room.message" and self.inbound.is_ours(str(event.get("sender", "")))
            ),
            on_outcome=self._transaction_outcome,
        )
        try:
            await self._server.start()
            await self.client.register(self.config.bot_mxid)
        except BaseException:
            await self._close()
            raise
        try:
            await self.client.ping()
        except MatrixError as exc:
            self.log.warning("appservice ping failed (%s); queued transactions may arrive late", exc)

    async def stop(self) -> None:
        await super().stop()
        self._failing = False
        if self._nudger is not None:
            self._nudger.cancel()
        await self._close()

    def _transaction_outcome(self, ok: bool) -> None:
        """After a failed transaction (the archive down, its disk full), keep asking the
        homeserver to retry until one goes through: by itself Synapse backs off up to 512 s, so
        what was said during a short outage would arrive minutes after the archive is back."""
        self._failing = not ok
        if not ok and (self._nudger is None or self._nudger.done()):
            self._nudger = asyncio.create_task(self._nudge(), name=f"{self.name}: retry nudge")

    async def _nudge(self) -> None:
        backoff = Backoff(initial=1.0, maximum=NUDGE_MAX_SECONDS)
        while self._failing and not self.stopping:
            await asyncio.sleep(backoff.next_delay())
            if not self._failing:
                return
            try:
                await self.client.ping()  # the homeserver retries its queued transactions at once
            except Exception as exc:  # a courtesy: the homeserver retries by itself anyway
                self.log.info("appservice ping after a failed transaction: %s", exc)

    async def _close(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def join(self, room: str) -> str:
        room_id = await self.client.resolve(room)
        try:
            await self.client.join(room_id)
        except MatrixError as exc:
            if exc.status == 403:
                self._awaited.add(room_id)
                self.log.warning("cannot join %s (%s); an invite will be accepted", room, exc)
            raise
        await self._remember(room_id)
        return room_id

    async def _remember(self, room_id: str) -> None:
        self._awaited.discard(room_id)
        if room_id not in self._rooms:
            self._rooms.add(room_id)
            await self.ctx.state.put(ROOMS_KEY, json.dumps(sorted(self._rooms)))

    async def send(self, out: Outbound) -> str:
        try:
            ghost = self.ghosts.mxid(out.sender.network, out.sender.native_id)
        except ValueError as exc:
            raise DeliveryError(str(exc), permanent=True) from exc
        await self.client.prepare_ghost(ghost, out.sender.display_name)
        await self.client.ensure_member(out.room, ghost, out.sender.display_name)
        if out.kind == "delete":
            return await self._redact(out, ghost)
        if out.kind == "edit":
            content = edit_content(out, network=self.name, ghosts=self.ghosts)
            return await self._post(out.room, content, txn_id(out.key), out, ghost)
        if out.kind == "reaction":
            return await self._post(
                out.room, reaction_content(out), txn_id(out.key), out, ghost, "m.reaction"
            )
        ids: list[str] = []
        if out.text or not out.attachments:
            content = message_content(out, network=self.name, ghosts=self.ghosts)
            ids.append(await self._post(out.room, content, txn_id(out.key), out, ghost))
        for n, attachment in enumerate(out.attachments):
            if attachment.data is None:
                self.log.warning("attachment %s of %s has no data; not sent", attachment.name, out.key)
                continue
            mxc = await self.client.upload(attachment.data, attachment.name, attachment.mimetype, user=ghost)
            content = file_content(attachment, mxc)
            ids.append(await self._post(out.room, content, txn_id(out.key, f"file{n}"), out, ghost))
        if not ids:
            raise DeliveryError(f"{out.key}: nothing to send", permanent=True)
        return ids[0]

    async def _post(
        self,
        room: str,
        content: dict[str, Any],
        txn: str,
        out: Outbound,
        ghost: str,
        event_type: str = "m.room.message",
    ) -> str:
        try:
            return await self.client.send_event(room, content, txn, user=ghost, event_type=event_type)
        except MatrixError as exc:
            if exc.status != 403:
                raise
        # The ghost was kicked or left since we last saw it join: join again, once.
        self.client.forget_member(room, ghost)
        await self.client.ensure_member(room, ghost, out.sender.display_name)
        return await self.client.send_event(room, content, txn, user=ghost, event_type=event_type)

    async def _redact(self, out: Outbound, ghost: str) -> str:
        if not out.target_native_id:
            raise DeliveryError(f"{out.key}: a delete needs target_native_id", permanent=True)
        try:
            return await self.client.redact(out.room, out.target_native_id, txn_id(out.key), user=ghost)
        except MatrixError as exc:
            if exc.status != 403:
                raise
        # Deleting someone else's message: only a moderator may, and the bot may be one.
        return await self.client.redact(
            out.room, out.target_native_id, txn_id(out.key, "bot"), user=self.config.bot_mxid
        )

    async def notify(self, room: str, user: str, text: str) -> None:
        message = Text(f"{user}: {text}", (Span("mention", 0, len(user), network=self.name, user=user),))
        content = text_content(message, "m.notice", network=self.name, ghosts=self.ghosts)
        await self.client.send_event(room, content, "sbn" + uuid.uuid4().hex, user=self.config.bot_mxid)

    async def announce(self, room: str, text: str) -> None:
        content = text_content(Text.of(text), "m.notice", network=self.name, ghosts=self.ghosts)
        await self.client.send_event(room, content, "sba" + uuid.uuid4().hex, user=self.config.bot_mxid)

    async def _on_user_query(self, user_id: str) -> bool:
        if self.ghosts.parse(user_id) is None:
            return False
        await self.client.register(user_id)
        return True

    async def _on_event(self, raw: dict[str, Any]) -> None:
        """Handle one pushed event; raises only when the transaction must be retried."""
        try:
            event = await self._convert(raw)
        except MatrixError as exc:
            if not exc.permanent:
                raise
            self.log.warning("skipping event %s: %s", raw.get("event_id"), exc)
            return
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.log.warning("skipping malformed event %.100s: %s", raw.get("event_id"), exc)
            return
        if event is not None:
            assert self._sink is not None
            await self._sink.receive(event)

    async def _convert(self, raw: dict[str, Any]) -> Event | None:
        room_id = raw.get("room_id")
        if raw.get("type") == "m.room.member":
            await self._membership(raw)
            return None
        if not isinstance(room_id, str):
            return None
        if raw.get("type") == "m.room.power_levels" and raw.get("state_key") == "":
            known = self._powers_by_room.get(room_id)
            if known is not None:
                self._powers_by_room[room_id] = replace(known, levels=raw.get("content") or {})
            return None
        if room_id not in self._rooms or self.inbound.is_ours(raw.get("sender", "")):
            return None
        content = raw.get("content")
        if (
            isinstance(content, dict)
            and mentions_room(content)
            and not (await self._powers(room_id)).may_notify_room(raw.get("sender", ""))
        ):
            raw = {**raw, "content": without_room_mention(content)}
        ref = media_ref(raw)
        attachments, fetch_flags = await self._fetch(ref) if ref is not None else ((), ())
        try:
            event = self.inbound.convert(raw, attachments)
        except Exception as exc:  # a pure conversion: retrying the transaction could not help
            self.log.warning("skipping malformed event %.100s: %r", raw.get("event_id"), exc)
            return None
        if fetch_flags and isinstance(event, Message):
            event = replace(event, flags=(*event.flags, *fetch_flags))
        if isinstance(event, Delete):
            # Pushed redactions include ones the homeserver will not apply: say who may.
            event = replace(
                event, moderator=(await self._powers(room_id)).may_redact_others(event.sender.native_id)
            )
        return event

    async def _powers(self, room_id: str) -> RoomPowers:
        """Who may do what in the room: read once, then kept current by the pushed state events."""
        powers = self._powers_by_room.get(room_id)
        if powers is None:
            levels = await self._state_event(room_id, "m.room.power_levels")
            create = await self._state_event(room_id, "m.room.create")
            powers = RoomPowers(levels.get("content") or {}, privileged_creators(create))
            self._powers_by_room[room_id] = powers
        return powers

    async def _state_event(self, room_id: str, event_type: str) -> dict[str, Any]:
        """A state event as a whole (`format=event`: the creator is its sender); {} when unreadable."""
        path = f"/_matrix/client/v3/rooms/{q(room_id)}/state/{q(event_type)}/"
        try:
            return await self.client.call("GET", path, query={"format": "event"})
        except MatrixError as exc:
            if not exc.permanent:
                raise
            self.log.warning("cannot read %s of %s: %s", event_type, room_id, exc)
            return {}

    async def _fetch(self, ref: MediaRef) -> tuple[tuple[Attachment, ...], tuple[str, ...]]:
        """The file of a message, and the flags its fetch leaves on the record.

        A file that cannot be had is archived as name, type and size (and its mxc URL), flagged
        `file_not_fetched`: one file the media repository fails to serve must not hold up every
        later Matrix event, as failing the transaction would.
        """
        described = Attachment(ref.name, ref.mimetype, ref.size, sha256="", url=ref.url)
        if ref.size > self.config.max_file_bytes:
            self.log.info("not fetching %s: %d bytes is over max_file_mb", ref.url, ref.size)
            return (described,), ()
        if not MXC_URL.fullmatch(ref.url):
            self.log.warning("not fetching %.100r: not an mxc://server/media-id URL", ref.url)
            return (described,), ("file_not_fetched",)
        backoff = Backoff(initial=0.5, maximum=2.0)
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            try:
                fetched = await self.client.download(ref.url, self.config.max_file_bytes)
                break
            except MatrixError as exc:
                if not exc.permanent and attempt < FETCH_ATTEMPTS:
                    await asyncio.sleep(backoff.next_delay())
                    continue
                # Gone, refused, or failing again and again: archive that a file was sent.
                self.log.warning("could not fetch %s: %s", ref.url, exc)
                return (described,), ("file_not_fetched",)
        data = fetched.data
        if data is None:  # the size in the event was the sender's word
            self.log.info("not keeping %s: %d bytes is over max_file_mb", ref.url, fetched.size)
            return (replace(described, size=fetched.size),), ()
        attachment = Attachment(
            ref.name, ref.mimetype, len(data), hashlib.sha256(data).hexdigest(), url=ref.url, data=data
        )
        return (attachment,), ()

    async def _membership(self, raw: dict[str, Any]) -> None:
        room_id, user = raw["room_id"], raw["state_key"]
        membership = raw["content"]["membership"]
        if membership in ("leave", "ban"):
            self.client.forget_member(room_id, user)
            if user == self.config.bot_mxid:
                self.log.warning("the bot was removed from %s by %s", room_id, raw.get("sender"))
            return
        if membership != "invite" or user != self.config.bot_mxid:
            return
        try:
            if room_id in self._rooms or room_id in self._awaited:
                await self.client.join(room_id)
                await self._remember(room_id)
                self.log.info("accepted the invite to %s", room_id)
            else:
                await self.client.leave(room_id)
                self.log.info(
                    "declined an invite to unconfigured room %s from %s", room_id, raw.get("sender")
                )
        except MatrixError as exc:
            self.log.warning("could not answer the invite to %s: %s", room_id, exc)
