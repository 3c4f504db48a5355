"""Matrix event JSON ↔ bridge events, and the connector's config and error mapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.model import Delete, Edit, Message, Outbound, RemoteUser, Sender
from bridge.text import Span, Text
from connectors.matrix import MatrixConnector
from connectors.matrix.client import error_from_reply
from connectors.matrix.config import MatrixConfig
from connectors.matrix.ghosts import Ghosts
from connectors.matrix.inbound import Inbound, media_ref
from connectors.matrix.outbound import edit_content, message_content, txn_id

GHOSTS = Ghosts("_sb_", "corp.test")
INBOUND = Inbound("matrix", GHOSTS, "@switchboard:corp.test")
ALICE = "@alice:corp.test"
OPTIONS = {
    "homeserver": "http://127.0.0.1:8008/",
    "server_name": "corp.test",
    "appservice": {
        "id": "switchboard",
        "listen": "127.0.0.1:29333",
        "as_token": "AS",
        "hs_token": "HS",
        "bot": "switchboard",
    },
}


def event(content: Any, *, sender: str = ALICE, type: str = "m.room.message", **extra: Any) -> dict:
    return {
        "type": type,
        "room_id": "!room:corp.test",
        "event_id": "$ev",
        "sender": sender,
        "origin_server_ts": 1_700_000_000_123,
        "content": content,
        **extra,
    }


def test_text_message() -> None:
    converted = INBOUND.convert(event({"msgtype": "m.text", "body": "hi"}))
    assert converted == Message(
        network="matrix",
        room="!room:corp.test",
        native_id="$ev",
        sender=RemoteUser("matrix", ALICE, ALICE),
        text=Text.of("hi"),
        occurred_at=datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC),
    )


@pytest.mark.parametrize(("msgtype", "kind"), [("m.emote", "emote"), ("m.notice", "notice")])
def test_emote_and_notice(msgtype: str, kind: str) -> None:
    converted = INBOUND.convert(event({"msgtype": msgtype, "body": "waves"}))
    assert isinstance(converted, Message)
    assert (converted.kind, converted.text.plain) == (kind, "waves")


def test_reply_strips_the_fallback() -> None:
    content = {
        "msgtype": "m.text",
        "body": "> <@bob:corp.test> old\n\nnew",
        "format": "org.matrix.custom.html",
        "formatted_body": "<mx-reply><blockquote>old</blockquote></mx-reply><b>new</b>",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$old"}},
    }
    converted = INBOUND.convert(event(content))
    assert isinstance(converted, Message)
    assert converted.reply_to == "$old"
    assert converted.text == Text("new", (Span("bold", 0, 3),))


def test_thread_reply() -> None:
    relates = {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$x"},
    }
    converted = INBOUND.convert(event({"msgtype": "m.text", "body": "in thread", "m.relates_to": relates}))
    assert isinstance(converted, Message)
    assert (converted.thread_id, converted.reply_to) == ("$root", None)
    relates["is_falling_back"] = False
    converted = INBOUND.convert(event({"msgtype": "m.text", "body": "in thread", "m.relates_to": relates}))
    assert isinstance(converted, Message)
    assert (converted.thread_id, converted.reply_to) == ("$root", "$x")


def test_edit() -> None:
    content = {
        "msgtype": "m.text",
        "body": "* fixed",
        "m.new_content": {
            "msgtype": "m.text",
            "body": "fixed",
            "format": "org.matrix.custom.html",
            "formatted_body": "<i>fixed</i>",
        },
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"},
    }
    converted = INBOUND.convert(event(content))
    assert isinstance(converted, Edit)
    assert converted.target_native_id == "$orig"
    assert converted.text == Text("fixed", (Span("italic", 0, 5),))


@pytest.mark.parametrize(("top", "content"), [({"redacts": "$gone"}, {}), ({}, {"redacts": "$gone"})])
def test_redaction_old_and_v11(top: dict, content: dict) -> None:
    converted = INBOUND.convert(event(content, type="m.room.redaction", **top))
    assert isinstance(converted, Delete)
    assert (converted.native_id, converted.target_native_id) == ("$ev", "$gone")


@pytest.mark.parametrize(
    "sender", ["@switchboard:corp.test", "@_sb_irc_bob:corp.test", "@_sb_anything:corp.test"]
)
def test_echoes_of_our_own_users_are_dropped(sender: str) -> None:
    assert INBOUND.convert(event({"msgtype": "m.text", "body": "echo"}, sender=sender)) is None
    assert INBOUND.convert(event({}, sender=sender, type="m.room.redaction", redacts="$x")) is None


def test_irrelevant_events_are_none() -> None:
    assert INBOUND.convert(event({"name": "x"}, type="m.room.name", state_key="")) is None


@pytest.mark.parametrize(
    "broken",
    [
        event({"msgtype": "m.text", "body": "x"}, origin_server_ts="yesterday"),
        event("not an object"),
        event({"msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": "m.replace"}}),
        event({}, type="m.room.redaction"),
        {"type": "m.room.message", "sender": ALICE},
    ],
)
def test_malformed_events_raise(broken: dict) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        INBOUND.convert(broken)


def test_media_reference_and_caption() -> None:
    content = {
        "msgtype": "m.image",
        "body": "cat.png",
        "url": "mxc://corp.test/abc",
        "info": {"mimetype": "image/png", "size": 3},
    }
    ref = media_ref(event(content))
    assert ref is not None and (ref.url, ref.name, ref.mimetype, ref.size) == (
        "mxc://corp.test/abc",
        "cat.png",
        "image/png",
        3,
    )
    converted = INBOUND.convert(event(content))
    assert isinstance(converted, Message) and converted.text == Text()
    captioned = INBOUND.convert(event({**content, "filename": "cat.png", "body": "look at this"}))
    assert isinstance(captioned, Message) and captioned.text.plain == "look at this"
    assert media_ref(event({"msgtype": "m.text", "body": "x"})) is None


def outbound(**fields: Any) -> Outbound:
    defaults: dict[str, Any] = {
        "key": "k1",
        "seq": 1,
        "room": "!room:corp.test",
        "sender": Sender("irc", "bob", "Bob Jones (IRC)", "Bob Jones", "IRC"),
        "kind": "message",
        "text": Text("hi Alice", (Span("mention", 3, 8, network="matrix", user=ALICE),)),
    }
    return Outbound(**{**defaults, **fields})


def test_message_content_with_reply_and_mentions() -> None:
    content = message_content(
        outbound(reply_to_native_id="$q", message_kind="emote"), network="matrix", ghosts=GHOSTS
    )
    assert content["msgtype"] == "m.emote"
    assert content["body"] == "hi Alice"
    assert content["formatted_body"] == f'hi <a href="https://matrix.to/#/{ALICE}">Alice</a>'
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$q"}}
    assert content["m.mentions"] == {"user_ids": [ALICE]}
    assert message_content(outbound(text=Text.of("@room")), network="matrix", ghosts=GHOSTS)[
        "m.mentions"
    ] == {"user_ids": []}


def test_message_in_a_thread_carries_the_thread_relation_and_a_reply_fallback() -> None:
    root_only = message_content(outbound(thread_native_id="$root"), network="matrix", ghosts=GHOSTS)
    assert root_only["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$root"},
    }
    answer = message_content(
        outbound(thread_native_id="$root", reply_to_native_id="$q"), network="matrix", ghosts=GHOSTS
    )
    assert answer["m.relates_to"]["is_falling_back"] is False
    assert answer["m.relates_to"]["m.in_reply_to"] == {"event_id": "$q"}


def test_edit_content() -> None:
    content = edit_content(outbound(kind="edit", target_native_id="$orig"), network="matrix", ghosts=GHOSTS)
    assert content["body"] == "* hi Alice"
    assert content["m.new_content"]["body"] == "hi Alice"
    assert content["m.new_content"]["m.mentions"] == {"user_ids": [ALICE]}
    assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$orig"}


def test_a_broadcast_from_another_network_mentions_the_room() -> None:
    here = Text(
        "@here look, Alice",
        (
            Span("mention", 0, 5, network="slack", user="!here", broadcast=True),
            Span("mention", 12, 17, network="matrix", user=ALICE),
        ),
    )
    content = message_content(outbound(text=here), network="matrix", ghosts=GHOSTS)
    assert content["m.mentions"] == {"user_ids": [ALICE], "room": True}
    assert content["formatted_body"] == f'@here look, <a href="https://matrix.to/#/{ALICE}">Alice</a>'
    edit = edit_content(
        outbound(kind="edit", target_native_id="$o", text=here), network="matrix", ghosts=GHOSTS
    )
    assert edit["m.mentions"] == {}  # an edit pings nobody again, but its new content still says so
    assert edit["m.new_content"]["m.mentions"] == {"user_ids": [ALICE], "room": True}
    # Its reply or edit goes back as a broadcast; a group is no broadcast and pings nobody.
    back = INBOUND.convert(event(edit["m.new_content"]))
    assert isinstance(back, Message) and back.text.mentions()[0].user == "!here"
    group = Text("@ops", (Span("mention", 0, 4, network="slack", user="!subteam^S0OPS"),))
    assert message_content(outbound(text=group), network="matrix", ghosts=GHOSTS)["m.mentions"] == {
        "user_ids": []
    }


def test_txn_ids_are_stable_and_distinct() -> None:
    assert txn_id("k1") == txn_id("k1")
    assert len({txn_id("k1"), txn_id("k2"), txn_id("k1", "file0")}) == 3


def test_error_mapping() -> None:
    limited = error_from_reply("PUT", "/x", 429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1500})
    assert (limited.retry_after, limited.permanent) == (1.5, False)
    assert error_from_reply("PUT", "/x", 429, {}, "7").retry_after == 7.0
    assert error_from_reply("PUT", "/x", 502, {}).permanent is False
    forbidden = error_from_reply("PUT", "/x?user_id=@a:b", 403, {"errcode": "M_FORBIDDEN", "error": "no"})
    assert forbidden.permanent and forbidden.errcode == "M_FORBIDDEN"
    assert "user_id" not in str(forbidden)


def test_config_and_registration() -> None:
    config = MatrixConfig.from_options(OPTIONS)
    assert (config.homeserver, config.listen_port, config.bot_mxid) == (
        "http://127.0.0.1:8008",
        29333,
        "@switchboard:corp.test",
    )
    assert MatrixConnector.registration(OPTIONS) == {
        "id": "switchboard",
        "url": "http://127.0.0.1:29333",
        "as_token": "AS",
        "hs_token": "HS",
        "sender_localpart": "switchboard",
        "namespaces": {
            "users": [{"exclusive": True, "regex": r"@_sb_.*:corp\.test"}],
            "aliases": [],
            "rooms": [],
        },
        "rate_limited": False,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"appservice": None}, "matrix.appservice"),
        ({"server_name": ""}, "matrix.server_name"),
        ({"appservice": {**OPTIONS["appservice"], "listen": "29333"}}, "matrix.appservice.listen"),
        ({"appservice": {**OPTIONS["appservice"], "hs_token": None}}, "matrix.appservice.hs_token"),
        ({"max_file_mb": 0}, "matrix.max_file_mb: expected a positive number"),
        ({"max_file_mb": "20"}, "matrix.max_file_mb: expected a positive number"),
    ],
)
def test_config_errors_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MatrixConfig.from_options({**OPTIONS, **change})


def test_max_file_mb_is_read_in_megabytes() -> None:
    assert MatrixConfig.from_options(OPTIONS).max_file_bytes == 20 * 1024 * 1024
    assert MatrixConfig.from_options({**OPTIONS, "max_file_mb": 0.5}).max_file_bytes == 512 * 1024


def _event_bytes(content: dict) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode())


def test_a_message_too_big_for_one_event_loses_its_html_then_its_tail() -> None:
    bold = Text("é" * 20_000, (Span("bold", 0, 20_000),))  # 40 KB of text, twice that with its HTML
    content = message_content(outbound(text=bold), network="matrix", ghosts=GHOSTS)
    assert content["body"] == "é" * 20_000 and "formatted_body" not in content  # plain, but whole
    huge = Text('"é' * 30_000)  # quotes count twice in JSON: 150 KB as an event
    content = message_content(outbound(text=huge), network="matrix", ghosts=GHOSTS)
    assert content["body"].endswith(" …") and huge.plain.startswith(content["body"][:-2])
    assert 50_000 < _event_bytes(content) <= 60_000  # as much as fits, and it fits
    edit = edit_content(
        outbound(kind="edit", target_native_id="$orig", text=huge), network="matrix", ghosts=GHOSTS
    )
    assert _event_bytes(edit) <= 60_000  # the text is in an edit twice
