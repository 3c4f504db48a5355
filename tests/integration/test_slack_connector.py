"""The Slack connector against the Slack emulator, through the real slack-sdk clients.

The core is stood in for by sinks that keep what they get; the full path through the
archive is proven in tests/e2e.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bridge.connector import ConnectorContext, DeliveryError
from bridge.model import Attachment, Delete, Edit, Event, Message, Outbound, Receipt, Sender
from bridge.text import Span, Text
from connectors.slack import SlackConnector
from connectors.slack.catchup import PAGE
from connectors.slack.events import MAX_BODY
from tests.fakes.slack import (
    SlackEmulator,
    escape,
    post_signed_event,
    sign,
    signed_headers,
    url_verification_body,
)
from tests.fakes.state import MemoryState

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@dataclass
class RecordingSink:
    """Keeps what the connector hands over; can be made slow or failing."""

    events: list[Event] = field(default_factory=list)
    attempts: list[Event] = field(default_factory=list)
    gate: asyncio.Event | None = None
    failures: int = 0

    async def receive(self, event: Event) -> Receipt:
        self.attempts.append(event)
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("archive unavailable")
        self.events.append(event)
        return Receipt("archived", len(self.events))

    def messages(self) -> list[Message]:
        return [e for e in self.events if isinstance(e, Message)]

    async def wait(self, count: int, timeout: float = 5.0, kind: type = object) -> list[Any]:
        return await until(
            lambda: found if len(found := [e for e in self.events if isinstance(e, kind)]) >= count else None,
            timeout,
            f"{count} events of {kind.__name__} at the sink",
        )


async def until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.01)


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator(
        ack_timeout=0.5, disconnect_grace=0.2, file_share_delay=0.02, post_rate=None
    ) as emu:
        yield emu


@asynccontextmanager
async def connector(
    slack: SlackEmulator, sink: Any, state: MemoryState | None = None, **options: Any
) -> AsyncIterator[SlackConnector]:
    opts = {
        "bot_token": slack.bot_token,
        "app_token": slack.app_token,
        "api_url": slack.base_url,
        "ping_interval": 0.3,
        **options,
    }
    ctx = ConnectorContext("slack", opts, state or MemoryState(), logging.getLogger("test.slack"))
    conn = SlackConnector(ctx)
    await conn.start(sink)
    try:
        yield conn
    finally:
        await conn.stop()


def outbound(room: str, text: str | Text = "hello", **fields: Any) -> Outbound:
    sender = fields.pop(
        "sender",
        Sender(
            network="matrix",
            native_id="@bob:corp.test",
            display_name="Bob Jones (Matrix)",
            name="Bob Jones",
            network_label="Matrix",
            employee_id="E1002",
            avatar_url="https://corp.test/avatars/bob.png",
        ),
    )
    body = text if isinstance(text, Text) else Text(text)
    kind = fields.pop("kind", "message")
    return Outbound(
        key=fields.pop("key", "sb1"), seq=1, room=room, sender=sender, kind=kind, text=body, **fields
    )


# -- receiving ----------------------------------------------------------------------


async def test_user_post_reaches_the_sink_and_is_acked(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice", "Alice Smith")
    bob = slack.add_user("bob", "Bob Jones")
    room = slack.add_channel("trading", [alice.id, bob.id])
    sink = RecordingSink()
    async with connector(slack, sink):
        msg = slack.user_posts(room.id, alice.id, f"hi *there* <@{bob.id}> &amp; <https://x.test|docs>")
        [got] = await sink.wait(1)
        assert isinstance(got, Message)
        assert (got.network, got.room, got.native_id) == ("slack", room.id, msg.ts)
        assert got.sender.native_id == alice.id and got.sender.display == "Alice Smith"
        assert got.text.plain == "hi there Bob Jones & docs"
        assert Span("bold", 3, 8) in got.text.spans
        assert Span("mention", 9, 18, network="slack", user=bob.id) in got.text.spans
        assert Span("link", 21, 25, url="https://x.test") in got.text.spans
        assert got.thread_id is None and got.kind == "text"
        await slack.wait_acked(1)


async def test_ack_waits_for_receive_and_a_redelivery_is_received_once(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("slow", [alice.id])
    sink = RecordingSink(gate=asyncio.Event())
    async with connector(slack, sink):
        slack.user_posts(room.id, alice.id, "take your time")
        event_id = slack.events[-1]["event_id"]
        await until(lambda: sink.attempts, what="receive entered")
        # Slack's ack timeout passes while the archive is still busy: it redelivers.
        await until(lambda: len(slack.pending_event(event_id).attempts) >= 2, what="redelivery")
        assert not any(e.acked for e in slack.pending_event(event_id).attempts)
        sink.gate.set()
        await slack.wait_acked(1)
        await until(lambda: all(e.acked for e in slack.pending_event(event_id).attempts), what="both acked")
        assert len(sink.events) == 1 and len(sink.attempts) == 1


async def test_a_failed_receive_is_not_acked_and_slack_redelivers(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("flaky", [alice.id])
    sink = RecordingSink(failures=1)
    async with connector(slack, sink):
        msg = slack.user_posts(room.id, alice.id, "second time lucky")
        event_id = slack.events[-1]["event_id"]
        [got] = await sink.wait(1)
        assert got.native_id == msg.ts
        first, second = slack.pending_event(event_id).attempts[:2]
        assert not first.acked and second.retry_attempt == 1
        await slack.wait_acked(1)
        assert len(sink.attempts) == 2 and len(sink.events) == 1


async def test_own_posts_echo_back_and_are_dropped(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("echo", [alice.id])
    sink = RecordingSink()
    async with connector(slack, sink) as conn:
        ts = await conn.send(outbound(room.id, "from Matrix"))
        await conn.send(outbound(room.id, "edited", kind="edit", target_native_id=ts))
        await conn.send(outbound(room.id, kind="delete", target_native_id=ts))
        # Post, edit and delete all come back as events; all three are acked and dropped.
        await slack.wait_acked(3)
        slack.user_posts(room.id, alice.id, "a person")
        [got] = await sink.wait(1)
        assert got.text.plain == "a person"
        assert conn.me.bot_id == slack.bot_id and conn.me.user_id == slack.bot_user_id


async def test_thread_edit_delete_and_tombstone_events(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice", "Alice Smith")
    bob = slack.add_user("bob", "Bob Jones")
    room = slack.add_channel("desk", [alice.id, bob.id])
    sink = RecordingSink()
    async with connector(slack, sink):
        root = slack.user_posts(room.id, alice.id, "root")
        reply = slack.user_posts(room.id, bob.id, "in thread", thread_ts=root.ts)
        slack.user_edits(room.id, reply.ts, "in thread, fixed")
        slack.user_deletes(room.id, reply.ts)
        parent = slack.user_posts(room.id, alice.id, "parent")
        slack.user_posts(room.id, bob.id, "child", thread_ts=parent.ts)
        slack.user_deletes(room.id, parent.ts)  # has a reply: becomes a tombstone
        events = await sink.wait(7)
        kinds = [type(e).__name__ for e in events]
        assert kinds == ["Message", "Message", "Edit", "Delete", "Message", "Message", "Delete"]
        assert events[1].thread_id == root.ts and events[0].thread_id is None
        edit = events[2]
        assert isinstance(edit, Edit)
        assert (edit.target_native_id, edit.text.plain, edit.sender.display) == (
            reply.ts,
            "in thread, fixed",
            "Bob Jones",
        )
        assert edit.native_id not in (reply.ts, root.ts)
        delete = events[3]
        assert isinstance(delete, Delete) and delete.target_native_id == reply.ts
        tombstone = events[6]
        assert isinstance(tombstone, Delete) and tombstone.target_native_id == parent.ts


async def test_a_shared_file_arrives_with_its_bytes(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("files", [alice.id])
    data = bytes(range(256)) * 160  # 40 KB
    sink = RecordingSink()
    async with connector(slack, sink):
        msg = slack.user_shares_file(room.id, alice.id, "chart.png", data, "image/png", text="numbers")
        [got] = await sink.wait(1)
        assert got.native_id == msg.ts and got.text.plain == "numbers"
        [att] = got.attachments
        assert (att.name, att.mimetype, att.size) == ("chart.png", "image/png", len(data))
        assert att.sha256 == hashlib.sha256(data).hexdigest() and att.data == data
        assert att.url.startswith(slack.root_url)


async def test_a_file_over_the_limit_is_described_not_copied(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("bigfiles", [alice.id])
    sink = RecordingSink()
    async with connector(slack, sink, max_file_mb=0.01):
        slack.user_shares_file(room.id, alice.id, "big.bin", b"x" * 20_000, "application/octet-stream")
        [got] = await sink.wait(1)
        [att] = got.attachments
        assert (att.name, att.size, att.data, att.sha256) == ("big.bin", 20_000, None, "")


async def test_a_dropped_socket_loses_nothing_and_doubles_nothing(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("stream", [alice.id])
    sink = RecordingSink()
    async with connector(slack, sink):
        sent = [slack.user_posts(room.id, alice.id, f"line {i}").ts for i in range(10)]
        await sink.wait(10)  # the stream is flowing
        sent += [slack.user_posts(room.id, alice.id, f"line {i}").ts for i in range(10, 20)]
        assert slack.disconnect(abrupt=True) == 1  # with those still in flight
        sent += [slack.user_posts(room.id, alice.id, f"line {i}").ts for i in range(20, 30)]
        await slack.wait_for(lambda: slack.connections_opened >= 2 or None, timeout=10, what="reconnect")
        sent += [slack.user_posts(room.id, alice.id, f"line {i}").ts for i in range(30, 40)]
        await sink.wait(40, timeout=15)
        await slack.wait_acked(40, timeout=10)
        received = [e.native_id for e in sink.events]
        assert sorted(received) == sorted(sent) and len(set(received)) == 40
        assert slack.connections_opened >= 2
        # The drop really cost deliveries: some events had to be sent again.
        assert any(len(slack.pending_event(b["event_id"]).attempts) > 1 for b in slack.events)


async def test_slack_disconnect_request_moves_to_a_fresh_socket(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("refresh", [alice.id])
    sink = RecordingSink()
    async with connector(slack, sink) as conn:
        slack.user_posts(room.id, alice.id, "before")
        await sink.wait(1)
        slack.disconnect()
        await slack.wait_for(lambda: slack.connections_opened >= 2 or None, what="fresh socket")
        slack.user_posts(room.id, alice.id, "after")
        await sink.wait(2)
        await slack.wait_acked(2)
        assert conn.connected
        assert [e.text.plain for e in sink.events] == ["before", "after"]


async def test_wrong_tokens_fail_start(slack: SlackEmulator) -> None:
    with pytest.raises(ConnectionError, match="invalid_auth"):
        async with connector(slack, RecordingSink(), bot_token="xoxb-not-issued"):
            pass
    with pytest.raises(ConnectionError, match="invalid_auth"):
        async with connector(slack, RecordingSink(), app_token="xapp-not-issued"):
            pass


# -- sending ------------------------------------------------------------------------


async def test_send_posts_under_the_senders_name_and_icon(slack: SlackEmulator) -> None:
    room = slack.add_channel("out")
    async with connector(slack, RecordingSink()) as conn:
        text = Text("hi all & <you>", (Span("bold", 3, 6),))
        ts = await conn.send(outbound(room.id, text))
        [posted] = await slack.wait_posted(room.id, 1)
        assert posted.ts == ts
        assert posted.username == "Bob Jones (Matrix)"
        assert posted.icon_url == "https://corp.test/avatars/bob.png"
        assert posted.raw_text == "hi *all* &amp; &lt;you&gt;"
        assert posted.thread_ts is None


async def test_icon_template_emote_and_notice(slack: SlackEmulator) -> None:
    room = slack.add_channel("kinds")
    plain = Sender("irc", "carol", "Carol King (IRC)", "Carol King", "IRC", employee_id="E7")
    async with connector(
        slack, RecordingSink(), icon_url_template="https://img.test/{employee_id}.png"
    ) as conn:
        await conn.send(outbound(room.id, "waves", sender=plain, message_kind="emote"))
        await conn.send(outbound(room.id, "server restarts", sender=plain, message_kind="notice"))
        emote, notice = await slack.wait_posted(room.id, 2)
        assert emote.raw_text == "_Carol King waves_" and emote.icon_url == "https://img.test/E7.png"
        assert notice.raw_text == "server restarts" and notice.username == "Carol King (IRC)"


async def test_edit_updates_and_delete_deletes(slack: SlackEmulator) -> None:
    room = slack.add_channel("changes")
    async with connector(slack, RecordingSink()) as conn:
        ts = await conn.send(outbound(room.id, "draft"))
        assert await conn.send(outbound(room.id, "final", kind="edit", target_native_id=ts)) == ts
        [posted] = slack.posted(room.id)
        assert posted.text == "final" and posted.previous_texts == ("draft",)
        assert [c.params["ts"] for c in slack.calls("chat.update")] == [ts]
        assert await conn.send(outbound(room.id, kind="delete", target_native_id=ts)) == ts
        assert slack.posted(room.id)[0].deleted
        # A retried delete of what is already gone succeeds.
        assert await conn.send(outbound(room.id, kind="delete", target_native_id=ts)) == ts


async def test_thread_replies_and_replies_become_thread_replies(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("threads", [alice.id])
    async with connector(slack, RecordingSink()) as conn:
        root = slack.user_posts(room.id, alice.id, "question")
        await conn.send(outbound(room.id, "in the thread", thread_native_id=root.ts))
        await conn.send(outbound(room.id, "a reply", reply_to_native_id=root.ts, key="sb2"))
        first, second = await slack.wait_posted(room.id, 2)
        assert first.thread_ts == root.ts and second.thread_ts == root.ts


async def test_rate_limit_surfaces_per_channel_and_the_caller_retries_in_order(slack: SlackEmulator) -> None:
    slack.post_rate = 10.0
    slack.post_burst = 10
    busy = slack.add_channel("busy")
    quiet = slack.add_channel("quiet")
    async with connector(slack, RecordingSink()) as conn:
        first_limit: DeliveryError | None = None
        quiet_sent = 0
        for i in range(30):
            out = outbound(busy.id, f"burst {i}", key=f"sb{i}")
            while True:  # what the core's outbox worker for this channel does
                try:
                    await conn.send(out)
                    break
                except DeliveryError as exc:
                    assert not exc.permanent and exc.retry_after is not None
                    if first_limit is None:
                        first_limit = exc
                        # Another channel is not held up by this one's limit.
                        await conn.send(outbound(quiet.id, "elsewhere", key="q1"))
                        quiet_sent += 1
                    await asyncio.sleep(exc.retry_after)
        assert first_limit is not None and first_limit.retry_after >= 1
        assert quiet_sent == 1 and slack.rate_limit_hits(quiet.id) == 0
        assert slack.rate_limit_hits(busy.id) >= 1
        assert [p.text for p in slack.posted(busy.id)] == [f"burst {i}" for i in range(30)]


async def test_an_attachment_is_uploaded_into_the_channel(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("uploads", [alice.id])
    data = b"%PDF-1.4 quarterly\n" * 500
    att = Attachment("q3.pdf", "application/pdf", len(data), hashlib.sha256(data).hexdigest(), data=data)
    async with connector(slack, RecordingSink()) as conn:
        root = slack.user_posts(room.id, alice.id, "send me the report")
        ts = await conn.send(outbound(room.id, "", attachments=(att,), thread_native_id=root.ts))
        [posted] = await slack.wait_posted(room.id, 1)
        assert posted.ts == ts and posted.thread_ts == root.ts
        [f] = posted.files
        assert (f.name, f.data) == ("q3.pdf", data)
        assert posted.raw_text == "*Bob Jones (Matrix)*"


async def test_an_attachment_without_bytes_becomes_a_link(slack: SlackEmulator) -> None:
    room = slack.add_channel("links")
    att = Attachment("scan.tiff", "image/tiff", 10, "", url="https://files.corp.test/scan.tiff")
    async with connector(slack, RecordingSink()) as conn:
        await conn.send(outbound(room.id, "see", attachments=(att,)))
        [posted] = await slack.wait_posted(room.id, 1)
        assert posted.raw_text == "see\n<https://files.corp.test/scan.tiff|scan.tiff>"


async def test_errors_are_permanent_or_retryable_as_slack_means_them(slack: SlackEmulator) -> None:
    outside = slack.add_channel("outside", bot_member=False)
    private = slack.add_channel("secret", bot_member=False, is_private=True)
    room = slack.add_channel("errors")
    async with connector(slack, RecordingSink()) as conn:
        # Not in the channel: the bot joins once and the post goes through.
        ts = await conn.send(outbound(outside.id, "knock knock"))
        assert slack.posted(outside.id)[0].ts == ts
        for channel in ("C0NOSUCH", private.id):
            with pytest.raises(DeliveryError) as missing:
                await conn.send(outbound(channel))
            assert missing.value.permanent
        slack.fail_next("chat.postMessage", "internal_error", status=500)
        with pytest.raises(DeliveryError) as server:
            await conn.send(outbound(room.id))
        assert not server.value.permanent and server.value.retry_after is None
        with pytest.raises(DeliveryError) as foreign:
            await conn.send(outbound(room.id, "x", kind="edit", target_native_id="1.000001"))
        assert foreign.value.permanent


async def test_join_checks_and_joins(slack: SlackEmulator) -> None:
    lobby = slack.add_channel("lobby", bot_member=False)
    async with connector(slack, RecordingSink()) as conn:
        assert await conn.join(lobby.id) == lobby.id
        assert slack.bot_user_id in slack.channel(lobby.id).members
        assert await conn.join(lobby.id) == lobby.id
        assert len(slack.calls("conversations.join")) == 1
        with pytest.raises(DeliveryError) as missing:
            await conn.join("C0NOSUCH")
        assert missing.value.permanent


async def test_notify_is_ephemeral(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("notices", [alice.id])
    async with connector(slack, RecordingSink()) as conn:
        await conn.notify(room.id, alice.id, "Your message was not relayed: <blocked>.")
        [eph] = slack.ephemerals(room.id)
        assert eph.user == alice.id and eph.text == "Your message was not relayed: &lt;blocked&gt;."
        assert not slack.posted(room.id)


# -- Events API mode ----------------------------------------------------------------


@asynccontextmanager
async def events_connector(slack: SlackEmulator, sink: Any) -> AsyncIterator[tuple[SlackConnector, str]]:
    async with connector(
        slack, sink, receive="events", app_token="", signing_secret=SECRET, listen="127.0.0.1:0"
    ) as conn:
        assert conn.events_address is not None
        host, port = conn.events_address
        yield conn, f"http://{host}:{port}/slack/events"


def event_body(slack: SlackEmulator, channel: str, user: str, text: str, event_id: str = "Ev0001") -> dict:
    ts = f"{time.time():.6f}"
    return {
        "type": "event_callback",
        "team_id": slack.team_id,
        "api_app_id": slack.app_id,
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts},
    }


async def test_events_mode_rejects_bad_and_stale_signatures(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("hooks", [alice.id])
    sink = RecordingSink()
    async with events_connector(slack, sink) as (_, url):
        body = event_body(slack, room.id, alice.id, "forged")
        bad = await post_signed_event(url, body, "not-the-secret")
        stale = await post_signed_event(url, body, SECRET, timestamp=int(time.time()) - 301)
        raw = json.dumps(body).encode()
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=raw) as unsigned:
                unsigned_status = unsigned.status
            headers = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00"}
            async with http.post(url, data=b"not json", headers=headers) as garbage:
                garbage_status = garbage.status
        assert (bad.status, stale.status, unsigned_status, garbage_status) == (401, 401, 401, 401)
        ok = await post_signed_event(url, body, SECRET)
        assert ok.status == 200
        assert [e.text.plain for e in sink.events] == ["forged"]


async def test_events_mode_refuses_an_oversized_body_with_413_and_keeps_serving(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("hooks", [alice.id])
    sink = RecordingSink()
    async with events_connector(slack, sink) as (_, url):
        raw = json.dumps(event_body(slack, room.id, alice.id, "x" * MAX_BODY)).encode()
        headers = signed_headers(SECRET, raw)

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap holds while reading
            for at in range(0, len(raw), 64 * 1024):
                yield raw[at : at + 64 * 1024]

        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=chunked(), headers=headers) as streamed:
                streamed_status = streamed.status
            async with http.post(url, data=raw, headers=headers) as declared:
                declared_status = declared.status
        assert (streamed_status, declared_status) == (413, 413)
        ok = await post_signed_event(url, event_body(slack, room.id, alice.id, "after", "Ev0002"), SECRET)
        assert ok.status == 200
        assert [e.text.plain for e in sink.events] == ["after"]


async def test_events_mode_answers_url_verification(slack: SlackEmulator) -> None:
    async with events_connector(slack, RecordingSink()) as (_, url):
        result = await post_signed_event(url, url_verification_body("3eZbrw1aBm2rZgRNFdxV", "vt"), SECRET)
        assert (result.status, result.body) == (200, "3eZbrw1aBm2rZgRNFdxV")


async def test_events_mode_relays_signed_events_once_and_answers_after_receive(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice", "Alice Smith")
    room = slack.add_channel("hooks", [alice.id])
    sink = RecordingSink(failures=1)
    async with events_connector(slack, sink) as (_, url):
        slack.use_events_api(url, SECRET, retry_delays=(0.05,))
        msg = slack.user_posts(room.id, alice.id, escape("1 < 2"))
        [got] = await sink.wait(1)
        assert got.native_id == msg.ts and got.text.plain == "1 < 2" and got.sender.display == "Alice Smith"
        await slack.wait_acked(1)
        attempts = slack.pending_event(slack.events[-1]["event_id"]).attempts
        # The first try failed at the sink: Slack got a 500 and retried.
        assert [a.http_status for a in attempts] == [500, 200]
        # A retry of something already handled is answered 200 without a second relay.
        again = await post_signed_event(url, slack.events[-1], SECRET, retry_num=2)
        assert again.status == 200 and len(sink.events) == 1


async def test_events_mode_signature_helper_matches_the_emulator() -> None:
    from connectors.slack.events import signature

    assert signature(SECRET, "1531420618", b"body") == sign(SECRET, "1531420618", b"body")


# -- catching up and backpressure ---------------------------------------------------


class ArchivingSink(RecordingSink):
    """A sink that, like the archive, drops an event whose native id it has, and knows each
    room's last event with the time it was taken."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: list[tuple[datetime, Event]] = []

    async def receive(self, event: Event) -> Receipt:
        if any(e.native_id == event.native_id and e.room == event.room for _, e in self.taken):
            return Receipt("duplicate", 0)
        receipt = await super().receive(event)
        self.taken.append((datetime.now(UTC), event))
        return receipt

    async def last_native_id(self, network: str, room: str, captured_before: datetime) -> str | None:
        ids = [e.native_id for at, e in self.taken if e.room == room and at < captured_before]
        return ids[-1] if ids else None


