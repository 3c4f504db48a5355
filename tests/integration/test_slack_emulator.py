"""The Slack emulator, driven by the real slack-sdk clients the bridge's connector uses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    EmulatorThread,
    SlackEmulator,
    display_text,
    escape,
    post_signed_event,
    sign,
    url_verification_body,
)


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator(ack_timeout=0.5, disconnect_grace=0.2, file_share_delay=0.02) as emu:
        yield emu


@dataclass
class Listener:
    """What a SocketModeClient received, with a say in which envelopes get acked."""

    should_ack: Callable[[SocketModeRequest], bool] = lambda req: True
    requests: list[SocketModeRequest] = field(default_factory=list)

    def events(self, **match: Any) -> list[dict[str, Any]]:
        out = []
        for req in self.requests:
            event = req.payload.get("event", {})
            if all(event.get(k) == v for k, v in match.items()):
                out.append(event)
        return out

    async def wait(self, timeout: float = 5.0, count: int = 1, **match: Any) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            found = self.events(**match)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.01)
        raise AssertionError(
            f"no {count} events matching {match}; got {[r.payload['event'] for r in self.requests]}"
        )


@asynccontextmanager
async def socket_client(slack: SlackEmulator, listener: Listener) -> AsyncIterator[SocketModeClient]:
    client = SocketModeClient(
        slack.app_token,
        web_client=AsyncWebClient(base_url=slack.base_url),
        ping_interval=0.3,
    )

    async def on_request(c: SocketModeClient, req: SocketModeRequest) -> None:
        listener.requests.append(req)
        if listener.should_ack(req):
            await c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    client.socket_mode_request_listeners.append(on_request)
    await client.connect()
    try:
        await slack.wait_connected()
        yield client
    finally:
        await client.close()


def web_client(slack: SlackEmulator, token: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(token or slack.bot_token, base_url=slack.base_url)


async def test_auth_test_and_token_checks(slack: SlackEmulator) -> None:
    resp = await web_client(slack).auth_test()
    assert resp["ok"] is True
    assert resp["user_id"] == slack.bot_user_id
    assert resp["bot_id"] == slack.bot_id
    assert resp["team_id"] == slack.team_id

    for token, error in (("xoxb-not-issued", "invalid_auth"), (slack.app_token, "not_allowed_token_type")):
        with pytest.raises(SlackApiError) as bad:
            await web_client(slack, token).auth_test()
        assert bad.value.response["error"] == error
    with pytest.raises(SlackApiError) as none:
        await AsyncWebClient(base_url=slack.base_url).auth_test()
    assert none.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError) as wrong_kind:
        await web_client(slack).apps_connections_open(app_token=slack.bot_token)
    assert wrong_kind.value.response["error"] == "not_allowed_token_type"
    opened = await web_client(slack).apps_connections_open(app_token=slack.app_token)
    assert opened["url"].startswith(f"ws://127.0.0.1:{slack.port}/link/?ticket=")


async def test_unknown_method_and_missing_channel(slack: SlackEmulator) -> None:
    with pytest.raises(SlackApiError) as unknown:
        await web_client(slack).api_call("chat.teleport")
    assert unknown.value.response["error"] == "unknown_method"
    with pytest.raises(SlackApiError) as missing:
        await web_client(slack).chat_postMessage(channel="C0NOSUCH", text="hi")
    assert missing.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as info:
        await web_client(slack).conversations_info(channel="C0NOSUCH")
    assert info.value.response["error"] == "channel_not_found"
    outside = slack.add_channel("outside", bot_member=False)
    with pytest.raises(SlackApiError) as not_in:
        await web_client(slack).chat_postMessage(channel=outside.id, text="hi")
    assert not_in.value.response["error"] == "not_in_channel"


async def test_injected_faults_and_method_limits(slack: SlackEmulator) -> None:
    room = slack.add_channel("faulty")
    client = web_client(slack)
    slack.fail_next("chat.postMessage", "internal_error", status=500)
    with pytest.raises(SlackApiError) as failed:
        await client.chat_postMessage(channel=room.id, text="lost")
    assert failed.value.response.status_code == 500
    await client.chat_postMessage(channel=room.id, text="kept")
    assert [p.text for p in slack.posted(room.id)] == ["kept"]

    slack.set_method_limit("users.info", per_second=0.5)
    await client.users_info(user=slack.bot_user_id)
    with pytest.raises(SlackApiError) as limited:
        await client.users_info(user=slack.bot_user_id)
    assert limited.value.response.status_code == 429
    assert int(limited.value.response.headers["Retry-After"]) == 2


async def test_raw_socket_hello_disconnect_and_bad_ticket(slack: SlackEmulator) -> None:
    url = (await web_client(slack).apps_connections_open(app_token=slack.app_token))["url"]
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url.replace("ticket=", "ticket=forged"))
        assert refused.value.status == 401
        async with http.ws_connect(url) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello"
            assert hello["num_connections"] == 1
            assert hello["connection_info"]["app_id"] == slack.app_id
            slack.disconnect()
            bye = await ws.receive_json(timeout=5)
            assert (bye["type"], bye["reason"]) == ("disconnect", "refresh_requested")
            # A client that ignores the warning is cut off once the grace period is over.
            closing = await ws.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await slack.wait_for(lambda: slack.connection_count == 0 or None, what="socket closed")


async def test_post_message_stores_identity_and_echoes_bot_message(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice", "Alice Smith")
    room = slack.add_channel("trading", [alice.id])
    notices = slack.add_channel("notices")
    listener = Listener()
    async with socket_client(slack, listener):
        resp = await web_client(slack).chat_postMessage(
            channel=room.id,
            text="Bob &lt;3 says hi to <@" + alice.id + ">",
            username="Bob Jones (Matrix)",
            icon_url="https://example.test/bob.png",
        )
        assert resp["channel"] == room.id
        assert resp["message"]["bot_id"] == slack.bot_id

        [posted] = await slack.wait_posted(room.id, 1)
        assert (posted.ts, posted.username, posted.icon_url) == (
            resp["ts"],
            "Bob Jones (Matrix)",
            "https://example.test/bob.png",
        )
        [echo] = await listener.wait(subtype="bot_message")
        assert echo["bot_id"] == slack.bot_id
        assert echo["username"] == "Bob Jones (Matrix)"
        assert echo["icons"] == {"image_48": "https://example.test/bob.png"}
        assert echo["ts"] == resp["ts"] and echo["channel"] == room.id
        assert echo["text"] == "Bob &lt;3 says hi to <@" + alice.id + ">"

        # Without a custom name Slack shows the bot itself: no subtype, but still bot_id.
        plain = await web_client(slack).chat_postMessage(channel=notices.id, text="notice")
        [own] = await listener.wait(ts=plain["ts"])
        assert "subtype" not in own
        assert own["bot_id"] == slack.bot_id and own["user"] == slack.bot_user_id
        await slack.wait_acked(2)
    assert not slack.unacked


async def test_second_post_within_a_second_is_rate_limited_per_channel(slack: SlackEmulator) -> None:
    busy = slack.add_channel("busy")
    quiet = slack.add_channel("quiet")
    client = web_client(slack)
    await client.chat_postMessage(channel=busy.id, text="one")
    with pytest.raises(SlackApiError) as limited:
        await client.chat_postMessage(channel=busy.id, text="two")
    assert limited.value.response.status_code == 429
    assert limited.value.response["error"] == "ratelimited"
    retry_after = int(limited.value.response.headers["Retry-After"])
    assert retry_after >= 1
    assert slack.rate_limit_hits(busy.id) == 1

    await client.chat_postMessage(channel=quiet.id, text="elsewhere")
    assert slack.rate_limit_hits(quiet.id) == 0

    # Waiting exactly Retry-After is enough.
    await asyncio.sleep(retry_after)
    await client.chat_postMessage(channel=busy.id, text="two again")
    assert [p.text for p in slack.posted(busy.id)] == ["one", "two again"]


async def test_unacked_envelope_is_redelivered_with_same_event_id(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("general", [alice.id])
    # Ignore the first delivery of every event, ack the retry.
    listener = Listener(should_ack=lambda req: (req.retry_attempt or 0) > 0)
    async with socket_client(slack, listener):
        msg = slack.user_posts(room.id, alice.id, "are you there?")
        first, retry = await listener.wait(count=2, ts=msg.ts)
        assert first == retry
        reqs = [r for r in listener.requests if r.payload["event"]["ts"] == msg.ts]
        assert [r.retry_attempt for r in reqs] == [0, 1]
        assert reqs[1].retry_reason == "timeout"
        assert reqs[0].payload["event_id"] == reqs[1].payload["event_id"]
        assert reqs[0].envelope_id != reqs[1].envelope_id
        await slack.wait_acked(1)
        [acked] = slack.acks
        assert acked.envelope_id == reqs[1].envelope_id
        await asyncio.sleep(slack.ack_timeout * 1.5)
        assert len([r for r in listener.requests if r.payload["event"]["ts"] == msg.ts]) == 2


async def test_retries_stop_after_three(slack: SlackEmulator) -> None:
    slack.ack_timeout = 0.1
    alice = slack.add_user("alice")
    room = slack.add_channel("void", [alice.id])
    listener = Listener(should_ack=lambda req: False)
    async with socket_client(slack, listener):
        msg = slack.user_posts(room.id, alice.id, "anyone?")
        await listener.wait(count=4, ts=msg.ts)
        await slack.wait_for(lambda: slack.dropped or None, what="event dropped")
        assert [r.retry_attempt for r in listener.requests] == [0, 1, 2, 3]
        assert len({r.payload["event_id"] for r in listener.requests}) == 1


async def test_client_reconnects_and_gets_events_raised_while_away(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("ops", [alice.id])
    listener = Listener()
    async with socket_client(slack, listener):
        # Slack asks for a refresh: slack-sdk opens a new socket by itself.
        assert slack.disconnect() == 1
        await slack.wait_for(lambda: slack.connections_opened >= 2 or None, what="refreshed socket")

        # Now the network dies and Slack is unreachable for a while.
        slack.refuse_connections = True
        assert slack.disconnect(abrupt=True) >= 1
        await slack.wait_for(lambda: slack.connection_count == 0 or None, what="socket gone")
        msg = slack.user_posts(room.id, alice.id, "sent while you were away")
        assert slack.pending_event(slack.events[-1]["event_id"]).state == "waiting"
        assert not listener.events(ts=msg.ts)

        slack.refuse_connections = False
        [event] = await listener.wait(timeout=10, ts=msg.ts)
        assert event["text"] == "sent while you were away"
        [req] = [r for r in listener.requests if r.payload["event"]["ts"] == msg.ts]
        assert req.retry_attempt == 1
        await slack.wait_acked(1)


async def test_events_slack_gave_up_on_are_only_in_history(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("ops", [alice.id])
    listener = Listener()
    async with socket_client(slack, listener):
        slack.refuse_connections = slack.drop_without_socket = True
        assert slack.disconnect(abrupt=True) >= 1
        await slack.wait_for(lambda: slack.connection_count == 0 or None, what="socket gone")
        lost = slack.user_posts(room.id, alice.id, "said while nobody listened")
        slack.refuse_connections = slack.drop_without_socket = False
        await slack.wait_for(lambda: slack.connection_count == 1 or None, timeout=10, what="back")
        kept = slack.user_posts(room.id, alice.id, "said once it was back")
        await listener.wait(timeout=10, ts=kept.ts)
    assert not listener.events(ts=lost.ts)
    assert [p.event["ts"] for p in slack.dropped] == [lost.ts]
    history = await web_client(slack).conversations_history(channel=room.id, oldest="0")
    assert [m["text"] for m in history["messages"]] == ["said once it was back", "said while nobody listened"]


async def test_history_window_oldest_latest_inclusive(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("ops", [alice.id])
    ts = [slack.user_posts(room.id, alice.id, f"m{i}").ts for i in range(6)]
    client = web_client(slack)

    async def texts(**window: Any) -> list[str]:
        return [
            m["text"] for m in (await client.conversations_history(channel=room.id, **window))["messages"]
        ]

    # Newest first, as Slack answers; bounds are exclusive unless `inclusive`.
    assert await texts(oldest=ts[1]) == ["m5", "m4", "m3", "m2"]
    assert await texts(oldest=ts[1], inclusive=True) == ["m5", "m4", "m3", "m2", "m1"]
    assert await texts(oldest=ts[1], latest=ts[4]) == ["m3", "m2"]
    assert await texts(oldest=ts[1], latest=ts[4], inclusive=True) == ["m4", "m3", "m2", "m1"]
    assert await texts(latest=ts[2]) == ["m1", "m0"]
    # Pages follow the cursor within the window until has_more is false.
    pages, cursor = [], ""
    while True:
        body = await client.conversations_history(
            channel=room.id, oldest=ts[0], limit=2, cursor=cursor or None
        )
        pages.append([m["text"] for m in body["messages"]])
        cursor = body["response_metadata"]["next_cursor"]
        if not body["has_more"]:
            assert cursor == ""
            break
    assert pages == [["m5", "m4"], ["m3", "m2"], ["m1"]]


async def test_file_upload_flow_and_private_download(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("files", [alice.id])
    listener = Listener()
    data = b"quarterly numbers\n" * 100
    async with socket_client(slack, listener):
        client = web_client(slack)
        upload = await client.files_getUploadURLExternal(filename="report.txt", length=len(data))
        assert upload["upload_url"].startswith(slack.root_url)
        async with aiohttp.ClientSession() as http, http.post(upload["upload_url"], data=data) as resp:
            assert resp.status == 200
        done = await client.files_completeUploadExternal(
            files=[{"id": upload["file_id"], "title": "Q3 report"}],
            channel_id=room.id,
            initial_comment="from Bob",
        )
        assert done["files"][0]["id"] == upload["file_id"]

        [share] = await listener.wait(subtype="file_share")
        assert share["bot_id"] == slack.bot_id and share["text"] == "from Bob"
        [f] = share["files"]
        assert (f["id"], f["title"], f["size"]) == (upload["file_id"], "Q3 report", len(data))
        [posted] = await slack.wait_posted(room.id, 1)
        assert posted.files[0].data == data and posted.ts == share["ts"]

        info = await client.files_info(file=f["id"])
        assert info["file"]["shares"]["public"][room.id][0]["ts"] == share["ts"]

        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {slack.bot_token}"}
            async with http.get(f["url_private"], headers=auth) as resp:
                assert resp.status == 200
                assert await resp.read() == data
            async with http.get(f["url_private"], allow_redirects=False) as resp:
                assert resp.status == 302
            async with http.get(f["url_private_download"]) as resp:
                # A client that follows the redirect gets the sign-in page, not the file.
                assert resp.content_type == "text/html"
                assert await resp.read() != data

        # slack-sdk's own helper goes through the same three steps.
        await client.files_upload_v2(
            channel=room.id, content=b"tiny", filename="tiny.bin", thread_ts=share["ts"]
        )
        [reply] = await listener.wait(subtype="file_share", thread_ts=share["ts"])
        assert reply["files"][0]["name"] == "tiny.bin"

        # A person's file arrives the same way, and the bot can fetch it.
        msg = slack.user_shares_file(room.id, alice.id, "cat.png", b"\x89PNG fake", "image/png", text="look")
        [event] = await listener.wait(subtype="file_share", user=alice.id)
        assert event["ts"] == msg.ts and "bot_id" not in event
        auth = {"Authorization": f"Bearer {slack.bot_token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(event["files"][0]["url_private"], headers=auth) as resp,
        ):
            assert resp.status == 200 and resp.content_type == "image/png"
            assert await resp.read() == b"\x89PNG fake"


async def test_edit_delete_and_thread_event_shapes(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice", "Alice Smith")
    bob = slack.add_user("bob")
    room = slack.add_channel("desk", [alice.id, bob.id])
    listener = Listener()
    async with socket_client(slack, listener):
        text = f"hi <@{bob.id}>, see <#{room.id}|desk> &amp; <!here> a &lt; b"
        msg = slack.user_posts(room.id, alice.id, text)
        [posted] = await listener.wait(ts=msg.ts)
        assert posted["text"] == text and posted["user"] == alice.id and "subtype" not in posted
        elements = posted["blocks"][0]["elements"][0]["elements"]
        assert {"type": "user", "user_id": bob.id} in elements
        assert {"type": "broadcast", "range": "here"} in elements
        assert display_text(posted["text"], {bob.id: "bob"}) == "hi @bob, see #desk & @here a < b"
        with pytest.raises(ValueError):
            slack.user_posts(room.id, alice.id, "a < b")

        reply = slack.user_posts(room.id, bob.id, "in thread", thread_ts=msg.ts)
        [threaded] = await listener.wait(ts=reply.ts)
        assert threaded["thread_ts"] == msg.ts and threaded["parent_user_id"] == alice.id

        slack.user_edits(room.id, msg.ts, "hi again")
        [changed] = await listener.wait(subtype="message_changed")
        assert changed["message"]["text"] == "hi again"
        assert changed["message"]["ts"] == msg.ts
        assert changed["message"]["edited"]["user"] == alice.id
        assert changed["previous_message"]["text"] == text
        assert changed["hidden"] is True and changed["channel"] == room.id

        slack.user_deletes(room.id, reply.ts)
        [deleted] = await listener.wait(subtype="message_deleted")
        assert deleted["deleted_ts"] == reply.ts
        assert deleted["previous_message"]["text"] == "in thread"
        assert deleted["previous_message"]["thread_ts"] == msg.ts

        # The bot's own edits and deletes come back too.
        client = web_client(slack)
        sent = await client.chat_postMessage(channel=room.id, text="draft", username="Carol (IRC)")
        await client.chat_update(channel=room.id, ts=sent["ts"], text="final")
        bot_edit = (await listener.wait(subtype="message_changed", count=2))[-1]
        assert bot_edit["message"]["bot_id"] == slack.bot_id and bot_edit["message"]["text"] == "final"
        await client.chat_delete(channel=room.id, ts=sent["ts"])
        bot_delete = (await listener.wait(subtype="message_deleted", count=2))[-1]
        assert bot_delete["deleted_ts"] == sent["ts"]
        assert slack.posted(room.id)[-1].deleted and slack.posted(room.id)[-1].previous_texts == ("draft",)
        with pytest.raises(SlackApiError) as foreign:
            await client.chat_update(channel=room.id, ts=msg.ts, text="not yours")
        assert foreign.value.response["error"] == "cant_update_message"

        # Deleting a thread parent that has replies leaves a tombstone, announced as an edit.
        parent = slack.user_posts(room.id, alice.id, "parent")
        slack.user_posts(room.id, bob.id, "child", thread_ts=parent.ts)
        slack.user_deletes(room.id, parent.ts)
        stone = (await listener.wait(subtype="message_changed", count=3))[-1]
        assert stone["message"]["subtype"] == "tombstone" and stone["message"]["ts"] == parent.ts


async def test_history_replies_members_and_users(slack: SlackEmulator) -> None:
    slack.post_rate = None
    alice = slack.add_user("alice", "Alice Smith", display_name="ali", email="alice@corp.test")
    people = [slack.add_user(f"user{i}") for i in range(5)]
    room = slack.add_channel("big", [alice.id, *(p.id for p in people)])
    client = web_client(slack)
    root = slack.user_posts(room.id, alice.id, "root")
    for i in range(3):
        await client.chat_postMessage(channel=room.id, text=f"reply {i}", thread_ts=root.ts)
    for i in range(4):
        slack.user_posts(room.id, alice.id, f"top {i}")

    history = await client.conversations_history(channel=room.id, limit=3)
    assert [m["text"] for m in history["messages"]] == ["top 3", "top 2", "top 1"]
    assert history["has_more"] is True
    rest = await client.conversations_history(
        channel=room.id, cursor=history["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["top 0", "root"]
    assert rest["messages"][-1]["reply_count"] == 3

    replies = await client.conversations_replies(channel=room.id, ts=root.ts)
    assert [m["text"] for m in replies["messages"]] == ["root", "reply 0", "reply 1", "reply 2"]

    members: list[str] = []
    cursor = None
    while True:
        page = await client.conversations_members(channel=room.id, limit=2, cursor=cursor)
        members += page["members"]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert members == room.members

    user = (await client.users_info(user=alice.id))["user"]
    assert user["real_name"] == "Alice Smith"
    assert user["profile"]["display_name"] == "ali"
    assert user["profile"]["image_72"].startswith(slack.root_url)
    info = (await client.conversations_info(channel=room.id))["channel"]
    assert info["name"] == "big" and info["is_member"] is True


async def test_join_channel_and_post_as_a_user(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    lobby = slack.add_channel("lobby", [alice.id], bot_member=False)
    listener = Listener()
    async with socket_client(slack, listener):
        slack.user_posts(lobby.id, alice.id, "bot cannot hear this")
        joined = await web_client(slack).conversations_join(channel=lobby.id)
        assert joined["channel"]["is_member"] is True
        await listener.wait(type="member_joined_channel", user=slack.bot_user_id)
        as_alice = web_client(slack, slack.user_token(alice.id))
        sent = await as_alice.chat_postMessage(channel=lobby.id, text="now you can", username="ignored")
        [event] = await listener.wait(ts=sent["ts"])
        assert event["user"] == alice.id and "bot_id" not in event and "username" not in event
        assert not listener.events(text="bot cannot hear this")


async def test_events_api_mode_signs_and_retries() -> None:
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    seen: list[tuple[str | None, bool, dict[str, Any]]] = []

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        valid = request.headers["X-Slack-Signature"] == sign(
            secret, request.headers["X-Slack-Request-Timestamp"], raw
        )
        seen.append((request.headers.get("X-Slack-Retry-Num"), valid, json.loads(raw)))
        return web.Response(status=500 if len(seen) == 1 else 200)

    app = web.Application()
    app.router.add_post("/slack/events", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with SlackEmulator() as slack:
            slack.use_events_api(f"http://127.0.0.1:{port}/slack/events", secret, retry_delays=(0.05,))
            alice = slack.add_user("alice")
            room = slack.add_channel("hooks", [alice.id])
            slack.user_posts(room.id, alice.id, escape("1 < 2"))
            await slack.wait_acked(1)
        # The same signing, by hand, for requests a test crafts itself.
        challenge = await post_signed_event(
            f"http://127.0.0.1:{port}/slack/events", url_verification_body("c-123", "vt"), secret
        )
        assert challenge.status == 200
    finally:
        await runner.cleanup()
    assert [(n, ok) for n, ok, _ in seen[:2]] == [(None, True), ("1", True)]
    assert seen[0][2]["event_id"] == seen[1][2]["event_id"]
    assert seen[1][2]["event"]["text"] == "1 &lt; 2"
    assert seen[2][:2] == (None, True) and seen[2][2]["challenge"] == "c-123"


def test_emulator_in_a_thread_with_the_sync_client() -> None:
    with EmulatorThread() as slack:
        room = slack.add_channel("sync")
        client = WebClient(slack.bot_token, base_url=slack.base_url)
        sent = client.chat_postMessage(channel=room.id, text="from a thread", username="Dave")
        [posted] = slack.wait_posted(room.id, 1, timeout=5)
        assert (posted.ts, posted.username) == (sent["ts"], "Dave")


async def test_reactions_add_and_remove_as_the_tokens_user_with_slacks_events(slack: SlackEmulator) -> None:
    alice = slack.add_user("alice")
    room = slack.add_channel("reacts", [alice.id])
    listener = Listener()
    async with socket_client(slack, listener):
        msg = slack.user_posts(room.id, alice.id, "ship it")
        as_alice = web_client(slack, slack.user_token(alice.id))
        await as_alice.reactions_add(channel=room.id, timestamp=msg.ts, name="thumbsup")
        with pytest.raises(SlackApiError) as again:
            await as_alice.reactions_add(channel=room.id, timestamp=msg.ts, name="thumbsup")
        assert again.value.response["error"] == "already_reacted"
        await web_client(slack).reactions_add(channel=room.id, timestamp=msg.ts, name=":thumbsup:")
        [added] = await listener.wait(type="reaction_added", user=alice.id)
        assert added["reaction"] == "thumbsup" and added["item_user"] == alice.id
        assert added["item"] == {"type": "message", "channel": room.id, "ts": msg.ts}
        assert added["event_ts"] > msg.ts
        history = (await web_client(slack).conversations_history(channel=room.id))["messages"]
        assert history[0]["reactions"] == [
            {"name": "thumbsup", "users": [alice.id, slack.bot_user_id], "count": 2}
        ]
        await as_alice.reactions_remove(channel=room.id, timestamp=msg.ts, name="thumbsup")
        [removed] = await listener.wait(type="reaction_removed", user=alice.id)
        assert removed["reaction"] == "thumbsup" and removed["event_ts"] > added["event_ts"]
        with pytest.raises(SlackApiError) as gone:
            await as_alice.reactions_remove(channel=room.id, timestamp=msg.ts, name="thumbsup")
        assert gone.value.response["error"] == "no_reaction"
        with pytest.raises(SlackApiError) as missing:
            await as_alice.reactions_add(channel=room.id, timestamp="1.000000", name="eyes")
        assert missing.value.response["error"] == "message_not_found"
        slack.user_unreacts(room.id, msg.ts, slack.bot_user_id, "thumbsup")
        assert (
            "reactions" not in (await web_client(slack).conversations_history(channel=room.id))["messages"][0]
        )


async def test_metadata_is_listed_only_when_asked_for_and_malformed_metadata_is_refused(
    slack: SlackEmulator,
) -> None:
    slack.post_rate = None
    alice = slack.add_user("alice")
    room = slack.add_channel("meta", [alice.id])
    client = web_client(slack)
    meta = {"event_type": "switchboard_relay", "event_payload": {"key": "sb7"}}
    root = await client.chat_postMessage(channel=room.id, text="tagged", metadata=meta)
    await client.chat_postMessage(channel=room.id, text="reply", thread_ts=root["ts"], metadata=meta)

    plain = await client.conversations_history(channel=room.id)
    assert [m["text"] for m in plain["messages"]] == ["tagged"] and "metadata" not in plain["messages"][0]
    full = await client.conversations_history(channel=room.id, include_all_metadata=True)
    assert full["messages"][0]["metadata"] == meta
    thread = await client.conversations_replies(channel=room.id, ts=root["ts"], include_all_metadata=True)
    assert [m.get("metadata") for m in thread["messages"]] == [meta, meta]
    bare = await client.conversations_replies(channel=room.id, ts=root["ts"])
    assert not any("metadata" in m for m in bare["messages"])

    for bad in (
        {"event_type": "", "event_payload": {}},
        {"event_type": "x"},
        {"event_type": "x", "event_payload": "not an object"},
        ["event_type", "x"],
        "{not json",
    ):
        with pytest.raises(SlackApiError) as refused:
            await client.chat_postMessage(channel=room.id, text="bad", metadata=bad)
        assert refused.value.response["error"] == "invalid_metadata_format"
    as_alice = web_client(slack, slack.user_token(alice.id))
    with pytest.raises(SlackApiError) as refused:
        await as_alice.chat_postMessage(channel=room.id, text="from a person", metadata=meta)
    assert refused.value.response["error"] == "metadata_must_be_sent_from_app"
    assert [m.text for m in room.messages] == ["tagged", "reply"]
