"""The Matrix connector against a real Synapse, observed by a real user through matrix-nio."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    MemoryDownloadResponse,
    RoomCreateResponse,
    RoomGetEventResponse,
    RoomGetStateEventResponse,
    RoomMessagesResponse,
    RoomPreset,
    RoomPutStateResponse,
    RoomSendResponse,
    UploadResponse,
)

from bridge.connector import ConnectorContext, DeliveryError
from bridge.model import Attachment, Delete, Edit, Event, Message, Outbound, Receipt, RemoteUser, Sender
from bridge.text import Span, Text
from connectors.matrix import MatrixConnector
from connectors.matrix.appservice import TXN_MEMORY
from tests.fakes.state import MemoryState
from tests.servers.synapse import SynapseSession, synapse  # noqa: F401 - the session's Synapse

BOB = Sender("irc", "bob", "Bob Jones (IRC)", "Bob Jones", "IRC")
HTML = "org.matrix.custom.html"


@dataclass
class RecordingSink:
    events: list[Event] = field(default_factory=list)
    fail_on: set[int] = field(default_factory=set)  # 1-based calls of receive() that raise
    calls: int = 0

    async def receive(self, event: Event) -> Receipt:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("archive unavailable")
        self.events.append(event)
        return Receipt("archived", seq=len(self.events))

    def in_room(self, room: str) -> list[Event]:
        return [e for e in self.events if e.room == room]


@dataclass
class Bridge:
    """A running connector and the sink it delivers to; restartable with the same state."""

    options: dict[str, Any]
    state: MemoryState
    hs_token: str
    connector: MatrixConnector | None = None
    sink: RecordingSink = field(default_factory=RecordingSink)

    async def start(self) -> None:
        self.sink = RecordingSink()
        self.connector = MatrixConnector(ConnectorContext("matrix", self.options, self.state))
        await self.connector.start(self.sink)

    async def stop(self) -> None:
        if self.connector is not None:
            await self.connector.stop()
            self.connector = None

    @property
    def c(self) -> MatrixConnector:
        assert self.connector is not None
        return self.connector

    async def push(
        self, txn_id: str, events: list[Any], headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        """PUT a transaction as the homeserver would."""
        url = f"{self.c.config.url}/_matrix/app/v1/transactions/{txn_id}"
        if headers is None:
            headers = {"Authorization": f"Bearer {self.hs_token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.put(url, json={"events": events}, headers=headers) as reply,
        ):
            await reply.read()
            return reply


async def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll `condition` (plain or async) until it returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
async def alice(synapse: SynapseSession) -> AsyncIterator[AsyncClient]:  # noqa: F811
    user_id, token = synapse.register_user(f"alice-{uuid.uuid4().hex[:8]}")
    client = AsyncClient(synapse.url, user_id, config=AsyncClientConfig(max_limit_exceeded=0))
    client.access_token = token
    client.user_id = user_id
    yield client
    await client.close()


@pytest.fixture
async def bridge(synapse: SynapseSession) -> AsyncIterator[Bridge]:  # noqa: F811
    running = Bridge(synapse.matrix_options(), MemoryState(), synapse.hs_token)
    await running.start()
    yield running
    await running.stop()


async def create_room(alice: AsyncClient, *, public: bool = True) -> tuple[str, str]:
    """A room of Alice's with an alias: (room_id, alias)."""
    localpart = f"sb-{uuid.uuid4().hex[:10]}"
    reply = await alice.room_create(
        alias=localpart, preset=RoomPreset.public_chat if public else RoomPreset.private_chat
    )
    assert isinstance(reply, RoomCreateResponse), reply
    return reply.room_id, f"#{localpart}:{alice.user_id.split(':', 1)[1]}"


async def say(alice: AsyncClient, room_id: str, content: dict[str, Any]) -> str:
    reply = await alice.room_send(room_id, "m.room.message", content)
    assert isinstance(reply, RoomSendResponse), reply
    return reply.event_id


