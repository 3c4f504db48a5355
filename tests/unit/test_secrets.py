"""Issue 9, hole 10: no secret reaches a log line, whether in the message, its arguments, an
exception's traceback, the stack or a URL; from the command's first line on."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.secrets import Redactor, install_redaction, secret_values
from tests.unit.test_config import GOOD, _check

TOKEN = "xoxb-7731-secret-token"


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """What a plain stderr-like handler on the root logger writes."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        install_redaction()


def _connect(url: str) -> None:
    raise ConnectionError(f"cannot reach {url} with token {TOKEN}")


def test_a_secret_in_an_exception_is_masked_in_the_traceback(logged: io.StringIO) -> None:
    install_redaction({TOKEN})
    log = logging.getLogger("switchboard.test")
    try:
        try:
            _connect("https://slack.test/api")
        except ConnectionError as exc:
            raise RuntimeError(f"relay failed ({TOKEN[:12]}… is not the secret, {TOKEN} is)") from exc
    except RuntimeError:
        log.exception("posting with %s failed", TOKEN)
    text = logged.getvalue()
    assert TOKEN not in text
    assert "ERROR switchboard.test: posting with *** failed" in text
    assert "Traceback (most recent call last):" in text and "in _connect" in text  # the traceback is kept
    assert "ConnectionError: cannot reach https://slack.test/api with token ***" in text
    assert "RuntimeError: relay failed (xoxb-7731-se… is not the secret, *** is)" in text


def test_the_stack_is_masked_too(logged: io.StringIO) -> None:
    install_redaction({TOKEN})
    logging.getLogger("switchboard.test").warning("where am I", stack_info=True)  # xoxb-7731-secret-token
    text = logged.getvalue()
    assert "Stack (most recent call last):" in text and "# ***" in text and TOKEN not in text


def test_url_passwords_are_masked_without_being_configured(logged: io.StringIO) -> None:
    install_redaction()
    log = logging.getLogger("switchboard.test")
    log.error("cannot open postgresql+psycopg://sb:hunter2@db.corp.test/archive: refused")
    log.error("cache at redis://:pw-only@cache:6379/0 and https://host:8443/a@b stay readable")
    text = logged.getvalue()
    assert "hunter2" not in text and "pw-only" not in text
    assert "postgresql+psycopg://sb:***@db.corp.test/archive" in text
    assert "redis://:***@cache:6379/0" in text and "https://host:8443/a@b" in text


def test_short_secrets_are_masked_where_they_stand_alone() -> None:
    redact = Redactor({"pw1", TOKEN})
    assert redact("bind with pw1 failed; password=pw1;") == "bind with *** failed; password=***;"
    assert redact("ldap://cn=sb:pw1@host") == "ldap://cn=sb:***@host"
    # Inside a longer word a short secret is left alone: masking it there would show it anyway.
    assert redact("pw12 and apw1 and the upw1x") == "pw12 and apw1 and the upw1x"
    assert redact(f"a{TOKEN}b") == "a***b"  # a long one goes wherever it is
    # One character protects nothing and would erase every such word: it is not masked.
    assert Redactor({"a"})("a line with a word") == "a line with a word"


def test_the_config_names_its_secrets_including_url_and_bind_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = GOOD.replace(
        "directory:\n  type: yaml\n  path: directory.yaml\n",
        "directory:\n  type: ldap\n  url: ldap://ldap.corp.test\n  bind_dn: cn=sb,dc=corp\n"
        "  bind_password: ab1\n  allow_insecure: true\n  people_base: ou=people,dc=corp\n",
    ).replace("url: sqlite:///archive.db", "url: postgresql+psycopg://sb:p%40ss-w0rd@db.corp.test/archive")
    (tmp_path / "switchboard.yaml").write_text(text)
    (tmp_path / "hs.secret").write_text("hs-secret-value\n")
    monkeypatch.setenv("AS", "as-secret-value")
    found = secret_values(load_config(tmp_path / "switchboard.yaml"))
    assert {"as-secret-value", "hs-secret-value", "ab1", "p%40ss-w0rd", "p@ss-w0rd"} <= found


def test_the_command_masks_the_archive_password_from_its_first_line(tmp_path: Path) -> None:
    """`switchboard run` with an archive that cannot be reached: what it logs, then the crash."""
    password = "Arch1vePassw0rd"
    text = GOOD.replace("url: sqlite:///archive.db", f"url: postgresql+psycopg://sb:{password}@127.0.0.1:1/a")
    (tmp_path / "switchboard.yaml").write_text(text + "logging: {level: DEBUG}\n")
    (tmp_path / "hs.secret").write_text("hs-secret-value\n")
    (tmp_path / "directory.yaml").write_text("people: []\n")
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "run", "-c", str(tmp_path / "switchboard.yaml")],
        capture_output=True,
        text=True,
        env={"AS": "as-secret-value", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])},
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "INFO switchboard: archive: postgresql+psycopg://sb:***@127.0.0.1:1/a" in result.stderr
    assert "CRITICAL switchboard: the bridge stopped on an unexpected error" in result.stderr
    assert "Traceback (most recent call last):" in result.stderr
    assert password not in result.stderr + result.stdout, result.stderr


def test_a_config_error_quoting_a_url_masks_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = GOOD.replace("url: sqlite:///archive.db", "url: mysql://sb:My5qlPassword@db/archive")
    code, err = _check(tmp_path, text, capsys, monkeypatch)
    assert code == 2 and len(err) == 1, err
    assert (
        "archive.url: must be a sqlite:/// or postgresql+psycopg:// URL, not 'mysql://sb:***@db/archive'"
        in err[0]
    )