async def test_after_a_socket_outage_every_page_of_history_is_caught_up_in_order(
    slack: SlackEmulator,
) -> None:
    carol = slack.add_user("carol", "Carol White")
    room = slack.add_channel("desk", [carol.id])
    sink = ArchivingSink()
    async with connector(slack, sink) as conn:
        conn.ctx.archived = sink
        await conn.catch_up(room.id)  # as the core does once the room is bridged
        assert sink.events == []  # nothing archived from it yet: no past to fetch
        first = slack.user_posts(room.id, carol.id, "before the outage")
        await sink.wait(1)
        opened = slack.connections_opened
        slack.refuse_connections = slack.drop_without_socket = True
        slack.disconnect(abrupt=True)
        await until(lambda: not conn.connected, 10, "the connector notices")
        said = [slack.user_posts(room.id, carol.id, f"said meanwhile {i:03d}") for i in range(449)]
        said.append(slack.user_posts(room.id, carol.id, "a reply meanwhile", thread_ts=said[0].ts))
        calls = len(slack.calls("conversations.history"))
        slack.refuse_connections = slack.drop_without_socket = False
        await until(lambda: slack.connections_opened > opened, 30, "reconnected")
        await sink.wait(451, timeout=30)
        live = slack.user_posts(room.id, carol.id, "after the outage")
        await sink.wait(452, timeout=10)
    messages = [e for e in sink.events if isinstance(e, Message)]
    assert [m.native_id for m in messages] == [first.ts, *(m.ts for m in said), live.ts]
    assert [m.flags for m in messages] == [(), *[("caught_up",)] * 450, ()]
    # 200 + 200 + 49, by cursor, from the last ts the archive held (a reconnect the load may
    # cause later would start from a later ts).
    history = [c for c in slack.calls("conversations.history")[calls:] if c.params.get("oldest") == first.ts]
    assert len(history) == 3
    assert messages[-2].thread_id == said[0].ts  # the thread's reply, fetched with conversations.replies
    assert {c.params.get("ts") for c in slack.calls("conversations.replies")} == {said[0].ts}


