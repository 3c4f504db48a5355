"""Router and delivery over a real archive: what is archived, queued and delivered.

The networks are stood in for by a recording connector; the real connectors
are proven against real servers in test_matrix_irc_e2e.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, select
from sqlalchemy.exc import OperationalError

from bridge.archive import AsyncArchive
from bridge.archive.schema import contents, outbox
from bridge.archive.search import Filters, search
from bridge.archive.store import Appended, ArchiveStore, OutboxDraft, OutboxRow, RecordDraft
from bridge.connector import Capabilities, Connector, ConnectorContext, DeliveryError
from bridge.delivery import Delivery
from bridge.directory.yaml import YamlDirectory
from bridge.model import Attachment, Delete, Edit, Message, Outbound, Portal, RemoteUser
from bridge.policy import PolicySet
from bridge.router import NetworkInfo, PortalIndex, Router
from bridge.text import Span, Text

DIRECTORY = """people:
  - {employee_id: E1001, name: Alice Smith, department: Trading, handles: {matrix: "@alice:corp.test", irc: alice}}
  - {employee_id: E1002, name: Bob Jones, department: Sales, handles: {matrix: "@bob:corp.test", irc: bob}}
  - {employee_id: E1003, name: Carol White, enabled: false, handles: {irc: carol}}
