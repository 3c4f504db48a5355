"""`switchboard check` on IRC settings: credentials in clear text and how senders are identified."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_config
from tests.unit.test_config import GOOD, _check

INSECURE_PASS = "    tls: false\n    password: hunter2"
INSECURE_SASL = "    tls: false\n    sasl_username: bot\n    sasl_password: hunter2"


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        (INSECURE_PASS, "password: the server password (PASS) would cross the network in clear text"),
        (INSECURE_SASL, "sasl_password: SASL would cross the network in clear text"),
        ("    tls: true\n    identify: realname", "identify must be account or nick, not 'realname'"),
    ],
)
def test_refused_in_one_line_naming_file_key_and_problem(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    words: str,
) -> None:
    code, err = _check(tmp_path, GOOD.replace("    tls: true", setting, 1), capsys, monkeypatch)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"switchboard: {tmp_path / 'switchboard.yaml'}:11: networks.irc: "), err[0]
    assert words in err[0]
    assert "hunter2" not in err[0]


@pytest.mark.parametrize("setting", [INSECURE_PASS, INSECURE_SASL])
def test_clear_text_credentials_pass_only_when_allowed_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    allowed = GOOD.replace("    tls: true", f"{setting}\n    allow_insecure: true", 1)
    assert _check(tmp_path, allowed, capsys, monkeypatch) == (0, [])
    with_tls = GOOD.replace("    tls: true", setting.replace("tls: false", "tls: true"), 1)
    assert _check(tmp_path, with_tls, capsys, monkeypatch) == (0, [])


def test_identify_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for choice in ("account", "nick"):
        config = GOOD.replace("    tls: true", f"    tls: true\n    identify: {choice}", 1)
        assert _check(tmp_path, config, capsys, monkeypatch) == (0, [])
        assert load_config(tmp_path / "switchboard.yaml").networks["irc"].options["identify"] == choice
