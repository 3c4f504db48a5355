"""The Slack inbound parser on generated events, against the Slack emulator.

`Inbound.convert` documents no errors: for any event a socket or the Events API could
hand it (any shape, any types, any text), it returns a bridge event or None, and an
event it returns names the channel it came from and a native id. Names and files are
fetched from the emulator as the connector does (users.info, conversations.info,
private downloads with the bot token).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.web.async_client import AsyncWebClient

from bridge.model import Delete, Edit, Message
from connectors.slack.files import Files
from connectors.slack.inbound import Inbound, Me
from connectors.slack.names import NameCache, user_display
from tests.fakes.slack import SlackEmulator

LOG = logging.getLogger("test.slack.properties")


class World:
    """The emulator, and an Inbound wired to it as `SlackConnector._start` wires one, on one loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.emu = self.run(SlackEmulator(post_rate=None).start())
        self.alice = self.emu.add_user("alice", "Alice Smith")
        self.channel = self.emu.add_channel("general", [self.alice.id]).id
        self.file_url = self.run(self._share())
        self.http = self.run(self._session())
        web = AsyncWebClient(
            self.emu.bot_token, base_url=self.emu.base_url, session=self.http, retry_handlers=[]
        )
        users = NameCache(lambda u: self._field(web.users_info(user=u), "user"), user_display, LOG)
        channels = NameCache(
            lambda c: self._field(web.conversations_info(channel=c), "channel"),
            lambda c: str(c.get("name")),
            LOG,
        )
        files = Files(self.http, web, self.emu.bot_token, self.emu.base_url, 1 << 20, LOG)
        me = Me(self.emu.bot_user_id, self.emu.bot_id, self.emu.team_id)
        self.inbound = Inbound("slack", me, users, channels, files)

    async def _share(self) -> str:
        """A real file on the emulator, so some generated events carry a URL that downloads."""
        shared = self.emu.user_shares_file(self.channel, self.alice.id, "a.txt", b"hello", "text/plain")
        return self.emu.ws.file_urls(self.emu.ws.files[shared.file_ids[0]])[0]

    @staticmethod
    async def _session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    @staticmethod
    async def _field(call: Any, key: str) -> Mapping[str, Any]:
        return (await call)[key]

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.http.close())
        self.run(self.emu.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = World()
    try:
        yield w
    finally:
        w.close()


def events(w: World) -> st.SearchStrategy[dict[str, Any]]:
    junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8))
    ts = st.one_of(
        st.sampled_from(["1700000000.000100", "1700000001.000200", "0", "-1", "1e400", "nan", ""]), junk
    )
    user = st.one_of(st.sampled_from([w.alice.id, "U0NOBODY", w.emu.bot_user_id, "", "USLACKBOT"]), junk)
    text = st.one_of(
        st.lists(
            st.sampled_from(
                [
                    "hi",
                    "<@" + w.alice.id + ">",
                    "<@U0NOBODY>",
                    "<#" + w.channel + ">",
                    "<#C0NONE>",
                    "*b*",
                    "_i_",
                    "`c`",
                    "```p```",
                    "&amp;",
                    "<!here>",
                    "<https://x.test|x>",
                    "\ud800",
                    " ",
                ]
            ),
            max_size=8,
        ).map("".join),
        st.text(max_size=30),
        junk,
    )
    url = st.one_of(
        st.sampled_from(
            [
                w.file_url,
                w.emu.root_url + "/files-pri/T0/F0NONE/x.txt",
                "https://evil.test/x",
                "not a url",
                "",
            ]
        ),
        junk,
    )
    file = st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "id": st.one_of(st.just("F0X"), junk),
                "name": st.one_of(st.text(max_size=10), junk),
                "title": junk,
                "mimetype": st.one_of(st.sampled_from(["text/plain", "image/png", ""]), junk),
                "size": st.one_of(st.integers(-5, 1 << 22), junk),
                "url_private": url,
                "url_private_download": url,
                "mode": st.one_of(
                    st.sampled_from(["hosted", "tombstone", "hidden_by_limit", "external"]), junk
                ),
                "is_external": junk,
            },
        ),
        junk,
    )
    flat = st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(
                st.sampled_from(["message", "user_change", "reaction_added", "app_mention"]), junk
            ),
            "subtype": st.one_of(
                st.sampled_from(
                    [
                        "thread_broadcast",
                        "file_share",
                        "me_message",
                        "bot_message",
                        "message_changed",
                        "message_deleted",
                        "channel_join",
                        "tombstone",
                    ]
                ),
                junk,
            ),
            "channel": st.one_of(st.just(w.channel), junk),
            "user": user,
            "bot_id": st.one_of(st.sampled_from([w.emu.bot_id, "B0OTHER"]), junk),
            "username": junk,
            "bot_profile": st.one_of(st.fixed_dictionaries({}, optional={"name": junk}), junk),
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "thread_ts": ts,
            "deleted_ts": ts,
            "files": st.one_of(st.lists(file, max_size=3), junk),
        },
    )
    # Most of what arrives is nearly right: a real message with a few fields replaced.
    base = {
        "type": "message",
        "channel": w.channel,
        "user": w.alice.id,
        "text": "hi",
        "ts": "1700000000.000100",
    }
    overrides = flat.map(lambda fields: {k: v for k, v in fields.items() if k not in ("channel", "subtype")})
    later = "1700000002.000300"
    plausible = st.one_of(
        overrides.map(lambda o: {**base, **o}),
        st.builds(
            lambda new, old: {
                "type": "message",
                "subtype": "message_changed",
                "channel": w.channel,
                "event_ts": later,
                "message": {**base, "text": "changed", **new},
                "previous_message": {**base, **old},
            },
            overrides,
            overrides,
        ),
        overrides.map(
            lambda old: {
                "type": "message",
                "subtype": "message_deleted",
                "channel": w.channel,
                "event_ts": later,
                "deleted_ts": base["ts"],
                "previous_message": {**base, **old},
            }
        ),
    )
    flat = st.one_of(flat, plausible)
    # A changed or deleted message carries messages inside it; a user_change carries a user.
    return st.recursive(
        flat,
        lambda inner: st.builds(
            lambda outer, new, old, person: {
                **outer,
                "message": new,
                "previous_message": old,
                "user": person,
            },
            flat,
            st.one_of(inner, st.none()),
            st.one_of(inner, st.none()),
            st.one_of(
                user, st.fixed_dictionaries({"id": user}, optional={"profile": junk, "real_name": junk})
            ),
        ),
        max_leaves=4,
    )


def test_convert_never_raises_on_any_event(world: World) -> None:
    strategy = events(world)
    seen: dict[str, int] = {}

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def check(event: dict[str, Any]) -> None:
        result = world.run(world.inbound.convert(event))
        seen[type(result).__name__] = seen.get(type(result).__name__, 0) + 1
        if result is None:
            return
        assert isinstance(result, Message | Edit | Delete)
        assert result.room == event["channel"] and isinstance(result.room, str)
        assert isinstance(result.native_id, str) and result.native_id
        assert isinstance(result.sender.native_id, str) and result.sender.native_id
        if isinstance(result, Message):
            assert result.text.plain or result.attachments
            assert all(0 <= s.start < s.end <= len(result.text.plain) for s in result.text.spans)

    check()
    # The generator reaches every outcome, so the property was tested where it matters.
    assert seen.get("NoneType") and seen.get("Message") and seen.get("Edit") and seen.get("Delete"), seen