async def get_event(alice: AsyncClient, room_id: str, event_id: str) -> dict[str, Any]:
    reply = await alice.room_get_event(room_id, event_id)
    assert isinstance(reply, RoomGetEventResponse), reply
    return reply.event.source


async def history(alice: AsyncClient, room_id: str, msgtype: str) -> list[dict[str, Any]]:
    """The room's latest messages of one msgtype, as Alice sees them."""
    reply = await alice.room_messages(room_id, limit=50)
    assert isinstance(reply, RoomMessagesResponse), reply
    return [e.source for e in reply.chunk if e.source["content"].get("msgtype") == msgtype]


async def member(alice: AsyncClient, room_id: str, user: str) -> dict[str, Any]:
    reply = await alice.room_get_state_event(room_id, "m.room.member", user)
    return getattr(reply, "content", {})


async def membership_is(alice: AsyncClient, room_id: str, user: str, membership: str) -> bool:
    return (await member(alice, room_id, user)).get("membership") == membership


def fake_event(room_id: str, body: str, sender: str) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "room_id": room_id,
        "event_id": f"${uuid.uuid4().hex}",
        "sender": sender,
        "origin_server_ts": int(time.time() * 1000),
        "content": {"msgtype": "m.text", "body": body},
    }


def outbound(room: str, key: str, text: Text | str, **fields: Any) -> Outbound:
    text = Text.of(text) if isinstance(text, str) else text
    fields.setdefault("sender", BOB)
    fields.setdefault("kind", "message")
    return Outbound(key=key, seq=1, room=room, text=text, **fields)


async def test_user_messages_reach_the_sink(bridge: Bridge, alice: AsyncClient) -> None:
    room_id, alias = await create_room(alice)
    assert await bridge.c.join(alias) == room_id

    sent = [
        await say(alice, room_id, {"msgtype": "m.text", "body": "hello"}),
        await say(alice, room_id, {"msgtype": "m.emote", "body": "waves"}),
        await say(
            alice,
            room_id,
            {
                "msgtype": "m.text",
                "body": "bold and Bob",
                "format": HTML,
                "formatted_body": '<b>bold</b> and <a href="https://matrix.to/#/@_sb_irc_bob:corp.test">Bob</a>',
            },
        ),
    ]
    got = await wait_for(
        lambda: len(bridge.sink.in_room(room_id)) >= 3 and bridge.sink.in_room(room_id), "3 messages"
    )
    assert [e.native_id for e in got] == sent
    hello, emote, formatted = got
    assert isinstance(hello, Message) and isinstance(emote, Message) and isinstance(formatted, Message)
    assert hello.sender == RemoteUser("matrix", alice.user_id, alice.user_id)
    assert (hello.network, hello.room, hello.kind, hello.text) == (
        "matrix",
        room_id,
        "text",
        Text.of("hello"),
    )
    assert abs(hello.occurred_at.timestamp() - time.time()) < 60
    assert (emote.kind, emote.text.plain) == ("emote", "waves")
    assert formatted.text == Text(
        "bold and Bob", (Span("bold", 0, 4), Span("mention", 9, 12, network="irc", user="bob"))
    )


