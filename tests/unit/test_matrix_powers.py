"""Who may notify a whole Matrix room or redact others' events, by power levels and creators."""

from __future__ import annotations

import pytest

from connectors.matrix.powers import (
    RoomPowers,
    may_notify_room,
    may_redact_others,
    mentions_room,
    privileged_creators,
    without_room_mention,
)

LEVELS = {"users": {"@mod:corp.test": 50, "@old:corp.test": "75"}, "users_default": 0}


@pytest.mark.parametrize(
    ("levels", "user", "allowed"),
    [
        (LEVELS, "@mod:corp.test", True),  # 50 reaches the default notifications.room
        (LEVELS, "@old:corp.test", True),  # a level kept as a string by an old room
        (LEVELS, "@anyone:corp.test", False),
        ({**LEVELS, "notifications": {"room": 80}}, "@mod:corp.test", False),
        ({**LEVELS, "notifications": {"room": 0}}, "@anyone:corp.test", True),
        ({"users_default": 50}, "@anyone:corp.test", True),
        ({}, "@anyone:corp.test", False),  # unreadable levels: the defaults
    ],
)
def test_may_notify_room(levels: dict, user: str, allowed: bool) -> None:
    assert may_notify_room(levels, user) is allowed


@pytest.mark.parametrize(
    ("levels", "user", "allowed"),
    [
        (LEVELS, "@mod:corp.test", True),  # 50 reaches the default redact
        (LEVELS, "@old:corp.test", True),
        (LEVELS, "@anyone:corp.test", False),
        ({**LEVELS, "redact": 60}, "@mod:corp.test", False),
        ({**LEVELS, "redact": "0"}, "@anyone:corp.test", True),
        ({}, "@anyone:corp.test", False),
    ],
)
def test_may_redact_others(levels: dict, user: str, allowed: bool) -> None:
    assert may_redact_others(levels, user) is allowed


def test_creators_outrank_levels_from_room_version_12() -> None:
    v12 = {
        "sender": "@alice:corp.test",
        "content": {"room_version": "12", "additional_creators": ["@bob:corp.test"]},
    }
    v11 = {"sender": "@alice:corp.test", "content": {"room_version": "11"}}
    assert privileged_creators(v12) == {"@alice:corp.test", "@bob:corp.test"}
    assert privileged_creators(v11) == frozenset()
    assert privileged_creators({}) == frozenset()
    assert RoomPowers({}, privileged_creators(v12)).may_notify_room("@bob:corp.test")
    assert not RoomPowers({}, privileged_creators(v11)).may_notify_room("@alice:corp.test")
    assert RoomPowers({"redact": 100}, privileged_creators(v12)).may_redact_others("@alice:corp.test")
    assert not RoomPowers({}, privileged_creators(v11)).may_redact_others("@alice:corp.test")


def test_a_refused_room_mention_is_taken_back_from_the_edit_too() -> None:
    content = {
        "body": "* @room lunch",
        "m.mentions": {"room": True, "user_ids": ["@bob:corp.test"]},
        "m.new_content": {"body": "@room lunch", "m.mentions": {"room": True}},
    }
    assert mentions_room(content) and mentions_room({"m.new_content": {"m.mentions": {"room": True}}})
    taken = without_room_mention(content)
    assert not mentions_room(taken)
    assert taken["m.mentions"] == {"user_ids": ["@bob:corp.test"]} and taken["body"] == "* @room lunch"
    assert content["m.mentions"]["room"] is True  # the original is left alone