"""
PORTAL = Portal("trading", (("matrix", "!room:corp.test"), ("irc", "#trading")))


class Recorder(Connector):
    """A network that records what it is sent and can be told to fail."""

    def __init__(self, name: str, fail_times: int = 0) -> None:
        super().__init__(ConnectorContext(name, {}, state=None))  # type: ignore[arg-type]
        self.sent: list[Outbound] = []
        self.notices: list[tuple[str, str, str]] = []
        self.fail_times = fail_times

    async def send(self, out: Outbound) -> str:
        if self.fail_times:
            self.fail_times -= 1
            raise DeliveryError("server busy", retry_after=0.01)
        self.sent.append(out)
        return f"{self.name}-{len(self.sent)}"

    async def notify(self, room: str, user: str, text: str) -> None:
        self.notices.append((room, user, text))


async def _setup(
    tmp_path: Path,
    archive_url: str,
    unmapped: str = "deny",
    irc_fail: int = 0,
    policy: PolicySet | None = None,
):
    (tmp_path / "dir.yaml").write_text(DIRECTORY)
    directory = YamlDirectory(tmp_path / "dir.yaml")
    directory.load()
    store = ArchiveStore(archive_url)
    store.migrate()
    archive = AsyncArchive(store)
    connectors = {"matrix": Recorder("matrix"), "irc": Recorder("irc", irc_fail)}
    delivery = Delivery(archive, connectors, frozenset({PORTAL.id}))
    portals = PortalIndex()
    portals.add(PORTAL)
    infos = {
        "matrix": NetworkInfo(
            "matrix", "Matrix", Capabilities(edits=True, deletes=True, per_sender_display=True)
        ),
        "irc": NetworkInfo("irc", "IRC", Capabilities()),
    }

    async def notify(network: str, room: str, user: str, text: str) -> None:
        await connectors[network].notify(room, user, text)

    policy = policy or PolicySet(unmapped=unmapped)
    router = Router(archive, directory, portals, infos, policy, delivery.enqueue, notify)
    router.ready.set()
    return router, delivery, connectors, archive


def _msg(network: str, room: str, native_id: str, sender: str, text: Text | str) -> Message:
    text = Text.of(text) if isinstance(text, str) else text
    return Message(network, room, native_id, RemoteUser(network, sender, sender), text, datetime.now(UTC))


async def test_message_is_archived_once_and_delivered_with_names(tmp_path: Path, archive_url: str) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    receipt = await router.receive(_msg("irc", "#trading", "i1", "bob", "hello"))
    again = await router.receive(_msg("irc", "#trading", "i1", "bob", "hello"))
    assert receipt.status == "archived" and again.status == "duplicate"
    await delivery.idle()
    [out] = nets["matrix"].sent
    assert out.sender.display_name == "Bob Jones (IRC)" and out.room == "!room:corp.test"
    assert nets["irc"].sent == []
    records = list(search(archive.store.engine, Filters()))
    assert [(r["kind"], r["network"], r["employee_id"]) for r in records] == [
        ("message", "irc", "E1002"),
        ("delivery", "matrix", None),
    ]
    assert records[1]["native_id"] == "matrix-1" and records[1]["target_seq"] == records[0]["seq"]
    # The delivered copy echoing back from Matrix is recognised and not relayed again.
    echo = await router.receive(
        _msg("matrix", "!room:corp.test", "matrix-1", "@_sb_irc_bob:corp.test", "hello")
    )
    assert echo.status == "duplicate"
    await archive.close()


async def test_unmapped_and_disabled_are_blocked_archived_and_told(tmp_path: Path, archive_url: str) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    stranger = await router.receive(_msg("irc", "#trading", "i1", "stud_broker", "buy now"))
    carol = await router.receive(_msg("irc", "#trading", "i2", "carol", "still here"))
    assert (stranger.status, carol.status) == ("blocked", "blocked")
    await asyncio.sleep(0.05)
    await delivery.idle()
    assert nets["matrix"].sent == []
    assert [n[1] for n in nets["irc"].notices] == ["stud_broker", "carol"]
    blocks = list(search(archive.store.engine, Filters(kinds=("policy_block",))))
    assert [(b["rule"], b["text"]) for b in blocks] == [("unmapped", "buy now"), ("disabled", "still here")]
    await archive.close()


async def test_unmapped_relay_flags(tmp_path: Path, archive_url: str) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url, unmapped="relay")
    await router.receive(_msg("irc", "#trading", "i1", "stud_broker", "hi"))
    await delivery.idle()
    assert nets["matrix"].sent[0].sender.display_name == "stud_broker (IRC)"
    [flagged] = list(search(archive.store.engine, Filters(flag="unmapped")))
    assert flagged["sender"] == "stud_broker" and flagged["employee_id"] is None
    await archive.close()


async def test_mentions_follow_the_person_to_each_network(tmp_path: Path, archive_url: str) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    text = Text("Bob Jones: look", (Span("mention", 0, 9, network="matrix", user="@bob:corp.test"),))
    await router.receive(_msg("matrix", "!room:corp.test", "$e1", "@alice:corp.test", text))
    await delivery.idle()
    [out] = nets["irc"].sent
    assert out.text.plain == "bob: look"
    assert out.text.spans[0].network == "irc" and out.text.spans[0].user == "bob"
    await archive.close()


async def test_retry_keeps_order_and_edits_map_to_delivered_ids(tmp_path: Path, archive_url: str) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url, irc_fail=3)
    for i in range(5):
        await router.receive(_msg("matrix", "!room:corp.test", f"$e{i}", "@alice:corp.test", f"line {i}"))
    edit = Edit(
        "matrix",
        "!room:corp.test",
        "$e9",
        RemoteUser("matrix", "@alice:corp.test"),
        "$e2",
        Text.of("line 2 fixed"),
        datetime.now(UTC),
    )
    await router.receive(edit)
    delete = Delete("irc", "#trading", "i9", RemoteUser("irc", "alice"), "nonexistent", datetime.now(UTC))
    assert (await router.receive(delete)).status == "blocked"  # archived as attempted: nothing to delete
    await delivery.idle()
    irc = nets["irc"].sent
    assert [o.text.plain for o in irc] == [f"line {i}" for i in range(5)] + ["line 2 fixed"]
    assert irc[-1].kind == "edit" and irc[-1].target_native_id == "irc-3"
    [edit_record] = list(search(archive.store.engine, Filters(kinds=("edit",))))
    assert edit_record["target_native_id"] == "$e2"
    await archive.close()


async def test_restart_resumes_pending_rows_in_order(tmp_path: Path, archive_url: str) -> None:
    router, delivery, _nets, archive = await _setup(tmp_path, archive_url)
    await delivery.stop()  # deliveries are queued but nothing is sent, as if the bridge died
    router.enqueue = lambda rows: None
    for i in range(3):
        await router.receive(_msg("matrix", "!room:corp.test", f"$e{i}", "@alice:corp.test", f"m{i}"))
    await archive.close()
    _router2, delivery2, nets2, archive2 = await _setup(tmp_path, archive_url)
    assert await delivery2.resume() == 3
    await delivery2.idle()
    assert [o.text.plain for o in nets2["irc"].sent] == ["m0", "m1", "m2"]
    assert await delivery2.resume() == 0
    await archive2.close()


async def test_replies_become_quotes_where_the_destination_has_no_threads(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    original = "the original question is long enough to be cut somewhere sensible"
    await router.receive(_msg("irc", "#trading", "i1", "bob", original))
    answer = Message(
        "matrix",
        "!room:corp.test",
        "$a1",
        RemoteUser("matrix", "@alice:corp.test"),
        Text.of("yes, done"),
        datetime.now(UTC),
        reply_to="matrix-1",  # Bob's message as Alice saw it on Matrix
    )
    await delivery.idle()
    await router.receive(answer)
    await delivery.idle()
    [quoted] = nets["irc"].sent
    assert quoted.text.plain == "↪ Bob Jones: the original question is long enough to… | yes, done"
    assert quoted.reply_to_native_id is not None  # IRC ignores it; the id was still translated
    await archive.close()


async def test_file_bytes_are_archived_with_the_message_and_delivered_after_a_restart(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, _nets, archive = await _setup(tmp_path, archive_url)
    await delivery.stop()  # the bridge dies before it delivers
    router.enqueue = lambda rows: None
    data = bytes(range(256)) * 40
    sha = hashlib.sha256(data).hexdigest()
    photo = Attachment("desk.png", "image/png", len(data), sha, "mxc://corp.test/desk", data)
    too_big = Attachment("huge.mov", "video/quicktime", 10**10, "", "mxc://corp.test/huge")
    message = _msg("matrix", "!room:corp.test", "$f1", "@alice:corp.test", "my desk")
    receipt = await router.receive(replace(message, attachments=(photo, too_big)))
    await archive.close()
    _router2, delivery2, nets2, archive2 = await _setup(tmp_path, archive_url)
    assert archive2.store.files_of(receipt.seq) == {sha: data}
    [record] = list(search(archive2.store.engine, Filters(kinds=("message",))))
    with archive2.store.engine.connect() as conn:
        body = conn.execute(select(contents.c.body).where(contents.c.seq == record["seq"])).scalar()
    listed = json.loads(body)["attachments"]
    assert [(a["name"], a.get("stored")) for a in listed] == [("desk.png", True), ("huge.mov", None)]
    assert record["attachments"] == [  # as `archive search --format json` lists them
        {"name": "desk.png", "content_type": "image/png", "size": len(data), "sha256": sha, "kept": True},
        {"name": "huge.mov", "content_type": "video/quicktime", "size": 10**10, "sha256": "", "kept": False},
    ]
    assert await delivery2.resume() == 1
    await delivery2.idle()
    [out] = nets2["irc"].sent
    assert [(a.name, a.data) for a in out.attachments] == [("desk.png", data), ("huge.mov", None)]
    await archive2.close()


async def test_bridges_sharing_an_archive_resume_only_their_own_portals(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, _nets, archive = await _setup(tmp_path, archive_url)
    await delivery.stop()  # this bridge dies with a row pending …
    router.enqueue = lambda rows: None
    await router.receive(_msg("matrix", "!room:corp.test", "$t1", "@alice:corp.test", "for trading"))
    # … and so does the bridge process that owns the `desk` room, on the same archive.
    await _committed_elsewhere(
        archive, "desk", "irc", "#desk", "d1", OutboxDraft("matrix", "!desk:corp.test", {"kind": "message"})
    )
    await archive.close()
    _router2, delivery2, nets2, archive2 = await _setup(tmp_path, archive_url)
    assert await delivery2.resume() == 1
    await delivery2.idle()
    assert [o.text.plain for o in nets2["irc"].sent] == ["for trading"] and nets2["matrix"].sent == []
    assert [r.room for r in archive2.store.pending({"desk"})] == ["!desk:corp.test"]  # left to its owner
    await archive2.close()


async def test_a_sent_row_whose_delivery_cannot_be_recorded_yet_is_not_sent_again(
    tmp_path: Path, archive_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    store = archive.store
    record = store.delivered_in
    outage = {"left": 3}

    def archive_down_for_a_moment(conn: Connection, row: OutboxRow, native_id: str) -> int | None:
        if outage["left"]:  # what an unreachable database raises, right after the send succeeded
            outage["left"] -= 1
            raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))
        return record(conn, row, native_id)

    monkeypatch.setattr(store, "delivered_in", archive_down_for_a_moment)
    await router.receive(_msg("irc", "#trading", "i1", "bob", "sent once"))
    await delivery.idle()
    assert [o.text.plain for o in nets["matrix"].sent] == ["sent once"]  # not three more times
    assert outage["left"] == 0
    [done] = list(search(store.engine, Filters(kinds=("delivery",))))
    assert done["native_id"] == "matrix-1"
    assert await delivery.resume() == 0  # nothing left pending either
    await archive.close()


async def test_a_committed_row_no_worker_holds_is_found_and_sent_once(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    slow = asyncio.Event()
    send = nets["irc"].send

    async def held_up(out: Outbound) -> str:
        await slow.wait()  # the network takes its time with the first row
        return await send(out)

    nets["irc"].send = held_up  # type: ignore[method-assign]
    await router.receive(_msg("matrix", "!room:corp.test", "$s1", "@alice:corp.test", "first"))
    # A commit whose answer was lost: the rows are in the outbox, no worker was told.
    payload = {
        "kind": "message",
        "sender": {
            "network": "matrix",
            "native_id": "@alice:corp.test",
            "display_name": "Alice Smith (Matrix)",
            "name": "Alice Smith",
            "network_label": "Matrix",
        },
        "room": "#trading",
        "text": {"plain": "committed, never queued", "spans": []},
        "source": ["matrix", "!room:corp.test"],
    }
    await _committed_elsewhere(
        archive, "trading", "matrix", "!room:corp.test", "$s2", OutboxDraft("irc", "#trading", payload)
    )
    assert await delivery.resume() == 1  # the sweep finds the lost row, not the one being sent
    assert await delivery.resume() == 0  # and does not queue either twice
    slow.set()
    await delivery.idle()
    assert [o.text.plain for o in nets["irc"].sent] == ["first", "committed, never queued"]
    await archive.close()


async def test_an_unreadable_outbox_row_is_failed_on_record_and_the_room_goes_on(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    # e.g. written by a newer version of the bridge before a downgrade: no sender in the payload
    appended = await _committed_elsewhere(
        archive,
        "trading",
        "matrix",
        "!room:corp.test",
        "$odd",
        OutboxDraft("irc", "#trading", {"kind": "message", "text": {"plain": "?"}}),
    )
    delivery.enqueue(appended.outbox)
    await router.receive(_msg("matrix", "!room:corp.test", "$after", "@alice:corp.test", "after the odd one"))
    await delivery.idle()
    assert [o.text.plain for o in nets["irc"].sent] == ["after the odd one"]
    with archive.store.engine.connect() as conn:
        status, error = conn.execute(
            select(outbox.c.status, outbox.c.last_error).where(outbox.c.id == appended.outbox[0].id)
        ).one()
    assert status == "failed" and "unreadable payload" in error and "sender" in error
    await archive.close()


async def _committed_elsewhere(
    archive: AsyncArchive, portal: str, network: str, room: str, native_id: str, row: OutboxDraft
) -> Appended:
    """An event and its outbox row committed without this router: by another bridge process on
    the same archive, or by a commit whose answer never came back."""
    draft = RecordDraft(
        kind="message",
        occurred_at=datetime.now(UTC),
        network=network,
        room=room,
        native_id=native_id,
        portal=portal,
    )
    appended = await archive.call(archive.store.append, draft, [row])
    assert appended is not None
    return appended


async def test_after_a_restart_only_the_row_each_room_was_sending_may_have_been_sent(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, _nets, archive = await _setup(tmp_path, archive_url)
    await delivery.stop()  # the bridge dies with every row pending
    router.enqueue = lambda rows: None
    for i in range(2):
        await router.receive(_msg("matrix", "!room:corp.test", f"$e{i}", "@alice:corp.test", f"to irc {i}"))
        await router.receive(_msg("irc", "#trading", f"i{i}", "bob", f"to matrix {i}"))
    await archive.close()
    _router2, delivery2, nets2, archive2 = await _setup(tmp_path, archive_url)
    assert await delivery2.resume() == 4
    await delivery2.idle()
    for net, first in (("irc", "to irc 0"), ("matrix", "to matrix 0")):
        sent = nets2[net].sent
        assert sent[0].text.plain == first
        # A room's worker sends one row at a time: its oldest pending row is the only one in doubt.
        captured = archive2.store.captured_at(sent[0].seq)
        assert captured is not None and sent[0].maybe_sent_since == captured
        assert [o.maybe_sent_since for o in sent[1:]] == [None]
    await archive2.close()


async def test_a_send_that_failed_unknowably_is_retried_as_maybe_sent_and_a_rate_limit_is_not(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    failures = [DeliveryError("server busy", retry_after=0.01), DeliveryError("post: TimeoutError")]
    attempts: list[Outbound] = []
    send = nets["irc"].send

    async def flaky(out: Outbound) -> str:
        attempts.append(out)
        if failures:
            raise failures.pop(0)
        return await send(out)

    nets["irc"].send = flaky  # type: ignore[method-assign]
    await router.receive(_msg("matrix", "!room:corp.test", "$t1", "@alice:corp.test", "timed out"))
    await delivery.idle()
    # Fresh: certainly not sent; after a rate limit: still not; after a timeout: maybe.
    assert [o.maybe_sent_since is not None for o in attempts] == [False, False, True]
    await router.receive(_msg("matrix", "!room:corp.test", "$t2", "@alice:corp.test", "next"))
    await delivery.idle()
    assert attempts[-1].text.plain == "next" and attempts[-1].maybe_sent_since is None
    assert [o.text.plain for o in nets["irc"].sent] == ["timed out", "next"]
    await archive.close()
