"""Policy through the router over a real archive: who may edit and delete, what data-loss
rules read, and files withheld from a network. Both engines; `archive search` reads the result."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.archive import AsyncArchive
from bridge.archive.search import Filters, search
from bridge.cli import main
from bridge.detectors import card_number
from bridge.model import Attachment, Delete, Edit, RemoteUser
from bridge.policy import NetworkPolicy, PolicySet, Rule
from bridge.text import Span, Text
from tests.e2e.test_archive_cli import CONFIG
from tests.integration.test_router_delivery import _msg, _setup

ROOM = "!room:corp.test"
CARDS = PolicySet(rules=(Rule("card-numbers", "block", frozenset({"irc"}), detector=card_number),))


def _edit(network: str, room: str, native_id: str, sender: str, target: str, text: str) -> Edit:
    user = RemoteUser(network, sender, sender)
    return Edit(network, room, native_id, user, target, Text.of(text), datetime.now(UTC))


def _delete(network: str, room: str, native_id: str, sender: str, target: str, moderator: bool) -> Delete:
    user = RemoteUser(network, sender, sender)
    return Delete(network, room, native_id, user, target, datetime.now(UTC), moderator=moderator)


def _records(archive: AsyncArchive, kind: str) -> list[dict]:
    return list(search(archive.store.engine, Filters(kinds=(kind,))))


async def _notices(router) -> None:
    """Let the router's notices (sent in the background) go out."""
    while router._notices:
        await asyncio.gather(*router._notices)


async def test_only_the_sender_edits_and_only_the_sender_or_a_moderator_deletes(
    tmp_path: Path, archive_url: str
) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url)
    await router.receive(_msg("irc", "#trading", "i1", "alice", "the spread is 12bp"))
    await delivery.idle()
    [copy] = nets["matrix"].sent  # Alice's line, as the Matrix room shows it: "matrix-1"
    [original] = _records(archive, "message")

    # Bob, on Matrix, rewrites the copy of Alice's line; then deletes it, and her original.
    forged = _edit("matrix", ROOM, "$f1", "@bob:corp.test", "matrix-1", "the spread is 99bp")
    assert (await router.receive(forged)).status == "blocked"
    assert (await router.receive(_delete("irc", "#trading", "i2", "bob", "i1", False))).status == "blocked"
    await delivery.idle()
    await _notices(router)
    assert nets["irc"].sent == [] and nets["matrix"].sent == [copy]
    edit_block, delete_block = _records(archive, "policy_block")
    assert (edit_block["rule"], edit_block["event_kind"], edit_block["text"]) == (
        "not_author",
        "edit",
        "the spread is 99bp",
    )
    assert (edit_block["sender"], edit_block["employee_id"]) == ("@bob:corp.test", "E1002")  # who tried
    assert edit_block["target_seq"] == original["seq"] and edit_block["target_native_id"] == "matrix-1"
    assert "Bob Jones may not edit a message sent by Alice Smith" in edit_block["reason"]
    assert (delete_block["rule"], delete_block["event_kind"], delete_block["employee_id"]) == (
        "not_author",
        "delete",
        "E1002",
    )
    assert delete_block["target_seq"] == original["seq"]
    assert [n[1] for n in nets["matrix"].notices] == ["@bob:corp.test"]
    assert "may not edit" in nets["matrix"].notices[0][2]
    assert _records(archive, "edit") == [] and _records(archive, "delete") == []

    # Alice's own edit goes out; a moderator's delete too; edits of what was never archived do not.
    assert (
        await router.receive(_edit("irc", "#trading", "i3", "alice", "i1", "12.5bp"))
    ).status == "archived"
    assert (await router.receive(_delete("irc", "#trading", "i4", "bob", "i1", True))).status == "archived"
    unknown = _edit("matrix", ROOM, "$f2", "@alice:corp.test", "$never-seen", "fixed")
    assert (await router.receive(unknown)).status == "blocked"
    await delivery.idle()
    assert [(o.kind, o.target_native_id) for o in nets["matrix"].sent[1:]] == [
        ("edit", "matrix-1"),
        ("delete", "matrix-1"),
    ]
    assert nets["irc"].sent == []
    [edit] = _records(archive, "edit")
    [delete] = _records(archive, "delete")
    assert edit["employee_id"] == "E1001" and delete["employee_id"] == "E1002"
    assert edit["target_seq"] == delete["target_seq"] == original["seq"]
    blocked = _records(archive, "policy_block")[-1]
    assert (blocked["rule"], blocked["event_kind"], blocked["text"]) == ("unknown_target", "edit", "fixed")
    await archive.close()