async def test_a_full_inbox_leaves_events_unacknowledged_for_slack_to_redeliver(slack: SlackEmulator) -> None:
    slack.max_retries = 100  # Slack retries for minutes; the emulator's test default is 3 quick ones
    carol = slack.add_user("carol", "Carol White")
    room = slack.add_channel("desk", [carol.id])
    sink = RecordingSink(gate=asyncio.Event())
    held: list[int] = []
    async with connector(slack, sink, inbox_size=2) as conn:
        posted = [slack.user_posts(room.id, carol.id, f"line {i}") for i in range(8)]
        for _ in range(20):  # while the archive does not answer, at most the bound is held
            held.append(conn._inbox._queued)
            await asyncio.sleep(0.05)
        await until(lambda: any(p.attempts[1:] for p in slack.unacked), 10, "a refused event is redelivered")
        assert sink.gate is not None
        sink.gate.set()
        await sink.wait(8, timeout=30)
        await slack.wait_for(lambda: not slack.unacked, timeout=30, what="everything acked")
    assert max(held) <= 2
    assert sorted(m.native_id for m in sink.messages()) == sorted(p.ts for p in posted)
    assert len(sink.messages()) == 8 and not slack.dropped  # once each, none lost


# -- posting a row at most once ------------------------------------------------------


