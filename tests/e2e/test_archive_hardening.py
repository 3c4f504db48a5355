"""Issue 9, holes 6, 7 and 9: `switchboard archive …` against an archive someone means harm to,
on SQLite and PostgreSQL.

6: verify trusts only a key from outside the database, and holds the log to the checkpoint log,
   which every signing process writes; 7: what the archive writes is its owner's alone, whatever
   the umask; 9: exports and the terminal do not run what chat text says.
"""

from __future__ import annotations

import csv
import email
import io
import json
import os
import stat
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import text as sql

from bridge.archive.signing import Signer
from bridge.archive.store import ArchiveStore
from bridge.archive.verify import verify_archive
from bridge.cli import main
from bridge.config import load_config
from tests.e2e.test_archive_cli import CONFIG, run
from tests.integration.test_archive_files import PDF, with_files
from tests.integration.test_archive_integrity import ALICE, BOB, draft, drop_triggers, fill, signed_store

NO_KEY = (
    "switchboard: archive verify needs the archive's public key from outside the database: set "
    "archive.public_key (the .pub file `archive keygen` wrote, kept off the database host) or pass --key FILE"
)


def _config(tmp_path: Path, archive_url: str, extra: str = "", public_key: bool = True) -> Path:
    (tmp_path / "directory.yaml").write_text("people: []\n")
    text = CONFIG.format(url=archive_url)
    if not public_key:
        text = text.replace("  public_key: archive-signing.key.pub\n", "")
    text = text.replace("  checkpoint_every: 5\n", "  checkpoint_every: 5\n" + extra)
    path = tmp_path / "switchboard.yaml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_ACTOR", "E9001")


# -- hole 6: which key, and the witness ------------------------------------------------------


def test_verify_without_a_key_from_outside_the_database_exits_2(
    archive_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, archive_url, public_key=False)
    store = signed_store(archive_url, tmp_path)
    fill(store, 7)
    store.close()
    # The signing key and its .pub sit next to the config: verify still does not guess from them.
    assert (tmp_path / "archive-signing.key.pub").is_file()
    code, out, err = run(capsys, "archive", "verify", "-c", str(config))
    assert (code, out, err) == (2, [], [NO_KEY])
    pub = str(tmp_path / "archive-signing.key.pub")
    code, out, _ = run(capsys, "archive", "verify", "-c", str(config), "--key", pub)
    assert code == 0 and out[0].startswith("archive intact: 7 records, 1 signed checkpoints"), out

    bundle = tmp_path / "bundle"
    assert (
        run(capsys, "archive", "export", "-c", str(config), "--format", "jsonl", "--out", str(bundle))[0] == 0
    )
    elsewhere = tmp_path / "regulator"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no switchboard.yaml here: the bundle's own key is all there is
    code, out, err = run(capsys, "archive", "verify", "--bundle", str(bundle))
    assert (code, out, err) == (2, [], [NO_KEY])
    code, out, _ = run(capsys, "archive", "verify", "--bundle", str(bundle), "--key", pub)
    assert code == 0 and out[0].startswith("bundle intact: 7 records"), out
    # A config's archive.public_key pins the bundle's key as well; a key from anyone else fails it.
    with_key = _config(tmp_path, archive_url)
    code, out, _ = run(capsys, "archive", "verify", "--bundle", str(bundle), "-c", str(with_key))
    assert code == 0 and out[0].startswith("bundle intact: 7 records"), out
    mine = Signer.load(tmp_path / "archive-signing.key").public_key
    other = Signer.generate(tmp_path / "other.key").public_key
    code, out, _ = run(capsys, "archive", "verify", "--bundle", str(bundle), "--key", other)
    assert code == 1 and out == [f"checkpoint.json is signed by another key ({mine[:16]}…)"], out