async def test_replies_edits_and_redactions(bridge: Bridge, alice: AsyncClient) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    original = await say(alice, room_id, {"msgtype": "m.text", "body": "orignal"})
    reply = await say(
        alice,
        room_id,
        {
            "msgtype": "m.text",
            "body": "> <@x:corp.test> orignal\n\nanswer",
            "m.relates_to": {"m.in_reply_to": {"event_id": original}},
        },
    )
    edit = await say(
        alice,
        room_id,
        {
            "msgtype": "m.text",
            "body": "* original",
            "m.new_content": {"msgtype": "m.text", "body": "original"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        },
    )
    redaction = await alice.room_redact(room_id, original, reason="oops")
    got = await wait_for(
        lambda: len(bridge.sink.in_room(room_id)) >= 4 and bridge.sink.in_room(room_id), "4 events"
    )
    first, answer, edited, deleted = got
    assert isinstance(answer, Message) and (answer.reply_to, answer.text.plain) == (original, "answer")
    assert isinstance(edited, Edit)
    assert (edited.native_id, edited.target_native_id, edited.text.plain) == (edit, original, "original")
    assert isinstance(deleted, Delete)
    assert (deleted.native_id, deleted.target_native_id) == (redaction.event_id, original)
    assert first.native_id == original and answer.native_id == reply


async def test_wrong_homeserver_token_is_refused(bridge: Bridge, alice: AsyncClient) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    events = [fake_event(room_id, "forged", alice.user_id)]
    wrong = await bridge.push("t-wrong", events, {"Authorization": "Bearer not-the-token"})
    assert wrong.status == 403
    missing = await bridge.push("t-missing", events, {})
    assert missing.status == 401
    in_query = await bridge.push("t-query?access_token=not-the-token", events, {})
    assert in_query.status == 403
    assert bridge.sink.events == []
    # The same transaction with the right token is processed: the refusals above were the token's doing.
    assert (await bridge.push("t-right", events)).status == 200
    assert [e.native_id for e in bridge.sink.events] == [events[0]["event_id"]]


async def test_transactions_are_processed_once_even_after_a_restart(
    bridge: Bridge, alice: AsyncClient
) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    txn = f"dup-{uuid.uuid4().hex}"
    first = fake_event(room_id, "once", alice.user_id)
    assert (await bridge.push(txn, [first])).status == 200
    assert (await bridge.push(txn, [first])).status == 200
    assert [e.native_id for e in bridge.sink.events] == [first["event_id"]]
    assert bridge.state.ttls[f"txn:{txn}"] == TXN_MEMORY  # remembered for a day, then pruned

    await bridge.stop()
    await bridge.start()  # a new connector on the same state: what a bridge restart looks like
    assert (await bridge.push(txn, [first])).status == 200
    assert bridge.sink.events == []
    # The restarted connector still knows the room without join(), and processes new transactions.
    second = fake_event(room_id, "after restart", alice.user_id)
    assert (await bridge.push(f"new-{uuid.uuid4().hex}", [second])).status == 200
    assert [e.native_id for e in bridge.sink.events] == [second["event_id"]]


async def test_echo_only_transactions_skip_the_durable_bookkeeping(
    bridge: Bridge, alice: AsyncClient
) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    ghost = f"@_sb_irc_bob:{alice.user_id.split(':', 1)[1]}"
    echo_txn, real_txn = f"echo-{uuid.uuid4().hex}", f"real-{uuid.uuid4().hex}"
    assert (await bridge.push(echo_txn, [fake_event(room_id, "our own post", ghost)])).status == 200
    assert (await bridge.push(real_txn, [fake_event(room_id, "a person", alice.user_id)])).status == 200
    assert f"txn:{echo_txn}" not in bridge.state.values
    assert f"txn:{real_txn}" in bridge.state.values
    assert [e.text.plain for e in bridge.sink.events] == ["a person"]


async def test_events_sent_while_down_arrive_at_once_after_restart(
    bridge: Bridge, alice: AsyncClient
) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    await bridge.stop()
    said = await say(alice, room_id, {"msgtype": "m.text", "body": "while you were out"})
    # Let Synapse fail twice: its next retry is then ~4 s away, unless our startup ping hurries it.
    await asyncio.sleep(2.5)
    await bridge.start()
    started = time.monotonic()
    await wait_for(lambda: any(e.native_id == said for e in bridge.sink.events), "the queued message")
    assert time.monotonic() - started < 2.0


async def test_sink_failure_makes_the_homeserver_retry(bridge: Bridge, alice: AsyncClient) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    bridge.sink.fail_on = {2}
    events = [fake_event(room_id, "one", alice.user_id), fake_event(room_id, "two", alice.user_id)]
    txn = f"fail-{uuid.uuid4().hex}"
    assert (await bridge.push(txn, events)).status == 500
    assert (await bridge.push(txn, events)).status == 200
    # The retry redelivers the first event too; the core's per-event deduplication absorbs it.
    assert [e.text.plain for e in bridge.sink.events if isinstance(e, Message)] == ["one", "one", "two"]


async def test_malformed_and_foreign_events_are_skipped(bridge: Bridge, alice: AsyncClient) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    good = fake_event(room_id, "fine", alice.user_id)
    broken = {**fake_event(room_id, "x", alice.user_id), "origin_server_ts": "soon"}
    no_content = {k: v for k, v in fake_event(room_id, "x", alice.user_id).items() if k != "content"}
    elsewhere = fake_event("!not-joined:corp.test", "not for us", alice.user_id)
    events = ["junk", None, broken, no_content, elsewhere, good]
    assert (await bridge.push(f"bad-{uuid.uuid4().hex}", events)).status == 200
    assert [e.native_id for e in bridge.sink.events] == [good["event_id"]]


async def test_send_posts_as_a_ghost_once_per_key(bridge: Bridge, alice: AsyncClient) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    ghost = "@_sb_irc_bob:corp.test"
    key = f"k-{uuid.uuid4().hex}"
    message = outbound(room_id, key, Text("hello from IRC", (Span("bold", 11, 14),)))
    event_id = await bridge.c.send(message)
    assert await bridge.c.send(message) == event_id  # a retried delivery

    event = await get_event(alice, room_id, event_id)
    assert event["sender"] == ghost
    assert event["content"]["body"] == "hello from IRC"
    assert event["content"]["formatted_body"] == "hello from <strong>IRC</strong>"
    assert (await member(alice, room_id, ghost))["displayname"] == "Bob Jones (IRC)"
    bodies = [e["content"]["body"] for e in await history(alice, room_id, "m.text")]
    assert bodies.count("hello from IRC") == 1

    renamed = Sender("irc", "bob", "Bob J. (IRC)", "Bob J.", "IRC")
    await bridge.c.send(outbound(room_id, f"k-{uuid.uuid4().hex}", "renamed", sender=renamed))
    assert (await member(alice, room_id, ghost))["displayname"] == "Bob J. (IRC)"

    # Echoes: the ghost's posts come back in transactions but never reach the sink.
    marker = await say(alice, room_id, {"msgtype": "m.text", "body": "marker"})
    await wait_for(lambda: any(e.native_id == marker for e in bridge.sink.events), "the marker")
    assert [e.native_id for e in bridge.sink.in_room(room_id)] == [marker]


async def test_send_edit_delete_emote_and_reply(bridge: Bridge, alice: AsyncClient) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    question = await say(alice, room_id, {"msgtype": "m.text", "body": "question?"})
    draft = await bridge.c.send(
        outbound(
            room_id, f"k-{uuid.uuid4().hex}", "drafft", reply_to_native_id=question, message_kind="emote"
        )
    )
    content = (await get_event(alice, room_id, draft))["content"]
    assert content["msgtype"] == "m.emote"
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": question}}

    edit_key = f"k-{uuid.uuid4().hex}"
    edit = outbound(room_id, edit_key, "draft", kind="edit", target_native_id=draft, message_kind="emote")
    edit_id = await bridge.c.send(edit)
    edited = await get_event(alice, room_id, edit_id)
    assert edited["sender"] == "@_sb_irc_bob:corp.test"
    assert edited["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": draft}
    assert edited["content"]["m.new_content"]["body"] == "draft"
    assert edited["content"]["body"] == "* draft"

    delete = outbound(room_id, f"k-{uuid.uuid4().hex}", "", kind="delete", target_native_id=draft)
    redaction = await bridge.c.send(delete)
    assert await bridge.c.send(delete) == redaction
    gone = await get_event(alice, room_id, draft)
    assert gone["content"] == {}
    assert gone["unsigned"]["redacted_because"]["event_id"] == redaction


async def test_appservice_queries(bridge: Bridge, alice: AsyncClient, synapse: SynapseSession) -> None:  # noqa: F811
    ghost = f"@_sb_irc_carol{uuid.uuid4().hex[:6]}:corp.test"
    base = f"{bridge.c.config.url}/_matrix/app/v1"
    auth = {"Authorization": f"Bearer {synapse.hs_token}"}
    async with aiohttp.ClientSession() as http:
        profile = f"{synapse.url}/_matrix/client/v3/profile/{ghost}"
        headers = {"Authorization": f"Bearer {alice.access_token}"}
        async with http.get(profile, headers=headers) as reply:
            assert reply.status == 404
        async with http.get(f"{base}/users/{ghost}", headers=auth) as reply:
            assert (reply.status, await reply.json()) == (200, {})
        async with http.get(profile, headers=headers) as reply:
            assert reply.status == 200  # the query registered the ghost
        for stranger in (alice.user_id, "@_sb_:corp.test", "@_sb_irc_=zz:corp.test"):
            async with http.get(f"{base}/users/{stranger}", headers=auth) as reply:
                assert reply.status == 404
        async with http.get(f"{base}/users/{ghost}", headers={"Authorization": "Bearer wrong"}) as reply:
            assert reply.status == 403
        async with http.get(f"{base}/rooms/%23anything:corp.test", headers=auth) as reply:
            assert (reply.status, (await reply.json())["errcode"]) == (404, "M_NOT_FOUND")
        async with http.post(f"{base}/ping", json={"transaction_id": "x"}, headers=auth) as reply:
            assert (reply.status, await reply.json()) == (200, {})
        async with http.get(
            f"{bridge.c.config.url}/users/{ghost}", params={"access_token": synapse.hs_token}
        ) as reply:
            assert reply.status == 200  # legacy path and query-string token


async def test_join_creates_a_missing_alias_of_our_server(bridge: Bridge, alice: AsyncClient) -> None:
    alias = f"#sb-auto-{uuid.uuid4().hex[:10]}:corp.test"
    room_id = await bridge.c.join(alias)
    joined = await alice.join(alias)
    assert isinstance(joined, JoinResponse) and joined.room_id == room_id
    said = await say(alice, room_id, {"msgtype": "m.text", "body": "in the new room"})
    await wait_for(lambda: any(e.native_id == said for e in bridge.sink.events), "a message in the new room")
    with pytest.raises(DeliveryError):
        await bridge.c.join("#missing:elsewhere.test")
    with pytest.raises(DeliveryError, match=r"matrix\.appservice\.aliases") as refused:
        await bridge.c.join(f"#not-ours-{uuid.uuid4().hex[:10]}:corp.test")
    assert refused.value.permanent


async def test_invites_to_configured_rooms_are_accepted(bridge: Bridge, alice: AsyncClient) -> None:
    bot = bridge.c.config.bot_mxid
    room_id, alias = await create_room(alice, public=False)
    with pytest.raises(DeliveryError) as refused:
        await bridge.c.join(alias)
    assert refused.value.permanent
    await alice.room_invite(room_id, bot)
    await wait_for(lambda: membership_is(alice, room_id, bot, "join"), "the bot accepting the invite")
    said = await say(alice, room_id, {"msgtype": "m.text", "body": "private"})
    await wait_for(
        lambda: any(e.native_id == said for e in bridge.sink.events), "a message in the private room"
    )

    # A ghost may not join an invite-only room by itself: the bot invites it.
    event_id = await bridge.c.send(outbound(room_id, f"k-{uuid.uuid4().hex}", "let me in"))
    assert (await get_event(alice, room_id, event_id))["sender"] == "@_sb_irc_bob:corp.test"

    other, _ = await create_room(alice, public=False)
    await alice.room_invite(other, bot)
    await wait_for(
        lambda: membership_is(alice, other, bot, "leave"), "the bot declining an unconfigured room"
    )


async def test_files_both_ways(bridge: Bridge, alice: AsyncClient, synapse: SynapseSession) -> None:  # noqa: F811
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    data = b"quarterly numbers\n" * 100
    uploaded, _ = await alice.upload(
        lambda *_: data, content_type="text/plain", filename="q3.txt", filesize=len(data)
    )
    assert isinstance(uploaded, UploadResponse), uploaded
    mxc = uploaded.content_uri
    said = await say(
        alice,
        room_id,
        {
            "msgtype": "m.file",
            "body": "q3.txt",
            "url": mxc,
            "info": {"mimetype": "text/plain", "size": len(data)},
        },
    )
    got = await wait_for(lambda: [e for e in bridge.sink.events if e.native_id == said], "the file message")
    assert isinstance(got[0], Message)
    (attachment,) = got[0].attachments
    assert (attachment.name, attachment.mimetype, attachment.size) == ("q3.txt", "text/plain", len(data))
    assert attachment.sha256 == hashlib.sha256(data).hexdigest() and attachment.data == data

    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    out = outbound(
        room_id,
        f"k-{uuid.uuid4().hex}",
        "see attached",
        attachments=(
            Attachment("chart.png", "image/png", len(image), hashlib.sha256(image).hexdigest(), data=image),
        ),
    )
    first = await bridge.c.send(out)
    assert (await get_event(alice, room_id, first))["content"]["body"] == "see attached"
    files = await history(alice, room_id, "m.image")
    assert len(files) == 1 and files[0]["sender"] == "@_sb_irc_bob:corp.test"
    downloaded = await alice.download(mxc=files[0]["content"]["url"])
    assert isinstance(downloaded, MemoryDownloadResponse) and downloaded.body == image


async def test_files_over_the_limit_are_described_not_kept(
    alice: AsyncClient,
    synapse: SynapseSession,  # noqa: F811
) -> None:
    small = Bridge(synapse.matrix_options() | {"max_file_mb": 0.001}, MemoryState(), synapse.hs_token)
    await small.start()
    try:
        room_id, alias = await create_room(alice)
        await small.c.join(alias)
        data = b"x" * 1800  # over the 1048-byte limit
        uploaded, _ = await alice.upload(
            lambda *_: data, content_type="text/plain", filename="big.txt", filesize=len(data)
        )
        assert isinstance(uploaded, UploadResponse), uploaded
        for claimed in (len(data), 10):  # the second sender understates the size
            await say(
                alice,
                room_id,
                {
                    "msgtype": "m.file",
                    "body": "big.txt",
                    "url": uploaded.content_uri,
                    "info": {"mimetype": "text/plain", "size": claimed},
                },
            )
        got = await wait_for(
            lambda: len(small.sink.in_room(room_id)) == 2 and small.sink.in_room(room_id), "both"
        )
        for event in got:
            assert isinstance(event, Message)
            (attachment,) = event.attachments
            assert (attachment.name, attachment.size, attachment.data) == ("big.txt", len(data), None)
            assert attachment.url == uploaded.content_uri
    finally:
        await small.stop()


@pytest.fixture
async def erins_room(
    bridge: Bridge,
    alice: AsyncClient,
    synapse: SynapseSession,  # noqa: F811
) -> AsyncIterator[tuple[str, AsyncClient]]:
    """A room of Alice's that the bridge joined, and Erin in it at the room's default level."""
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    user_id, token = synapse.register_user(f"erin-{uuid.uuid4().hex[:8]}")
    erin = AsyncClient(synapse.url, user_id)
    erin.access_token, erin.user_id = token, user_id
    try:
        assert isinstance(await erin.join(room_id), JoinResponse)
        yield room_id, erin
    finally:
        await erin.close()


async def received(bridge: Bridge, native_id: str) -> Event:
    """The event with `native_id`, once the connector gave it to the sink."""
    [event] = await wait_for(lambda: [e for e in bridge.sink.events if e.native_id == native_id], native_id)
    return event


async def raise_level(alice: AsyncClient, room_id: str, user_id: str, level: int) -> None:
    levels = await alice.room_get_state_event(room_id, "m.room.power_levels")
    assert isinstance(levels, RoomGetStateEventResponse), levels
    raised = {**levels.content, "users": {**levels.content["users"], user_id: level}}
    assert isinstance(
        await alice.room_put_state(room_id, "m.room.power_levels", raised), RoomPutStateResponse
    )


async def test_only_those_the_room_lets_notify_it_broadcast(
    bridge: Bridge, alice: AsyncClient, erins_room: tuple[str, AsyncClient]
) -> None:
    room_id, erin = erins_room

    async def broadcasts(client: AsyncClient) -> list[str]:
        said = await say(
            client, room_id, {"msgtype": "m.text", "body": "@room lunch", "m.mentions": {"room": True}}
        )
        event = await received(bridge, said)
        assert isinstance(event, Message)
        return [s.user for s in event.text.mentions()]

    assert await broadcasts(alice) == ["!channel"]  # the room's creator, level 100
    assert await broadcasts(erin) == []  # level 0 < notifications.room 50: plain text
    await raise_level(alice, room_id, erin.user_id, 50)
    # The homeserver pushes the new levels before Erin's next message: the bridge follows them.
    assert await broadcasts(erin) == ["!channel"]


async def test_a_redaction_says_whether_the_room_lets_its_sender_redact_others(
    bridge: Bridge, alice: AsyncClient, erins_room: tuple[str, AsyncClient]
) -> None:
    room_id, erin = erins_room
    hers = await say(alice, room_id, {"msgtype": "m.text", "body": "Alice's"})
    own = await say(erin, room_id, {"msgtype": "m.text", "body": "Erin's"})

    async def deleted(redaction_id: str) -> Delete:
        event = await received(bridge, redaction_id)
        assert isinstance(event, Delete)
        return event

    # Erin (level 0) may redact her own event: she is its sender, not a moderator.
    assert not (await deleted((await erin.room_redact(room_id, own)).event_id)).moderator
    # Synapse refuses her a redaction of Alice's event, but pushes one it accepted over
    # federation (to be rechecked, never applied): such a push says she may not.
    refused = await erin.room_redact(room_id, hers)
    assert not hasattr(refused, "event_id") and getattr(refused, "status_code", "") == "M_FORBIDDEN"
    forged = {
        **fake_event(room_id, "", erin.user_id),
        "type": "m.room.redaction",
        "content": {"redacts": hers},
    }
    assert (await bridge.push(f"redact-{uuid.uuid4().hex}", [forged])).status == 200
    assert not (await deleted(forged["event_id"])).moderator
    # The room's creator may; and so may Erin, once the room raises her to its redact level.
    mine = await say(erin, room_id, {"msgtype": "m.text", "body": "Erin's again"})
    assert (await deleted((await alice.room_redact(room_id, mine)).event_id)).moderator
    await raise_level(alice, room_id, erin.user_id, 50)
    assert (await deleted((await erin.room_redact(room_id, hers)).event_id)).moderator


async def test_delivery_errors(bridge: Bridge) -> None:
    with pytest.raises(DeliveryError) as failed:
        await bridge.c.send(outbound("!nowhere:corp.test", f"k-{uuid.uuid4().hex}", "lost"))
    assert failed.value.permanent


async def test_notify_addresses_the_user(bridge: Bridge, alice: AsyncClient) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    await bridge.c.notify(room_id, alice.user_id, "your message was not relayed: card number")
    notices = await history(alice, room_id, "m.notice")
    assert len(notices) == 1
    notice = notices[0]
    assert notice["sender"] == bridge.c.config.bot_mxid
    assert notice["content"]["body"] == f"{alice.user_id}: your message was not relayed: card number"
    assert notice["content"]["m.mentions"] == {"user_ids": [alice.user_id]}
