"""Issue 9, hole 12 (LDAP): a password bind over plain ldap:// is refused unless the config says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config import GOOD, _check

LDAP = "directory:\n  type: ldap\n  url: {url}\n  bind_dn: cn=sb,dc=corp\n  bind_password: s3cret-pw\n{extra}  people_base: ou=people,dc=corp\n"


def _ldap(url: str, extra: str = "") -> str:
    text = GOOD.replace(
        "directory:\n  type: yaml\n  path: directory.yaml\n", LDAP.format(url=url, extra=extra), 1
    )
    assert text != GOOD
    return text


def test_check_refuses_a_password_over_plain_ldap_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _check(tmp_path, _ldap("ldap://ldap.corp.example"), capsys, monkeypatch)
    assert code == 2 and len(err) == 1, err
    assert ":18: directory.url: a password bind over plain ldap:// sends the password in clear text" in err[0]
    assert "allow_insecure: true" in err[0] and "s3cret-pw" not in err[0]


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("ldap://ldap.corp.example", "  starttls: true\n"),
        ("ldaps://ldap.corp.example", ""),
        ("ldap://ldap.corp.example", "  allow_insecure: true\n"),
    ],
)
def test_check_accepts_tls_or_an_explicit_allow_insecure(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    extra: str,
) -> None:
    code, err = _check(tmp_path, _ldap(url, extra), capsys, monkeypatch)
    assert (code, err) == (0, [])


def test_allow_insecure_must_be_a_boolean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _ldap("ldap://ldap.corp.example", "  allow_insecure: sometimes\n")
    code, err = _check(tmp_path, text, capsys, monkeypatch)
    assert code == 2 and any("directory.allow_insecure" in e for e in err), err