def test_a_log_rewritten_and_re_signed_with_another_key_fails(
    archive_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, archive_url)
    store = signed_store(archive_url, tmp_path)
    fill(store, 12)
    store.close()
    assert run(capsys, "archive", "verify", "-c", str(config))[0] == 0

    # A database admin replaces the whole log with one where Bob never said number 4, and signs
    # it with a key of their own: inside the database everything agrees.
    forger = Signer.generate(tmp_path / "forger.key")
    fake = ArchiveStore(archive_url, forger, checkpoint_every=5)
    drop_triggers(fake)
    with fake.engine.begin() as conn:
        for table in ("files", "idmap", "outbox", "checkpoints", "contents", "records"):
            conn.execute(sql(f"DELETE FROM {table}"))
    people = [ALICE, BOB]
    for n in range(1, 13):
        fake.append(draft(n, "nothing to see" if n == 4 else f"hello number {n}", people[n % 2]), [])
    assert verify_archive(fake.engine, forger.public_key).failure is None  # intact under the forger's key
    fake.close()

    code, out, _ = run(capsys, "archive", "verify", "-c", str(config))
    mine = Signer.load(tmp_path / "archive-signing.key").public_key
    assert code == 1 and len(out) == 1, out
    assert out[0].startswith("seq 5: checkpoint of 5 records (signed "), out
    assert f"is signed by key {forger.public_key[:16]}…, not the trusted key {mine[:16]}…" in out[0]


def test_a_missing_checkpoint_log_fails_verification(
    archive_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, archive_url, "  checkpoint_log: worm/cp.jsonl\n")
    (tmp_path / "worm").mkdir()
    assert run(capsys, "archive", "keygen", "-c", str(config))[0] == 0
    log = tmp_path / "worm" / "cp.jsonl"
    store = ArchiveStore.from_config(load_config(config).archive)
    store.migrate()
    fill(store, 4)  # nothing signed yet: no log is no problem
    store.close()
    assert not log.exists()
    code, out, _ = run(capsys, "archive", "verify", "-c", str(config))
    assert code == 0, out
    store = ArchiveStore.from_config(load_config(config).archive)
    fill(store, 12)  # 1..4 are there already: 5..12 are added, signed at 5 and 10
    store.close()
    assert run(capsys, "archive", "verify", "-c", str(config))[0] == 0
    log.unlink()  # removed, or its storage not mounted
    code, out, _ = run(capsys, "archive", "verify", "-c", str(config))
    assert (code, out) == (
        1,
        [
            f"archive.checkpoint_log {log} is missing, though the archive has signed 10 records: "
            "it was removed or its storage is not mounted"
        ],
    )


def test_cli_commands_that_sign_write_the_checkpoint_log(
    archive_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, archive_url, "  checkpoint_log: worm/cp.jsonl\n")
    (tmp_path / "worm").mkdir()
    log = tmp_path / "worm" / "cp.jsonl"
    c = ("-c", str(config))
    assert run(capsys, "archive", "keygen", *c)[0] == 0
    store = ArchiveStore.from_config(load_config(config).archive)
    store.migrate()
    fill(store, 4)
    store.close()
    assert not log.exists()

    def logged() -> list[int]:
        return [json.loads(line)["tree_size"] for line in log.read_text().splitlines()]

    # The hold is record 5: it fills the first checkpoint, signed by the CLI process.
    code, out, _ = run(capsys, "archive", "hold", "add", *c, "--employee", "E1002", "--reason", "SEC 17")
    assert code == 0 and out == ["hold 5 placed"] and logged() == [5]
    code, _, _ = run(capsys, "archive", "search", *c, "--text", "hello", "--format", "json")  # review, 6
    assert code == 0 and logged() == [5]
    # An export signs the whole log (6 records) first, then archives itself (7).
    code, out, _ = run(capsys, "archive", "export", *c, "--format", "csv", "--out", str(tmp_path / "b"))
    assert code == 0 and logged() == [5, 6], out
    code, out, _ = run(capsys, "archive", "verify", *c)
    assert code == 0 and out[0].startswith("archive intact: 7 records, 2 signed checkpoints"), out


# -- hole 7: private files -------------------------------------------------------------------

MAKE_ARCHIVE = """
import json, os, sys
from pathlib import Path
os.umask(int(sys.argv[2], 8))
from bridge.archive.signing import Signer
from bridge.archive.store import ArchiveStore
from tests.integration.test_archive_integrity import fill
root = Path(sys.argv[3])
signer = Signer.generate(root / "archive-signing.key")
store = ArchiveStore(sys.argv[1], signer, 5, 60, root / "worm" / "cp.jsonl")
store.migrate()
fill(store, 7)
modes = {p.name: oct(p.stat().st_mode & 0o777) for p in sorted(root.glob("archive.db*"))}
store.close()
print(json.dumps(modes))
"""