def _bridged(room: Any) -> list[Any]:
    return [m for m in room.messages if m.bot_id is not None and not m.deleted]


async def test_a_resumed_row_that_was_posted_is_not_posted_again(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("once", [alice.id])
    out = outbound(room.id, "posted, then the bridge died", key="sb41")
    async with connector(slack, RecordingSink()) as conn:
        first = await conn.send(out)
    # The delivery was never recorded; meanwhile people went on talking, past a page of history.
    for i in range(PAGE + 10):
        slack.user_posts(room.id, alice.id, f"meanwhile {i}")
    async with connector(slack, RecordingSink()) as conn:
        resumed = replace(out, maybe_sent_since=datetime.now(UTC) - timedelta(minutes=1))
        assert await conn.send(resumed) == first
        # A thread reply is looked for in its thread.
        root = slack.user_posts(room.id, alice.id, "a question")
        reply = outbound(room.id, "an answer", key="sb42", thread_native_id=root.ts)
        answered = await conn.send(reply)
        assert await conn.send(replace(reply, maybe_sent_since=datetime.now(UTC))) == answered
    bridged = _bridged(room)
    assert [m.ts for m in bridged] == [first, answered]
    assert bridged[0].metadata == {"event_type": "switchboard_relay", "event_payload": {"key": "sb41"}}
    assert bridged[1].thread_ts == root.ts


async def test_a_resumed_row_that_was_not_posted_is_posted_once(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("once", [alice.id])
    async with connector(slack, RecordingSink()) as conn:
        other = await conn.send(outbound(room.id, "an earlier row", key="sb7"))
        since = datetime.now(UTC) - timedelta(minutes=1)
        ts = await conn.send(replace(outbound(room.id, "never got out", key="sb8"), maybe_sent_since=since))
        # Only what was posted since the row was archived is searched: an older post of the
        # key (here one made "before" a later archive time) is not taken for it.
        late = replace(
            outbound(room.id, "an earlier row", key="sb7"),
            maybe_sent_since=datetime.now(UTC) + timedelta(hours=1),
        )
        again = await conn.send(late)
    assert ts != other and again not in (ts, other)
    assert [(m.text, m.metadata["event_payload"]["key"]) for m in _bridged(room)] == [
        ("an earlier row", "sb7"),
        ("never got out", "sb8"),
        ("an earlier row", "sb7"),
    ]
