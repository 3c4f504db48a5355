"""`switchboard archive …` end to end, in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.archive.store import ArchiveStore
from bridge.cli import main
from bridge.config import load_config
from tests.integration.test_archive_files import PDF, PNG, filled, sha
from tests.integration.test_archive_integrity import ALICE, draft, fill, signed_store, tamper

CONFIG = """\
matrix:
  homeserver: http://127.0.0.1:8008
  server_name: corp.test
  appservice: {{id: switchboard, listen: 127.0.0.1:29333, as_token: a, hs_token: h}}
networks:
  irc: {{type: irc, host: irc.example.com, port: 6697}}
directory: {{type: yaml, path: directory.yaml}}
archive:
  url: {url}
  signing_key: archive-signing.key
  public_key: archive-signing.key.pub
  checkpoint_every: 5
  retention: {{default: 0d, networks: {{matrix: 7y}}}}
rooms:
  - {{id: trading, matrix: "#trading:corp.test", irc: "#trading"}}
"""


@pytest.fixture
def config(archive_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "directory.yaml").write_text("people: []\n")
    path = tmp_path / "switchboard.yaml"
    path.write_text(CONFIG.format(url=archive_url))
    monkeypatch.delenv("SWITCHBOARD_ACTOR", raising=False)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_compliance_workflow(
    config: Path, archive_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    c = ("-c", str(config))
    code, out, _ = run(capsys, "archive", "keygen", *c)
    assert code == 0 and (tmp_path / "archive-signing.key").exists() and out[1].startswith("public key: ")
    public_key = out[1].split()[-1]
    code, _, err = run(capsys, "archive", "keygen", *c)
    assert code == 2 and len(err) == 1 and "never overwrites" in err[0]

    store = signed_store(archive_url, tmp_path)  # the bridge's side: records under the same key
    assert store.signer is not None and store.signer.public_key == public_key
    fill(store, 6)
    store.append(draft(7, "kept for seven years", network="matrix"), [])
    store.close()

    code, _, err = run(capsys, "archive", "search", *c, "--employee", "E1001")
    assert code == 2 and err == ["switchboard: who is acting? pass --as EMPLOYEE_ID or set SWITCHBOARD_ACTOR"]
    monkeypatch.setenv("SWITCHBOARD_ACTOR", "E9001")
    code, out, _ = run(capsys, "archive", "search", *c, "--employee", "E1001", "--format", "json")
    assert code == 0 and [json.loads(x)["seq"] for x in out] == [2, 4, 6, 7]
    code, out, _ = run(
        capsys, "archive", "search", *c, "--as", "E9002", "--kind", "review", "--format", "json"
    )
    reviews = [json.loads(x) for x in out]
    assert [(r["actor"], r["command"]) for r in reviews] == [("E9001", "search"), ("E9002", "search")]
    assert reviews[0]["filters"] == {"employee": "E1001"}

    code, out, _ = run(capsys, "archive", "verify", *c)
    assert code == 0 and out[0].startswith("archive intact: 9 records") and public_key in out[0]

    code, out, _ = run(capsys, "archive", "hold", "add", *c, "--employee", "E1002", "--reason", "SEC 17")
    assert code == 0 and out[0].startswith("hold ")
    code, out, _ = run(capsys, "archive", "hold", "list", *c, "--format", "json")
    assert [json.loads(x)["employee"] for x in out] == ["E1002"]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    code, out, _ = run(capsys, "archive", "purge", *c, "--before", tomorrow, "--dry-run", "--format", "json")
    plan = json.loads(out[0])
    assert code == 0 and (plan["purged"], plan["held"], plan["purge_seq"]) == ([2, 4, 6], [1, 3, 5], None)
    code, out, _ = run(capsys, "archive", "purge", *c, "--before", tomorrow)
    assert code == 0 and out[0].startswith("purged the content of 3 records (seq 2..6); 3 kept by holds")
    code, out, _ = run(capsys, "archive", "search", *c, "--kind", "message", "--format", "json")
    assert [json.loads(x)["purged"] for x in out] == [False, True, False, True, False, True, False]
    code, out, _ = run(
        capsys, "archive", "conversation", *c, "--portal", "trading", "--around", "2", "--context", "1"
    )
    assert code == 0 and len(out) == 3 and "[content purged by retention]" in out[1]
    assert run(capsys, "archive", "verify", *c)[0] == 0

    bundle = tmp_path / "bundle"
    code, out, _ = run(
        capsys, "archive", "export", *c, "--format", "eml", "--out", str(bundle), "--employee", "E1002"
    )
    assert code == 0 and out[0].startswith("exported 3 records")
    code, out, _ = run(capsys, "archive", "verify", "--bundle", str(bundle), "--key", public_key)
    assert code == 0 and out[0].startswith("bundle intact: 3 records")
    eml = bundle / "eml" / "0000000003.eml"
    eml.write_bytes(eml.read_bytes().replace(b"number 3", b"number 8"))
    code, out, _ = run(capsys, "archive", "verify", "--bundle", str(bundle), "--key", public_key)
    assert code == 1 and out == ["seq 3: eml/0000000003.eml was changed where it holds this record"]
    code, _, err = run(capsys, "archive", "export", *c, "--format", "csv", "--out", str(bundle))
    assert code == 2 and "not an empty directory" in err[0]

    store = signed_store(archive_url, tmp_path)
    tamper(store, "DELETE FROM records WHERE seq = 5")
    store.close()
    code, out, _ = run(capsys, "archive", "verify", *c)
    assert code == 1 and out == ["seq 5: missing: no record has this seq (the log jumps from seq 4 to seq 6)"]


def test_verify_holds_the_log_to_the_checkpoint_log_by_itself(
    config: Path, archive_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config.read_text().replace(
        "  checkpoint_every: 5\n", "  checkpoint_every: 5\n  checkpoint_log: worm/cp.jsonl\n"
    )
    config.write_text(text)
    (tmp_path / "worm").mkdir()
    c = ("-c", str(config))
    assert run(capsys, "archive", "keygen", *c)[0] == 0
    store = ArchiveStore.from_config(load_config(config).archive)  # the running bridge's store
    store.migrate()
    fill(store, 12)
    store.close()
    assert len((tmp_path / "worm" / "cp.jsonl").read_text().splitlines()) == 2  # signed at 5 and 10
    code, out, _ = run(capsys, "archive", "verify", *c)
    assert code == 0 and out[0].startswith("archive intact: 12 records"), out
    store = signed_store(archive_url, tmp_path)
    tamper(
        store,
        "DELETE FROM checkpoints WHERE tree_size >= 10",
        "DELETE FROM contents WHERE seq > 7",
        "DELETE FROM records WHERE seq > 7",
    )
    store.close()
    code, out, _ = run(capsys, "archive", "verify", *c)
    assert code == 1 and out[0].startswith("seq 8: missing: the checkpoint of 10 records"), out


@pytest.mark.parametrize(
    ("action", "argv", "message"),
    [
        ("search", ["--as", "E9001", "--since", "yesterday"], "--since: 'yesterday' is not an ISO date"),
        ("search", ["--as", "E9001", "--kind", "gossip"], "--kind: 'gossip' is not a record kind"),
        ("search", ["--as", "bad actor"], "--as: 'bad actor' is not an employee id"),
        ("purge", ["--as", "E9001", "--before", "soon"], "--before: 'soon' is not an ISO date"),
        ("hold release", ["--as", "E9001", "999"], "there is no active hold 999"),
        (
            "conversation",
            ["--as", "E9001", "--portal", "trading", "--around", "99"],
            "seq 99 is not a message",
        ),
        ("verify", ["--key", "nothex"], "--key: 'nothex' is neither"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    config: Path,
    archive_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    action: str,
    argv: list[str],
    message: str,
) -> None:
    store = signed_store(archive_url, tmp_path)
    fill(store, 2)
    store.close()
    code, _, err = run(capsys, "archive", *action.split(), "-c", str(config), *argv)
    assert code == 2 and len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(
    "action",
    [
        ["search"],
        ["conversation"],
        ["verify"],
        ["keygen"],
        ["hold"],
        ["hold", "add"],
        ["hold", "list"],
        ["hold", "release"],
        ["purge"],
        ["export"],
    ],
)
def test_every_command_has_help_with_an_example(
    action: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["archive", *action, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "examples:" in out and f"switchboard archive {action[0]}" in out


def test_search_and_conversation_json_list_each_records_attachments(
    config: Path, archive_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = filled(archive_url, tmp_path)  # 1: q3.pdf; 2: desk.png and the pdf again; 3: no files
    described = draft(4, "too big to keep", ALICE)
    described.content["attachments"] = [  # type: ignore[index]
        {
            "name": "film.mov",
            "mimetype": "video/quicktime",
            "size": 10**9,
            "sha256": "ab" * 32,
            "url": "mxc://x/y",
        }
    ]
    store.append(described, [])
    store.close()
    pdf = {
        "name": "q3.pdf",
        "content_type": "application/pdf",
        "size": len(PDF),
        "sha256": sha(PDF),
        "kept": True,
    }
    png = {
        "name": "desk.png",
        "content_type": "image/png",
        "size": len(PNG),
        "sha256": sha(PNG),
        "kept": True,
    }
    film = {
        "name": "film.mov",
        "content_type": "video/quicktime",
        "size": 10**9,
        "sha256": "ab" * 32,
        "kept": False,
    }
    expected = [[pdf], [png, {**pdf, "name": "q3 (copy).pdf"}], [], [film]]

    c = ("-c", str(config), "--as", "E9001")
    code, out, _ = run(capsys, "archive", "search", *c, "--kind", "message", "--format", "json")
    assert code == 0
    found = [json.loads(line) for line in out]
    assert [r["attachments"] for r in found] == expected
    code, out, _ = run(capsys, "archive", "conversation", *c, "--portal", "trading", "--format", "json")
    assert code == 0 and [json.loads(line)["attachments"] for line in out] == expected
    code, out, _ = run(capsys, "archive", "search", *c, "--kind", "review", "--format", "json")
    assert code == 0 and [json.loads(line)["attachments"] for line in out] == [[], [], []]