def _umasked(umask: int) -> list[str]:
    """`switchboard` started from a shell with this umask, as a user's login would start it."""
    return ["sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", sys.executable, "-m", "bridge.cli"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_archive_key_log_and_exports_are_private_whatever_the_umask(
    archive_url: str, tmp_path: Path, umask: int
) -> None:
    (tmp_path / "worm").mkdir()
    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "SWITCHBOARD_ACTOR": "E9001"}
    # The archive as a process embedding it makes it (the bridge): explicit modes, any umask.
    made = subprocess.run(
        [sys.executable, "-c", MAKE_ARCHIVE, archive_url, f"{umask:o}", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    modes = json.loads(made.stdout)
    if archive_url.startswith("sqlite"):
        # The WAL and its index exist while the archive is open; SQLite gives them the file's mode.
        assert modes == {"archive.db": "0o600", "archive.db-shm": "0o600", "archive.db-wal": "0o600"}
    assert _mode(tmp_path / "archive-signing.key") == 0o600
    assert _mode(tmp_path / "archive-signing.key.pub") == 0o644  # readable, but nobody else may replace it
    assert _mode(tmp_path / "worm" / "cp.jsonl") == 0o600

    config = _config(tmp_path, archive_url, "  checkpoint_log: worm/cp.jsonl\n")
    for fmt in ("csv", "eml", "rsmf"):
        out = tmp_path / f"bundle-{fmt}"
        exported = subprocess.run(
            [*_umasked(umask), "archive", "export", "-c", str(config), "--format", fmt, "--out", str(out)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert exported.returncode == 0, exported.stderr
        paths = [out, *out.rglob("*")]
        assert {oct(_mode(p)) for p in paths if p.is_dir()} == {"0o700"}
        files = {p.relative_to(out).as_posix(): oct(_mode(p)) for p in paths if p.is_file()}
        assert len(files) >= 5 and set(files.values()) == {"0o600"}, files
    assert _mode(tmp_path / "worm" / "cp.jsonl") == 0o600


def test_an_older_world_readable_sqlite_archive_is_narrowed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    store = signed_store(url, tmp_path)
    fill(store, 2)
    store.close()
    for name in ("archive.db", "archive.db-wal", "archive.db-shm"):
        if (tmp_path / name).exists():
            (tmp_path / name).chmod(0o644)
    store = ArchiveStore(url)
    assert store.seq_for("irc", "#trading", "irc-1") == 1
    assert {oct(_mode(p)) for p in tmp_path.glob("archive.db*")} == {"0o600"}
    store.close()


# -- hole 9: exports and the terminal --------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.test","click")', "+1+1", "-2+3", "@SUM(A1:A9)", "\tcmd", "\rcmd"]


def _hostile_store(archive_url: str, tmp_path: Path) -> None:
    store = signed_store(archive_url, tmp_path)
    for n, formula in enumerate(FORMULAS, 1):
        store.append(draft(n, formula), [])
    cheat = draft(7, "see attached", BOB)
    cheat.sender_display = "=cmd|' /C calc'!A0\r\nX-Injected: yes"
    cheat.identity = None
    store.append(
        with_files(
            cheat,
            ("report\r\nBcc: everyone@corp.test\r\n.pdf", "application/pdf", PDF),
            ("résumé\x1b[31m.pdf", "application/pdf", PDF + b"2"),
        ),
        [],
    )
    store.append(draft(8, "\x1b]0;pwned\x07 hi \x1b[2J \u202egnp.exe \x9b31m\nsecond line"), [])
    store.close()


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised_and_verified(
    archive_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, archive_url)
    _hostile_store(archive_url, tmp_path)
    pub = str(tmp_path / "archive-signing.key.pub")
    out = tmp_path / "csv"
    code, _, err = run(capsys, "archive", "export", "-c", str(config), "--format", "csv", "--out", str(out))
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO((out / "records.csv").read_bytes().decode(), newline="")))
    texts = {int(r["seq"]): r["text"] for r in rows}
    assert [texts[n] for n in range(1, 7)] == ["'" + f for f in FORMULAS]
    assert (
        rows[6]["sender_display"] == "'=cmd|' /C calc'!A0\r\nX-Injected: yes" and texts[7] == "see attached"
    )
    assert all(not v.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for v in r.values())
    code, result, _ = run(capsys, "archive", "verify", "--bundle", str(out), "--key", pub)
    assert code == 0 and result[0].startswith("bundle intact: 8 records"), result

    # A bundle that carries a formula as such (an exporter that did not neutralise) is refused,
    # though every hash and signature in it is right.
    import bridge.archive.export.lines as lines

    raw = tmp_path / "raw"
    with monkeypatch.context() as m:
        m.setattr(lines, "neutralised", lambda cell: cell)
        assert (
            run(capsys, "archive", "export", "-c", str(config), "--format", "csv", "--out", str(raw))[0] == 0
        )
    assert '=HYPERLINK(""http://evil.test""' in (raw / "records.csv").read_text()
    code, result, _ = run(capsys, "archive", "verify", "--bundle", str(raw), "--key", pub)
    assert code == 1 and result == [
        "seq 1: records.csv does not hold this record as an export writes it "
        "(every cell as archived, a formula-like one led by ')"
    ], result


def test_a_file_name_with_cr_lf_exports_to_eml_without_new_headers(
    archive_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, archive_url)
    _hostile_store(archive_url, tmp_path)
    out = tmp_path / "eml"
    code, result, err = run(
        capsys, "archive", "export", "-c", str(config), "--format", "eml", "--out", str(out)
    )
    assert code == 0 and result[0].startswith("exported 8 records"), err
    raw = (out / "eml" / "0000000007.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert [line for line in raw.splitlines() if line.lower().startswith((b"bcc", b"x-injected"))] == []
    assert str(message["From"]).startswith("\"=cmd|' /C calc'!A0  X-Injected: yes\""), message["From"]
    names = [p.get_filename() for p in message.iter_attachments()]
    assert names == ["report  Bcc: everyone@corp.test  .pdf", "résumé [31m.pdf"], names
    assert b"utf-8''r%C3%A9sum%C3%A9" in raw  # RFC 2231: the name survives, encoded
    assert [p.get_content() for p in message.iter_attachments()] == [PDF, PDF + b"2"]
    pub = str(tmp_path / "archive-signing.key.pub")
    assert run(capsys, "archive", "verify", "--bundle", str(out), "--key", pub)[0] == 0


def test_search_and_conversation_escape_what_would_act_on_a_terminal(
    archive_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, archive_url)
    _hostile_store(archive_url, tmp_path)
    hostile = "\x1b]0;pwned\x07 hi \x1b[2J \u202egnp.exe \x9b31m\nsecond line"
    unsafe = ("\x1b", "\x07", "\x9b", "\u202e", "\r", "\t")

    code, out, _ = run(capsys, "archive", "search", "-c", str(config), "--text", "second")
    assert code == 0 and len(out) == 1, out
    assert not any(ch in out[0] for ch in unsafe)
    assert out[0].endswith(r"\x1b]0;pwned\x07 hi \x1b[2J \u202egnp.exe \x9b31m second line"), out
    code, out, _ = run(capsys, "archive", "search", "-c", str(config), "--text", "second", "--format", "json")
    assert code == 0 and json.loads(out[0])["text"] == hostile  # JSON keeps the archive's exact text

    code, out, _ = run(capsys, "archive", "conversation", "-c", str(config), "--portal", "trading")
    assert code == 0 and not any(ch in line for line in out for ch in unsafe), out
    assert any(r"\x1b]0;pwned\x07" in line for line in out)
    assert out[-1] == "        second line"  # the message's own line break, indented under it
    assert any("[file] report\\x0d\\x0aBcc: everyone@corp.test\\x0d\\x0a.pdf" in line for line in out), out
    assert any(r"\x09cmd" in line for line in out)
    code, out, _ = run(
        capsys, "archive", "conversation", "-c", str(config), "--portal", "trading", "--format", "json"
    )
    assert json.loads(out[-1])["text"] == hostile


def test_the_command_restores_the_callers_umask() -> None:
    before = os.umask(0o022)
    try:
        with pytest.raises(SystemExit):
            main(["archive", "verify", "--help"])
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
