"""Slack event payloads → bridge events, without a network: every shape the connector meets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.model import Attachment, Delete, Edit, Message, Reaction
from bridge.text import Span
from connectors.slack.emoji import emoji
from connectors.slack.inbound import Inbound, Me
from connectors.slack.names import NameCache, user_display

ME = Me(user_id="U0BOT", bot_id="B0BOT")
PEOPLE = {
    "U0ALICE": {
        "id": "U0ALICE",
        "name": "alice",
        "real_name": "Alice Smith",
        "profile": {"display_name": "ali"},
    },
    "U0BOB": {"id": "U0BOB", "name": "bob", "profile": {"display_name": "Bobby", "real_name": ""}},
}


class FakeFiles:
    def __init__(self) -> None:
        self.asked: list[Mapping[str, Any]] = []

    async def attachment(self, file: Mapping[str, Any]) -> Attachment:
        self.asked.append(file)
        return Attachment(file["name"], file["mimetype"], 3, "abc", url=file["url_private"], data=b"abc")


@pytest.fixture
def fetched() -> list[str]:
    return []


@pytest.fixture
def inbound(fetched: list[str]) -> Inbound:
    async def users_info(user: str) -> Mapping[str, Any]:
        fetched.append(user)
        return PEOPLE.get(user, {"id": user})

    async def conversations_info(channel: str) -> Mapping[str, Any]:
        return {"id": channel, "name": "general"}

    log = logging.getLogger("test")
    users = NameCache(users_info, user_display, log)
    channels = NameCache(conversations_info, lambda c: c["name"], log)
    return Inbound("slack", ME, users, channels, FakeFiles())  # type: ignore[arg-type]


def message(**fields: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "channel": "C0DESK",
        "user": "U0ALICE",
        "text": "hi",
        "ts": "1700000000.000100",
    } | fields


async def test_a_plain_message(inbound: Inbound) -> None:
    event = await inbound.convert(message(text="hi <@U0BOB> in <#C0GEN>"))
    assert isinstance(event, Message)
    assert (event.network, event.room, event.native_id) == ("slack", "C0DESK", "1700000000.000100")
    assert (event.sender.native_id, event.sender.display) == ("U0ALICE", "Alice Smith")
    assert event.text.plain == "hi Bobby in #general"
    assert Span("mention", 3, 8, network="slack", user="U0BOB") in event.text.spans
    assert event.occurred_at == datetime.fromtimestamp(1700000000.0001, UTC)
    assert (event.kind, event.thread_id, event.reply_to, event.attachments) == ("text", None, None, ())


async def test_names_are_fetched_once(inbound: Inbound, fetched: list[str]) -> None:
    for _ in range(3):
        await inbound.convert(message(text="<@U0BOB> <@U0BOB>"))
    assert sorted(fetched) == ["U0ALICE", "U0BOB"]


async def test_user_change_refreshes_the_name(inbound: Inbound, fetched: list[str]) -> None:
    await inbound.convert(message())
    changed = {"type": "user_change", "user": {"id": "U0ALICE", "real_name": "Alice Jones"}}
    assert await inbound.convert(changed) is None
    event = await inbound.convert(message())
    assert event is not None and event.sender.display == "Alice Jones"
    assert fetched == ["U0ALICE"]


async def test_threads_broadcasts_and_emotes(inbound: Inbound) -> None:
    root = await inbound.convert(message(thread_ts="1700000000.000100"))  # a thread's parent
    reply = await inbound.convert(message(ts="1700000001.000000", thread_ts="1700000000.000100"))
    broadcast = await inbound.convert(
        message(ts="1700000002.000000", thread_ts="1700000000.000100", subtype="thread_broadcast")
    )
    emote = await inbound.convert(message(subtype="me_message", text="waves"))
    assert isinstance(root, Message) and root.thread_id is None
    assert isinstance(reply, Message) and reply.thread_id == "1700000000.000100"
    assert isinstance(broadcast, Message) and broadcast.thread_id == "1700000000.000100"
    assert isinstance(emote, Message) and emote.kind == "emote"


async def test_another_apps_post_is_relayed_under_its_name(inbound: Inbound) -> None:
    event = await inbound.convert(
        {"type": "message", "subtype": "bot_message", "channel": "C0DESK", "bot_id": "B0JIRA",
         "username": "Jira", "text": "ticket opened", "ts": "1700000000.000200"}
    )  # fmt: skip
    assert isinstance(event, Message)
    assert (event.sender.native_id, event.sender.display) == ("B0JIRA", "Jira")


@pytest.mark.parametrize(
    "event",
    [
        message(bot_id="B0BOT", subtype="bot_message", username="Bob (Matrix)"),
        message(user="U0BOT"),
        message(subtype="channel_join", text="<@U0ALICE> has joined the channel"),
        message(channel=None),
        message(ts=None),
        {"type": "member_joined_channel", "channel": "C0DESK", "user": "U0ALICE"},
        {"type": "reaction_added"},
        {"type": "reaction_added", "user": "U0BOT", "reaction": "eyes", "event_ts": "3.0",
         "item": {"type": "message", "channel": "C0DESK", "ts": "1.0"}},
        {"type": "reaction_added", "user": "U0ALICE", "reaction": "eyes", "event_ts": "3.0",
         "item": {"type": "file", "file": "F1"}},
        {"type": "message", "subtype": "message_changed", "channel": "C0DESK", "ts": "2.0",
         "message": {"type": "message", "bot_id": "B0BOT", "text": "edited", "ts": "1.0"},
         "previous_message": {"type": "message", "bot_id": "B0BOT", "text": "draft", "ts": "1.0"}},
        {"type": "message", "subtype": "message_deleted", "channel": "C0DESK", "ts": "2.0",
         "deleted_ts": "1.0", "previous_message": {"bot_id": "B0BOT", "text": "bye", "ts": "1.0"}},
        {"type": "message", "subtype": "message_changed", "channel": "C0DESK", "ts": "2.0",
         "message": {"user": "U0ALICE", "text": "same <https://x.test>", "ts": "1.0", "attachments": [{}]},
         "previous_message": {"user": "U0ALICE", "text": "same <https://x.test>", "ts": "1.0"}},
    ],
)  # fmt: skip
async def test_nothing_to_relay(inbound: Inbound, event: dict[str, Any]) -> None:
    assert await inbound.convert(event) is None


async def test_an_edit(inbound: Inbound) -> None:
    event = await inbound.convert(
        {"type": "message", "subtype": "message_changed", "channel": "C0DESK", "hidden": True,
         "ts": "1700000009.000000", "event_ts": "1700000009.000000",
         "message": {"type": "message", "user": "U0ALICE", "text": "fixed *now*", "ts": "1700000000.000100",
                     "edited": {"user": "U0ALICE", "ts": "1700000009.000000"}},
         "previous_message": {"type": "message", "user": "U0ALICE", "text": "fixd", "ts": "1700000000.000100"}}
    )  # fmt: skip
    assert isinstance(event, Edit)
    assert (event.native_id, event.target_native_id) == ("1700000009.000000", "1700000000.000100")
    assert event.text.plain == "fixed now" and event.sender.display == "Alice Smith"


async def test_a_delete_and_a_tombstone(inbound: Inbound) -> None:
    deleted = await inbound.convert(
        {"type": "message", "subtype": "message_deleted", "channel": "C0DESK", "hidden": True,
         "ts": "1700000009.000000", "deleted_ts": "1700000000.000100",
         "previous_message": {"type": "message", "user": "U0ALICE", "text": "oops", "ts": "1700000000.000100"}}
    )  # fmt: skip
    assert isinstance(deleted, Delete)
    assert (deleted.native_id, deleted.target_native_id) == ("1700000009.000000", "1700000000.000100")
    assert deleted.sender.native_id == "U0ALICE" and deleted.moderator  # Slack made it: author or admin
    tombstone = await inbound.convert(
        {"type": "message", "subtype": "message_changed", "channel": "C0DESK", "ts": "1700000010.000000",
         "message": {"type": "message", "subtype": "tombstone", "user": "USLACKBOT",
                     "text": "This message was deleted.", "ts": "1700000000.000100", "thread_ts": "1700000000.000100"},
         "previous_message": {"type": "message", "user": "U0ALICE", "text": "parent", "ts": "1700000000.000100"}}
    )  # fmt: skip
    assert isinstance(tombstone, Delete) and tombstone.target_native_id == "1700000000.000100"
    assert tombstone.moderator


async def test_shared_files_become_attachments(inbound: Inbound) -> None:
    files = [
        {
            "id": "F1",
            "name": "a.png",
            "mimetype": "image/png",
            "url_private": "https://files.slack.com/a.png",
        },
        {
            "id": "F2",
            "name": "b.txt",
            "mimetype": "text/plain",
            "url_private": "https://files.slack.com/b.txt",
        },
    ]
    event = await inbound.convert(message(subtype="file_share", text="", files=files))
    assert isinstance(event, Message) and event.text.plain == ""
    assert [a.name for a in event.attachments] == ["a.png", "b.txt"]
    assert [a.data for a in event.attachments] == [b"abc", b"abc"]


def test_user_display_prefers_the_real_name() -> None:
    assert user_display(PEOPLE["U0ALICE"]) == "Alice Smith"
    assert user_display(PEOPLE["U0BOB"]) == "Bobby"
    assert user_display({"id": "U0X", "name": "x"}) == "x"
    assert user_display({"id": "U0Y"}) == "U0Y"


async def test_a_failed_lookup_falls_back_to_the_id() -> None:
    from slack_sdk.errors import SlackApiError

    calls = 0

    async def broken(user: str) -> Mapping[str, Any]:
        nonlocal calls
        calls += 1
        raise SlackApiError("ratelimited", {"ok": False, "error": "ratelimited"})

    cache = NameCache(broken, user_display, logging.getLogger("test"))
    assert await cache.get("U0ALICE") == "U0ALICE"
    assert await cache.get("U0ALICE") == "U0ALICE"
    assert calls == 1  # not asked again at once


@pytest.mark.parametrize(("kind", "removed"), [("reaction_added", False), ("reaction_removed", True)])
async def test_a_reaction_and_its_removal(inbound: Inbound, kind: str, removed: bool) -> None:
    event = await inbound.convert(
        {"type": kind, "user": "U0ALICE", "reaction": "thumbsup", "item_user": "U0BOB",
         "item": {"type": "message", "channel": "C0DESK", "ts": "1700000000.000100"},
         "event_ts": "1700000005.000200"}
    )  # fmt: skip
    assert event == Reaction(
        network="slack",
        room="C0DESK",
        native_id="reaction/1700000005.000200",
        sender=event.sender if event else None,  # type: ignore[arg-type]
        target_native_id="1700000000.000100",
        key="👍",
        occurred_at=datetime.fromtimestamp(1700000005.0002, UTC),
        removed=removed,
    )
    assert event is not None and (event.sender.native_id, event.sender.display) == ("U0ALICE", "Alice Smith")


@pytest.mark.parametrize(
    ("shortcode", "key"),
    [("+1", "👍"), ("thumbsup::skin-tone-3", "👍🏼"), ("tada", "🎉"), ("party-parrot", ":party-parrot:"),
     ("thumbsup::skin-tone-9", ":thumbsup::skin-tone-9:")],
)  # fmt: skip
def test_shortcodes_become_emoji_where_known(shortcode: str, key: str) -> None:
    assert emoji(shortcode) == key


async def test_a_forward_without_text_is_its_shared_words(inbound: Inbound) -> None:
    event = await inbound.convert(
        message(text="", attachments=[{"is_share": True, "text": "the *original*", "fallback": "x"}])
    )
    assert isinstance(event, Message) and event.relay
    assert event.text.plain == "the original"
    assert event.native is not None and event.native["attachments"][0]["is_share"]


@pytest.mark.parametrize(
    "fields",
    [
        {"subtype": "channel_topic", "text": "<@U0ALICE> set the channel topic: rates"},
        {"subtype": "pinned_item", "text": "<@U0ALICE> pinned a message"},
        {"subtype": "some_future_subtype", "text": "who knows"},
        {"text": "", "blocks": [{"type": "image", "image_url": "https://x.test/a.png"}]},
    ],
)
async def test_what_a_person_did_that_cannot_be_shown_is_archived_not_relayed(
    inbound: Inbound, fields: dict[str, Any]
) -> None:
    event = await inbound.convert(message(**fields))
    assert isinstance(event, Message) and not event.relay
    assert event.sender.native_id == "U0ALICE"
    assert event.native == message(**fields)


async def test_a_message_without_a_ts_is_not_an_event(inbound: Inbound) -> None:
    """Found by hypothesis: an empty ts made a message with no native id, which no dedup can catch."""
    assert await inbound.convert(message(ts="")) is None
