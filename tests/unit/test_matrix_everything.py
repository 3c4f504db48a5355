"""Everything a Matrix user can send becomes a bridge event: locations, unknown message types,
stickers, reactions, polls, and edits that carry only their fallback."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.model import Edit, Message, Outbound, Reaction, Sender
from bridge.text import Span, Text
from connectors.matrix.ghosts import Ghosts
from connectors.matrix.inbound import Inbound, media_ref
from connectors.matrix.outbound import reaction_content

INBOUND = Inbound("matrix", Ghosts("_sb_", "corp.test"), "@switchboard:corp.test")
ALICE = "@alice:corp.test"
GHOST = "@_sb_slack_U1:corp.test"


def event(content: Any, type: str = "m.room.message", sender: str = ALICE) -> dict[str, Any]:
    return {
        "type": type,
        "room_id": "!room:corp.test",
        "event_id": "$ev",
        "sender": sender,
        "origin_server_ts": 1_700_000_000_123,
        "content": content,
    }


def test_a_location_is_its_description_and_geo_uri_as_a_link() -> None:
    content = {"msgtype": "m.location", "body": "Big Ben", "geo_uri": "geo:51.5008,0.1247;u=35"}
    message = INBOUND.convert(event(content))
    assert isinstance(message, Message)
    assert message.text == Text(
        "Big Ben\ngeo:51.5008,0.1247;u=35", (Span("link", 8, 31, url="geo:51.5008,0.1247;u=35"),)
    )
    assert message.native == {"type": "m.room.message", "content": content}
    assert message.relay


def test_a_location_whose_body_already_holds_the_uri_is_not_repeated() -> None:
    content = {"msgtype": "m.location", "body": "Location geo:1,2", "geo_uri": "geo:1,2"}
    message = INBOUND.convert(event(content))
    assert isinstance(message, Message) and message.text.plain == "Location geo:1,2"


def test_an_unknown_msgtype_is_its_body_flagged_and_kept_whole() -> None:
    content = {"msgtype": "com.example.weather", "body": "☔ rain at 3", "forecast": {"mm": 4}}
    message = INBOUND.convert(event(content))
    assert isinstance(message, Message)
    assert message.text.plain == "☔ rain at 3"
    assert message.flags == ("unknown_msgtype",)
    assert message.native == {"type": "m.room.message", "content": content}


@pytest.mark.parametrize("msgtype", [["m.text"], {"m": 1}, 7, None])
def test_a_msgtype_that_is_not_a_string_is_an_unknown_one(msgtype: Any) -> None:
    message = INBOUND.convert(event({"msgtype": msgtype, "body": "still said"}))
    assert isinstance(message, Message) and message.text.plain == "still said"
    assert message.flags == ("unknown_msgtype",)


def test_a_message_with_nothing_to_show_is_archived_but_not_relayed() -> None:
    message = INBOUND.convert(event({"msgtype": "m.key.verification.request", "methods": []}))
    assert isinstance(message, Message)
    assert message.text.plain == "" and not message.relay
    assert message.native is not None and message.native["content"]["msgtype"] == "m.key.verification.request"


def test_a_sticker_is_fetched_like_an_image() -> None:
    content = {
        "body": "a waving cat",
        "url": "mxc://corp.test/cat",
        "info": {"mimetype": "image/png", "size": 42},
    }
    ref = media_ref(event(content, type="m.sticker"))
    assert ref is not None
    assert (ref.url, ref.name, ref.mimetype, ref.size) == (
        "mxc://corp.test/cat",
        "a waving cat",
        "image/png",
        42,
    )
    message = INBOUND.convert(event(content, type="m.sticker"), ())
    assert isinstance(message, Message) and not message.relay  # nothing fetched: nothing to show
    assert message.native == {"type": "m.sticker", "content": content}


def test_a_reaction_is_a_reaction_to_its_target() -> None:
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$target", "key": "👍"}}
    reaction = INBOUND.convert(event(content, type="m.reaction"))
    assert isinstance(reaction, Reaction)
    assert (reaction.target_native_id, reaction.key, reaction.removed) == ("$target", "👍", False)
    assert reaction.sender.native_id == ALICE


def test_a_ghosts_reaction_is_an_echo() -> None:
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$target", "key": "👍"}}
    assert INBOUND.convert(event(content, type="m.reaction", sender=GHOST)) is None


@pytest.mark.parametrize(
    "content",
    [{}, {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$t"}}, {"m.relates_to": {"key": "x"}}],
)
def test_a_reaction_without_target_or_key_is_malformed(content: dict) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        INBOUND.convert(event(content, type="m.reaction"))


UNSTABLE_START = {
    "org.matrix.msc3381.poll.start": {
        "question": {"org.matrix.msc1767.text": "Lunch?"},
        "kind": "org.matrix.msc3381.poll.disclosed",
        "max_selections": 1,
        "answers": [
            {"id": "p", "org.matrix.msc1767.text": "Pizza"},
            {"id": "s", "org.matrix.msc1767.text": "Sushi"},
        ],
    },
    "org.matrix.msc1767.text": "Lunch?\n1. Pizza\n2. Sushi",
}
STABLE_START = {
    "m.poll": {
        "question": {"m.text": [{"body": "Lunch?"}]},
        "kind": "m.disclosed",
        "max_selections": 1,
        "answers": [
            {"m.id": "p", "m.text": [{"body": "Pizza"}]},
            {"m.id": "s", "m.text": [{"body": "Sushi"}]},
        ],
    },
    "m.text": [{"body": "Lunch?\n1. Pizza\n2. Sushi"}],
}


@pytest.mark.parametrize(
    ("type", "content"),
    [("org.matrix.msc3381.poll.start", UNSTABLE_START), ("m.poll.start", STABLE_START)],
)
def test_a_poll_is_its_question_and_answers(type: str, content: dict) -> None:
    message = INBOUND.convert(event(content, type=type))
    assert isinstance(message, Message)
    assert message.text.plain == "📊 Poll: Lunch?\n1. Pizza\n2. Sushi"
    assert message.relay and message.native == {"type": type, "content": content}


@pytest.mark.parametrize(
    ("type", "content"),
    [
        ("org.matrix.msc3381.poll.response", {"org.matrix.msc3381.poll.response": {"answers": ["p"]}}),
        ("m.poll.response", {"m.selections": ["p"]}),
    ],
)
def test_a_vote_is_archived_only(type: str, content: dict) -> None:
    content = {**content, "m.relates_to": {"rel_type": "m.reference", "event_id": "$poll"}}
    message = INBOUND.convert(event(content, type=type))
    assert isinstance(message, Message)
    assert message.text.plain == "🗳 voted: p"
    assert message.reply_to == "$poll"
    assert message.flags == ("poll_response",) and not message.relay
    assert message.native == {"type": type, "content": content}


def test_a_poll_end_says_so_with_its_results() -> None:
    content = {
        "m.relates_to": {"rel_type": "m.reference", "event_id": "$poll"},
        "m.text": [{"body": "The poll has ended. Top answer: Pizza"}],
        "m.poll.results": {"p": 3, "s": 1},
    }
    message = INBOUND.convert(event(content, type="m.poll.end"))
    assert isinstance(message, Message)
    assert message.text.plain == "📊 Poll ended: The poll has ended. Top answer: Pizza\np: 3\ns: 1"
    assert message.reply_to == "$poll" and message.relay


def test_an_edit_of_an_unknown_target_reaches_the_router() -> None:
    content = {
        "msgtype": "m.text",
        "body": "* fixed",
        "m.new_content": {"msgtype": "m.text", "body": "fixed"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$never-seen"},
    }
    edit = INBOUND.convert(event(content))
    assert isinstance(edit, Edit) and edit.target_native_id == "$never-seen" and edit.text.plain == "fixed"


def test_an_edit_with_only_its_fallback_is_kept_flagged() -> None:
    content = {
        "msgtype": "m.text",
        "body": "* fixed",
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$o"},
    }
    edit = INBOUND.convert(event(content))
    assert isinstance(edit, Edit)
    assert (edit.text.plain, edit.flags) == ("fixed", ("edit_fallback",))


def test_a_changed_poll_is_an_edit_of_it() -> None:
    content = {
        "org.matrix.msc1767.text": "* Lunch?",
        "m.new_content": UNSTABLE_START,
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$poll"},
    }
    edit = INBOUND.convert(event(content, type="org.matrix.msc3381.poll.start"))
    assert isinstance(edit, Edit) and edit.target_native_id == "$poll"
    assert edit.text.plain == "📊 Poll: Lunch?\n1. Pizza\n2. Sushi"


def test_a_bridged_reaction_annotates_the_destinations_copy() -> None:
    sender = Sender("slack", "U1", "Carol White (Slack)", "Carol White", "Slack")
    out = Outbound("sb1", 1, "!room:corp.test", sender, "reaction", Text.of("🎉"), target_native_id="$copy")
    assert reaction_content(out) == {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": "$copy", "key": "🎉"}
    }
    with pytest.raises(ValueError):
        reaction_content(Outbound("sb2", 2, "!room:corp.test", sender, "reaction", Text.of("🎉")))


@pytest.mark.parametrize(
    ("type", "flag"),
    [
        ("m.room.encrypted", "encrypted"),
        ("m.call.invite", "unknown_event"),
        ("com.example.ping", "unknown_event"),
    ],
)
def test_an_event_the_bridge_cannot_read_is_archived_only(type: str, flag: str) -> None:
    content = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA..."}
    message = INBOUND.convert(event(content, type=type))
    assert isinstance(message, Message) and not message.relay
    assert message.flags == (flag,) and message.native == {"type": type, "content": content}


def test_room_state_is_not_a_message() -> None:
    topic = {**event({"topic": "rates"}, type="m.room.topic"), "state_key": ""}
    assert INBOUND.convert(topic) is None
