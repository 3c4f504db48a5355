"""Property tests: the parsers of reactions, polls, locations, stickers and unknown events
never fail in any way but the one the connectors catch, whatever JSON arrives."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import Message, Reaction
from connectors.matrix.ghosts import Ghosts
from connectors.matrix.inbound import Inbound, media_ref
from connectors.matrix.polls import end_text, response_text, start_text
from connectors.slack.emoji import emoji
from connectors.slack.inbound import Inbound as SlackInbound
from connectors.slack.inbound import Me
from connectors.slack.names import NameCache

MATRIX = Inbound("matrix", Ghosts("_sb_", "corp.test"), "@switchboard:corp.test")
KEYS = st.sampled_from(
    [
        "body", "msgtype", "geo_uri", "url", "info", "m.relates_to", "rel_type", "event_id", "key",
        "m.new_content", "m.poll", "question", "answers", "m.text", "m.selections", "m.poll.results",
        "org.matrix.msc3381.poll.start", "org.matrix.msc3381.poll.response", "org.matrix.msc1767.text",
        "item", "channel", "ts", "reaction", "user", "event_ts", "type", "attachments", "text", "fallback",
    ]
)  # fmt: skip
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.sampled_from(["m.location", "$e"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=30,
)
MATRIX_TYPES = st.sampled_from(
    [
        "m.room.message", "m.sticker", "m.reaction", "m.poll.start", "m.poll.response", "m.poll.end",
        "org.matrix.msc3381.poll.start", "org.matrix.msc3381.poll.response", "org.matrix.msc3381.poll.end",
        "m.room.encrypted", "com.example.x",
    ]
)  # fmt: skip
CAUGHT = (KeyError, TypeError, ValueError)  # what the Matrix connector skips an event for


@settings(max_examples=400, deadline=None)
@given(MATRIX_TYPES, st.dictionaries(KEYS, JSON, max_size=6))
def test_matrix_events_convert_or_raise_what_is_caught(event_type: str, content: dict[str, Any]) -> None:
    event = {
        "type": event_type,
        "room_id": "!r:corp.test",
        "event_id": "$e",
        "sender": "@alice:corp.test",
        "origin_server_ts": 1,
        "content": content,
    }
    try:
        converted = MATRIX.convert(event)
        media_ref(event)
    except CAUGHT:
        return
    assert converted is not None  # a person's event is always something on record
    if isinstance(converted, Message) and converted.native is not None:
        assert converted.native["content"] == content


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, JSON, max_size=6))
def test_poll_texts_never_raise(content: dict[str, Any]) -> None:
    for render in (start_text, response_text, end_text):
        assert isinstance(render(content), str)


@given(st.text(max_size=30))
def test_any_shortcode_is_an_emoji_or_named_as_slack_named_it(shortcode: str) -> None:
    key = emoji(shortcode)
    assert key and (not key.startswith(":") or key == f":{shortcode.strip(':')}:")


async def _no_user(user: str) -> Mapping[str, Any]:
    return {"id": user, "name": "someone"}


SLACK = SlackInbound(
    "slack",
    Me("U0BOT", "B0BOT"),
    NameCache(_no_user, lambda u: str(u.get("name")), logging.getLogger("test")),
    NameCache(_no_user, lambda c: str(c.get("name")), logging.getLogger("test")),
    files=None,  # type: ignore[arg-type]
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["reaction_added", "reaction_removed"]), st.dictionaries(KEYS, JSON, max_size=6))
def test_slack_reactions_convert_or_are_nothing(kind: str, fields: dict[str, Any]) -> None:
    converted = asyncio.run(SLACK.convert({**fields, "type": kind}))
    assert converted is None or isinstance(converted, Reaction)
