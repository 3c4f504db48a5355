"""bridge.archive.access on SQLite and PostgreSQL: each read or action appends exactly one record of
its kind, with the actor (and role and client when given), and returns what the CLI prints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.archive import access, commands
from bridge.archive.audit import Actor
from bridge.archive.export.check import verify_bundle
from bridge.archive.search import Filters, search
from bridge.archive.store import ArchiveStore
from tests.e2e.test_archive_cli import CONFIG, run
from tests.integration.test_archive_files import filled
from tests.integration.test_archive_integrity import BOB, draft

OFFICER = Actor("E9001", role="reviewer", client="192.0.2.7")


@pytest.fixture
def store(archive_url: str, tmp_path: Path) -> Iterator[ArchiveStore]:
    store = filled(archive_url, tmp_path)  # seqs 1-3, with files
    store.append(draft(4, "fixed numbers", BOB, kind="edit", target="irc-2"), [])
    yield store
    store.close()


@pytest.fixture
def cli(archive_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    """`-c` for a config on the same archive, and the same actor as `--as`."""
    (tmp_path / "directory.yaml").write_text("people: []\n")
    path = tmp_path / "switchboard.yaml"
    path.write_text(CONFIG.format(url=archive_url))
    monkeypatch.delenv("SWITCHBOARD_ACTOR", raising=False)
    return ("-c", str(path), "--as", OFFICER.employee_id)


def _last(store: ArchiveStore) -> int:
    return max((r["seq"] for r in search(store.engine, Filters())), default=0)


def _appended(store: ArchiveStore, since: int) -> list[dict[str, Any]]:
    return [r for r in search(store.engine, Filters()) if r["seq"] > since]


def _one(store: ArchiveStore, since: int, kind: str) -> dict[str, Any]:
    """The one record appended after `since`, which must be of `kind` and name the officer."""
    new = _appended(store, since)
    assert [r["kind"] for r in new] == [kind]
    [record] = new
    assert (record["actor"], record["role"], record["client"], record["sender"]) == (
        "E9001",
        "reviewer",
        "192.0.2.7",
        "E9001",
    )
    return record


def test_search_is_one_review_with_its_filters_and_returns_what_the_cli_prints(
    store: ArchiveStore, cli: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    before = _last(store)
    filters = Filters(text="numbers", kinds=("message",))
    pending = access.search_records(store, OFFICER, filters)
    review = _one(store, before, "review")  # on the record before the first result is read
    found = list(pending)
    assert (review["command"], review["filters"]) == ("search", {"text": "numbers", "kinds": ["message"]})
    assert [r["seq"] for r in found] == [1, 2]
    code, out, _ = run(
        capsys, "archive", "search", *cli, "--text", "numbers", "--kind", "message", "--format", "json"
    )
    assert code == 0 and [json.loads(line) for line in out] == found


def test_conversation_is_one_review_and_returns_what_the_cli_prints(
    store: ArchiveStore, cli: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    before = _last(store)
    entries = access.read_conversation(store, OFFICER, "trading", around=2, context=0)
    review = _one(store, before, "review")
    assert (review["command"], review["portal"], review["around"]) == ("conversation", "trading", 2)
    assert [(e.message["seq"], [x["seq"] for x in e.edits]) for e in entries] == [(2, [4])]
    code, out, _ = run(
        capsys,
        "archive",
        "conversation",
        *cli,
        "--portal",
        "trading",
        "--around",
        "2",
        "--context",
        "0",
        "--format",
        "json",
    )
    assert code == 0 and [json.loads(line) for line in out] == [e.to_json() for e in entries]

    before = _last(store)
    with pytest.raises(LookupError, match="seq 99"):
        access.read_conversation(store, OFFICER, "trading", around=99)
    assert _one(store, before, "review")["around"] == 99  # the attempt is on the record too


def test_one_record_is_one_review_and_a_missing_one_is_still_recorded(
    store: ArchiveStore, cli: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    before = _last(store)
    record = access.read_record(store, OFFICER, 2)
    review = _one(store, before, "review")
    assert (review["command"], review["target_seq"]) == ("record", 2)
    assert [a["name"] for a in record["attachments"]] == ["desk.png", "q3 (copy).pdf"]
    code, out, _ = run(
        capsys, "archive", "search", *cli, "--employee", "E1002", "--kind", "message", "--format", "json"
    )
    assert code == 0 and json.loads(out[0]) == record

    before = _last(store)
    with pytest.raises(LookupError, match="no record 999"):
        access.read_record(store, OFFICER, 999)
    assert _one(store, before, "review")["target_seq"] == 999


def test_holds_are_one_record_each_and_listed_as_the_cli_lists_them(
    store: ArchiveStore, cli: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    before = _last(store)
    hold_id = access.place_hold(store, OFFICER, access.HoldRequest("SEC 17", employee="E1002"))
    hold = _one(store, before, "hold")
    assert (hold["seq"], hold["reason"], hold["employee"]) == (hold_id, "SEC 17", "E1002")
    other = access.place_hold(
        store, OFFICER, access.HoldRequest("audit", portal="trading", since="2026-01-01T00:00:00")
    )

    before = _last(store)
    listed = access.list_holds(store)
    assert _appended(store, before) == []  # the list of holds is not content: not a review
    assert [(h.id, h.actor) for h in listed] == [(hold_id, "E9001"), (other, "E9001")]
    code, out, _ = run(capsys, "archive", "hold", "list", *cli[:2], "--format", "json")
    assert code == 0 and [json.loads(line) for line in out] == [h.to_json() for h in listed]

    before = _last(store)
    released = access.release_hold(store, OFFICER, other, "done")
    release = _one(store, before, "release")
    assert (release["seq"], release["target_seq"], release["reason"]) == (released, other, "done")
    assert [h.id for h in access.list_holds(store)] == [hold_id]
    with pytest.raises(ValueError, match="no active hold"):
        access.release_hold(store, OFFICER, other)
    for bad, problem in [
        ({"reason": " "}, "must say why"),
        ({"reason": "x", "since": "2026-02-01", "until": "2026-01-01"}, "before"),
    ]:
        with pytest.raises(ValueError, match=problem):
            access.HoldRequest(employee="E1002", **bad)  # type: ignore[arg-type]


def test_export_is_one_record_and_its_bundle_verifies(store: ArchiveStore, tmp_path: Path) -> None:
    before = _last(store)
    out = tmp_path / "bundle"
    result = access.export(store, OFFICER, access.ExportRequest("jsonl", out, Filters(employee="E1002")))
    exported = _one(store, before, "export")
    assert (exported["seq"], exported["records"], exported["filters"]) == (
        result.export_seq,
        2,
        {"employee": "E1002"},
    )
    assert store.signer is not None
    bundle = verify_bundle(out, store.signer.public_key)
    assert (bundle.failure, bundle.records) == (None, 2)
    assert json.loads((out / "manifest.json").read_text())["actor"] == "E9001"
    assert access.FORMATS == commands.FORMATS  # the CLI's --format choices, kept without the import
    with pytest.raises(ValueError, match="not an export format"):
        access.ExportRequest("pdf", tmp_path / "other", Filters())


def test_a_read_without_an_actor_is_refused_and_leaves_nothing(store: ArchiveStore) -> None:
    before = _last(store)
    for who in ("", "bad actor", "E" * 65):
        with pytest.raises(ValueError, match=r"actor|employee id"):
            Actor(who)
    reads = [
        lambda: access.search_records(store, None, Filters()),  # type: ignore[arg-type]
        lambda: access.read_conversation(store, None, "trading"),  # type: ignore[arg-type]
        lambda: access.read_record(store, None, 1),  # type: ignore[arg-type]
    ]
    for read in reads:
        with pytest.raises(TypeError, match="no actor"):
            read()
    assert _appended(store, before) == []