@pytest.mark.parametrize(
    ("text", "attachment"),
    [
        (Text("pay here", (Span("link", 4, 8, url="https://pay.test/?card=4111111111111111"),)), None),
        (Text.of("statement attached"), "statement_4111-1111-1111-1111.pdf"),
        (Text.of("4111\u200b1111\u200b1111\u200b1111"), None),
        (Text.of("４１１１ １１１１ １１１１ １１１１"), None),
        (Text.of("4111\u00ad1111\u00ad1111\u00ad1111"), None),
    ],
    ids=["link-target", "file-name", "zero-width", "full-width", "soft-hyphen"],
)
async def test_a_card_number_out_of_sight_is_blocked_and_archived(
    tmp_path: Path, archive_url: str, text: Text, attachment: str | None
) -> None:
    router, delivery, nets, archive = await _setup(tmp_path, archive_url, policy=CARDS)
    message = _msg("matrix", ROOM, "$c1", "@alice:corp.test", text)
    if attachment:
        message = replace(message, attachments=(Attachment(attachment, "application/pdf", 3, "ab" * 32),))
    receipt = await router.receive(message)
    await delivery.idle()
    assert receipt.status == "blocked" and nets["irc"].sent == []
    [record] = _records(archive, "policy_block")
    assert (record["rule"], record["native_id"], record["text"]) == ("card-numbers", "$c1", text.plain)
    await archive.close()


async def test_a_file_withheld_from_a_network_is_on_the_record_and_the_sender_is_told(
    tmp_path: Path, archive_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_files = PolicySet(networks={"irc": NetworkPolicy(files="block")})
    router, delivery, nets, archive = await _setup(tmp_path, archive_url, policy=no_files)
    data = b"%PDF-1.4 q3"
    pdf = Attachment("q3.pdf", "application/pdf", len(data), hashlib.sha256(data).hexdigest(), data=data)
    said = replace(_msg("matrix", ROOM, "$p1", "@alice:corp.test", "q3 numbers attached"), attachments=(pdf,))
    bare = replace(_msg("matrix", ROOM, "$p2", "@alice:corp.test", ""), attachments=(pdf,))
    receipt = await router.receive(said)
    assert receipt.status == "archived" and receipt.seq is not None
    assert (await router.receive(bare)).status == "blocked"  # nothing left for IRC without its file
    await delivery.idle()
    await _notices(router)
    [line] = nets["irc"].sent
    assert line.text.plain == "q3 numbers attached" and line.attachments == ()
    assert [n[2] for n in nets["matrix"].notices] == [
        "Your files were not relayed to irc (files may not be bridged to irc here).",
        "Your message was not relayed: files may not be bridged to irc here.",
    ]
    assert list(archive.store.files_of(receipt.seq)) == [pdf.sha256]  # the archive keeps it all the same
    await archive.close()

    (tmp_path / "directory.yaml").write_text("people: []\n")
    config = tmp_path / "switchboard.yaml"
    config.write_text(CONFIG.format(url=archive_url))
    monkeypatch.setenv("SWITCHBOARD_ACTOR", "E9001")
    assert main(["archive", "search", "-c", str(config), "--format", "json", "--kind", "message"]) == 0
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["native_id"] == "$p1" and record["files_withheld"] == {"irc": "files:irc"}
    assert record["rule"] == "files:irc"
    assert record["reason"] == "files withheld from irc: files may not be bridged to irc here"
    assert main(["archive", "search", "-c", str(config), "--format", "json", "--kind", "policy_block"]) == 0
    [refused] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (refused["native_id"], refused["rule"]) == ("$p2", "files:irc")
