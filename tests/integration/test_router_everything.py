"""Beyond plain messages, over a real archive: reactions, archive-only messages, and edits of
messages the archive never saw."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bridge.archive.search import Filters, search
from bridge.archive.verify import verify_archive
from bridge.connector import Capabilities
from bridge.model import Edit, Reaction, RemoteUser
from bridge.router import NetworkInfo
from bridge.text import Text
from tests.integration.test_router_delivery import _msg, _setup
from tests.keys import UNSIGNED

ROOM = "!room:corp.test"


def _reaction(native_id: str, key: str, *, removed: bool = False) -> Reaction:
    bob = RemoteUser("irc", "bob", "bob")
    return Reaction("irc", "#trading", native_id, bob, "irc-1", key, datetime.now(UTC), removed=removed)


async def test_a_reaction_is_one_where_the_destination_has_them_and_its_removal_deletes_it(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    router.networks["matrix"] = NetworkInfo(  # type: ignore[index]
        "matrix", "Matrix", Capabilities(edits=True, deletes=True, per_sender_display=True, reactions=True)
    )
    await router.receive(_msg("matrix", ROOM, "$m1", "@alice:corp.test", "hello there"))
    await delivery.idle()  # Alice's message is irc-1 on IRC, where Bob reacts to it
    assert (await router.receive(_reaction("r1", "👍"))).status == "archived"
    await delivery.idle()
    [reaction] = nets["matrix"].sent
    assert (reaction.kind, reaction.text.plain, reaction.target_native_id) == ("reaction", "👍", "$m1")
    assert reaction.sender.display_name == "Bob Jones (IRC)"

    await router.receive(_reaction("r2", "👍", removed=True))
    await router.receive(_reaction("r3", "👍", removed=True))  # nothing stands any more
    await delivery.idle()
    [_, removal] = nets["matrix"].sent
    assert (removal.kind, removal.target_native_id) == ("delete", "matrix-1")
    records = list(search(archive.store.engine, Filters(kinds=("reaction",))))
    message = next(iter(search(archive.store.engine, Filters(kinds=("message",)))))
    assert [(r["native_id"], r["text"], r["target_seq"]) for r in records] == [
        ("r1", "👍", message["seq"]),
        ("r2", "👍", message["seq"]),
        ("r3", "👍", message["seq"]),
    ]
    assert all(r["employee_id"] == "E1002" for r in records)
    assert verify_archive(archive.store.engine, UNSIGNED, workers=1).failures == []
    await archive.close()


async def test_a_reaction_is_a_short_line_where_the_destination_has_none(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    await router.receive(
        _msg("irc", "#trading", "i1", "bob", "the first words of a much longer message here")
    )
    await delivery.idle()  # Bob's message is matrix-1 on Matrix, where Alice reacts to it
    alice = RemoteUser("matrix", "@alice:corp.test")
    await router.receive(Reaction("matrix", ROOM, "$r1", alice, "matrix-1", "🎉", datetime.now(UTC)))
    await router.receive(Reaction("matrix", ROOM, "$r2", alice, "$unknown", "👀", datetime.now(UTC)))
    await router.receive(Reaction("matrix", ROOM, "$r3", alice, "matrix-1", "ha" * 5000, datetime.now(UTC)))
    await delivery.idle()
    lines = nets["irc"].sent
    assert [(o.kind, o.message_kind, o.text.plain) for o in lines] == [
        ("message", "emote", 'reacted 🎉 to "the first words of a much longer…"'),
        ("message", "emote", "reacted 👀 to a message"),
        ("message", "emote", f'reacted {"ha" * 20}… to "the first words of a much longer…"'),
    ]
    [long_key] = [
        r for r in search(archive.store.engine, Filters(kinds=("reaction",))) if r["native_id"] == "$r3"
    ]
    assert long_key["text"] == "ha" * 5000
    assert lines[0].sender.name == "Alice Smith"
    await archive.close()


async def test_an_archive_only_message_is_kept_and_sent_nowhere(tmp_path: Path, archive_url: str) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    vote = _msg("matrix", ROOM, "$v1", "@alice:corp.test", "🗳 voted: p")
    vote = type(vote)(**{**vote.__dict__, "relay": False, "native": {"type": "m.poll.response"}})
    assert (await router.receive(vote)).status == "archived"
    await delivery.idle()
    assert nets["irc"].sent == []
    [record] = list(search(archive.store.engine, Filters(kinds=("message",))))
    assert record["text"] == "🗳 voted: p"
    await archive.close()


async def test_an_edit_of_a_message_never_archived_is_still_archived(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    alice = RemoteUser("matrix", "@alice:corp.test")
    edit = Edit("matrix", ROOM, "$e1", alice, "$before-the-bridge", Text.of("fixed"), datetime.now(UTC))
    assert (await router.receive(edit)).status in ("archived", "blocked")
    await delivery.idle()
    [record] = [r for r in search(archive.store.engine, Filters()) if r["native_id"] == "$e1"]
    assert (record["text"], record.get("target_seq"), record["employee_id"]) == ("fixed", None, "E1001")
    assert nets["irc"].sent == []  # nothing there to correct
    await archive.close()
