"""Hostile Matrix messages through a real Synapse (issue 9, holes 1, 3, 11, 15).

Synapse sends an appservice transaction again until it is answered 200, and the
transactions after it wait: a message that fails its transaction stops all Matrix
inbound. So each test sends the hostile message, then a normal one, and both must arrive.
"""

from __future__ import annotations

import tracemalloc
import uuid
from typing import Any

from nio import AsyncClient, UploadResponse

from bridge.model import Message
from bridge.text import Span, Text
from connectors.matrix.format import MAX_HTML_CHARS
from connectors.slack.format import render as slack_render
from tests.integration import test_matrix_connector as base
from tests.integration.test_matrix_connector import (
    HTML,
    Bridge,
    create_room,
    fake_event,
    get_event,
    outbound,
    say,
    wait_for,
)
from tests.servers.synapse import synapse  # noqa: F401 - the session's Synapse

alice, bridge = base.alice, base.bridge  # the fixtures


async def arrived(bridge: Bridge, event_id: str) -> Message:
    [event] = await wait_for(lambda: [e for e in bridge.sink.events if e.native_id == event_id], event_id)
    assert isinstance(event, Message)
    return event


async def then_a_normal_message_arrives(bridge: Bridge, alice: AsyncClient, room_id: str) -> None:
    said = await say(alice, room_id, {"msgtype": "m.text", "body": "business as usual"})
    assert (await arrived(bridge, said)).text == Text.of("business as usual")


async def test_cdata_markup_is_read_and_the_transaction_acknowledged(
    bridge: Bridge, alice: AsyncClient
) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    said = await say(
        alice,
        room_id,
        {
            "msgtype": "m.text",
            "body": "before after",
            "format": HTML,
            "formatted_body": "<b>before</b> <![CDATA[x]]> after <![",
        },
    )
    message = await arrived(bridge, said)
    assert message.text.plain == "before after" and [s.kind for s in message.text.spans] == ["bold"]
    await then_a_normal_message_arrives(bridge, alice, room_id)


def pushed_event(room_id: str, sender: str, content: dict[str, Any]) -> dict[str, Any]:
    return {**fake_event(room_id, "", sender), "content": content}


async def test_lone_surrogates_in_body_and_html_are_captured_as_sent(
    bridge: Bridge, alice: AsyncClient
) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    # Synapse refuses a lone surrogate from its own clients (500 M_UNKNOWN), but JSON carries
    # one, and a transaction holding one was answered 500 forever: it comes as a homeserver
    # that passes one on sends it.
    refused = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "\ud800"})
    assert getattr(refused, "status_code", None) == "M_UNKNOWN"
    events = [
        pushed_event(
            room_id,
            alice.user_id,
            {"msgtype": "m.text", "body": "x", "format": HTML, "formatted_body": "<i>lone \udfff</i> here"},
        ),
        pushed_event(room_id, alice.user_id, {"msgtype": "m.text", "body": "only \ud800 body"}),
    ]
    assert (await bridge.push(f"sur-{uuid.uuid4().hex}", events)).status == 200
    html, body = [await arrived(bridge, e["event_id"]) for e in events]
    assert html.text.plain == "lone \udfff here" and [s.kind for s in html.text.spans] == ["italic"]
    assert body.text == Text.of("only \ud800 body")
    await then_a_normal_message_arrives(bridge, alice, room_id)


async def test_html_over_the_cap_is_captured_from_its_body_flagged(
    bridge: Bridge, alice: AsyncClient
) -> None:
    # Synapse refuses events over 64 KiB, so only a homeserver that does not could push this one:
    # it comes as a transaction, as the homeserver sends it.
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    event = pushed_event(
        room_id,
        alice.user_id,
        {
            "msgtype": "m.text",
            "body": "the plain words",
            "format": HTML,
            "formatted_body": "<b>x</b>" * (MAX_HTML_CHARS // 8 + 1),
        },
    )
    assert (await bridge.push(f"cap-{uuid.uuid4().hex}", [event])).status == 200
    message = await arrived(bridge, event["event_id"])
    assert (message.text, message.flags) == (Text.of("the plain words"), ("format_fallback",))
    await then_a_normal_message_arrives(bridge, alice, room_id)


async def test_a_file_that_cannot_be_fetched_is_archived_as_described_and_flagged(
    bridge: Bridge, alice: AsyncClient
) -> None:
    """Found by the fuzz run: `mxc://` made the bridge ask Synapse for `/download//`, which
    answers 500, so the transaction failed forever and no later Matrix event was processed."""
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    server = alice.user_id.split(":", 1)[1]
    urls = ["mxc://", "mxc://x/../../admin", f"mxc://{server}/NoSuchMedia{uuid.uuid4().hex}"]
    events = [
        pushed_event(
            room_id,
            alice.user_id,
            {
                "msgtype": "m.image",
                "body": f"{n}.png",
                "url": url,
                "info": {"mimetype": "image/png", "size": 9},
            },
        )
        for n, url in enumerate(urls)
    ]
    assert (await bridge.push(f"mxc-{uuid.uuid4().hex}", events)).status == 200
    for event, url in zip(events, urls, strict=True):
        message = await arrived(bridge, event["event_id"])
        [attachment] = message.attachments
        assert (attachment.name, attachment.url, attachment.data) == (event["content"]["body"], url, None)
        assert message.flags == ("file_not_fetched",)
    await then_a_normal_message_arrives(bridge, alice, room_id)


async def test_a_forged_broadcast_pill_is_plain_text(bridge: Bridge, alice: AsyncClient) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    for ghost in ("@_sb_slack_=21channel:corp.test", "@_sb_slack_=21subteam=5e_s0_o_p_s:corp.test"):
        said = await say(
            alice,
            room_id,
            {
                "msgtype": "m.text",
                "body": "hey everyone",
                "format": HTML,
                "formatted_body": f'hey <a href="https://matrix.to/#/{ghost}">everyone</a>',
                "m.mentions": {"user_ids": [ghost]},
            },
        )
        message = await arrived(bridge, said)
        assert message.text == Text.of("hey everyone")
        assert slack_render(message.text, "slack") == "hey everyone"
    await then_a_normal_message_arrives(bridge, alice, room_id)


async def test_a_download_stops_at_the_limit(bridge: Bridge, alice: AsyncClient) -> None:
    data = b"\0" * (8 * 1024 * 1024)
    uploaded, _ = await alice.upload(
        lambda *_: data, content_type="application/octet-stream", filename="huge.bin", filesize=len(data)
    )
    assert isinstance(uploaded, UploadResponse), uploaded
    tracemalloc.start()
    try:
        fetched = await bridge.c.client.download(uploaded.content_uri, 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (fetched.data, fetched.size) == (None, len(data))  # the size Synapse announced
    assert peak < len(data) // 4  # the file was never held whole
    small = await bridge.c.client.download(uploaded.content_uri, len(data))
    assert small.data == data


async def test_a_lone_surrogate_is_sent_to_matrix_as_a_replacement_character(
    bridge: Bridge, alice: AsyncClient
) -> None:
    room_id, alias = await create_room(alice)
    await bridge.c.join(alias)
    text = Text("from \ud800 Slack", (Span("bold", 0, 4),))
    sent = await bridge.c.send(outbound(room_id, f"k-{uuid.uuid4().hex}", text))
    content = (await get_event(alice, room_id, sent))["content"]
    assert content["body"] == "from \ufffd Slack"
    assert content["formatted_body"] == "<strong>from</strong> \ufffd Slack"
