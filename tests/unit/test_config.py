"""Config errors: one line each, naming the file, the line and the key; exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import load_config, parse_duration

GOOD = """\
matrix:
  homeserver: http://127.0.0.1:8008
  server_name: corp.test
  appservice:
    id: switchboard
    listen: 127.0.0.1:29333
    as_token: ${AS}
    hs_token: ${file:hs.secret}
    bot: switchboard
networks:
  irc:
    type: irc
    host: irc.example.com
    port: 6697
    tls: true
directory:
  type: yaml
  path: directory.yaml
  unmapped: deny
archive:
  url: sqlite:///archive.db
  retention: {default: 7y, networks: {irc: 3y}}
rooms:
  - id: trading
    matrix: "#trading:corp.test"
    irc: "#trading"
"""


def _check(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, list[str]]:
    (tmp_path / "switchboard.yaml").write_text(text)
    (tmp_path / "hs.secret").write_text("hs-secret-value\n")
    (tmp_path / "directory.yaml").write_text("people: []\n")
    monkeypatch.setenv("AS", "as-secret-value")
    code = main(["check", "-c", str(tmp_path / "switchboard.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_good_config_loads_with_secrets_and_paths(tmp_path: Path, capsys, monkeypatch) -> None:
    code, err = _check(tmp_path, GOOD, capsys, monkeypatch)
    assert (code, err) == (0, [])
    config = load_config(tmp_path / "switchboard.yaml")
    appservice = config.matrix.options["appservice"]
    assert appservice["as_token"] == "as-secret-value" and appservice["hs_token"] == "hs-secret-value"
    assert config.archive.url == f"sqlite:///{tmp_path / 'archive.db'}"
    assert config.rooms[0].rooms == (("matrix", "#trading:corp.test"), ("irc", "#trading"))
    assert config.networks["irc"].options["tls"] is True


@pytest.mark.parametrize(
    ("change", "line", "key", "words"),
    [
        (("    tls: true", "    tls: true\n    colour: blue"), 16, "networks.irc.colour", "unknown key"),
        (
            ('    irc: "#trading"', '    irc: "#trading"\n    slack: C0123'),
            27,
            "rooms[0].slack",
            "unknown network 'slack'",
        ),
        (("${AS}", "${NOPE_NOT_SET}"), 7, "matrix.appservice.as_token", "NOPE_NOT_SET is not set"),
        (('    irc: "#trading"', '    irc: "trading room"'), 26, "rooms[0].irc", "channels start with #"),
        (("    port: 6697", "    port: many"), 14, "networks.irc.port", "must be a whole number"),
        (("    type: irc", "    type: aol"), 12, "networks.irc.type", "no connector 'aol'"),
        (("unmapped: deny", "unmapped: maybe"), 19, "directory.unmapped", "deny or relay"),
        (("irc: 3y", "irc: forever"), 22, "archive.retention.networks.irc", "not a duration"),
        (("  server_name: corp.test\n", ""), 1, "matrix.server_name", "is required"),
        (
            ("  url: sqlite:///archive.db", "  url: sqlite:///archive.db\n  checkpoint_log: cp.jsonl"),
            22,
            "archive.checkpoint_log",
            "needs archive.signing_key",
        ),
        (
            ("  url: sqlite:///archive.db", "  url: sqlite:///archive.db\n  instance: east coast"),
            22,
            "archive.instance",
            "letters, digits",
        ),
        (("rooms:\n", "delivery: {queue_size: 0}\nrooms:\n"), 23, "delivery.queue_size", "at least 1"),
        (
            ("    tls: true", "    tls: true\n    inbox_size: 0"),
            11,
            "networks.irc",
            "inbox_size must be at least 1",
        ),
        (
            (
                "rooms:\n",
                "media: {listen: 127.0.0.1:29335, public_url: https://b.corp, secret: short}\nrooms:\n",
            ),
            23,
            "media.secret",
            "at least 16 characters",
        ),
        (
            (
                "rooms:\n",
                "media: {listen: nowhere, public_url: https://b.corp, secret: long-enough-secret}\nrooms:\n",
            ),
            23,
            "media.listen",
            "expected host:port",
        ),
        (
            (
                "  url: sqlite:///archive.db",
                "  url: sqlite:///archive.db\n  signing_key: k.key\n  checkpoint_log: worm/cp.jsonl",
            ),
            23,
            "archive.checkpoint_log",
            "worm does not exist",
        ),
        # Settings a connector can only judge itself fail the check too, not the start.
        (
            ("    tls: true", "    tls: true\n    nick: 'bad nick'"),
            11,
            "networks.irc",
            "not a valid IRC nick",
        ),
        (
            ("listen: 127.0.0.1:29333", "listen: nowhere"),
            1,
            "matrix",
            "appservice.listen: expected host:port",
        ),
        (
            (
                "    tls: true",
                "    tls: true\n  slack:\n    type: slack\n    bot_token: xoxb-1\n    app_token: xapp-1\n    api_url: http://slack.corp.example/api/",
            ),
            16,
            "networks.slack",
            "api_url: the bot token would cross the network in clear text",
        ),
        # The appservice token must not cross a network in clear text.
        (
            ("http://127.0.0.1:8008", "http://matrix.corp.example:8008"),
            1,
            "matrix",
            "homeserver: the appservice token would cross the network in clear text",
        ),
        (
            ("  server_name: corp.test\n", "  server_name: corp.test\n  max_file_mb: 0\n"),
            1,
            "matrix",
            "max_file_mb: expected a positive number",
        ),
        (
            ("    tls: true", "    tls: true\n  slack:\n    type: slack\n    bot_token: xoxb-1"),
            16,
            "networks.slack",
            "receive: socket needs app_token",
        ),
    ],
)
def test_each_problem_is_one_line_naming_file_line_and_key(
    tmp_path: Path, capsys, monkeypatch, change: tuple[str, str], line: int, key: str, words: str
) -> None:
    assert change[0] in GOOD
    code, err = _check(tmp_path, GOOD.replace(change[0], change[1], 1), capsys, monkeypatch)
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"switchboard: {tmp_path / 'switchboard.yaml'}:{line}: {key}: "), err[0]
    assert words in err[0]


@pytest.mark.parametrize(
    "homeserver",
    ["https://matrix.corp.example", "http://localhost:8008", "http://[::1]:8008", "http://127.0.0.2:8008"],
)
def test_a_homeserver_over_tls_or_on_loopback_is_accepted(
    tmp_path: Path, capsys, monkeypatch, homeserver: str
) -> None:
    code, err = _check(tmp_path, GOOD.replace("http://127.0.0.1:8008", homeserver), capsys, monkeypatch)
    assert (code, err) == (0, [])


def test_allow_insecure_accepts_a_plain_http_homeserver_by_name(tmp_path: Path, capsys, monkeypatch) -> None:
    text = GOOD.replace("http://127.0.0.1:8008", "http://matrix.corp.example:8008\n  allow_insecure: true")
    code, err = _check(tmp_path, text, capsys, monkeypatch)
    assert (code, err) == (0, [])


def test_several_problems_are_all_reported(tmp_path: Path, capsys, monkeypatch) -> None:
    bad = GOOD.replace("${AS}", "${MISSING_A}").replace("    tls: true", "    tls: true\n    colour: blue")
    code, err = _check(tmp_path, bad, capsys, monkeypatch)
    assert code == 2 and len(err) == 2


def test_invalid_yaml_names_the_line(tmp_path: Path, capsys, monkeypatch) -> None:
    code, err = _check(tmp_path, GOOD.replace("  irc:\n", "  irc: [\n", 1), capsys, monkeypatch)
    assert code == 2 and len(err) == 1 and "invalid YAML" in err[0]
    assert "Traceback" not in "".join(err)


def test_missing_file(tmp_path: Path, capsys) -> None:
    code = main(["check", "-c", str(tmp_path / "nope.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "file not found" in err[0]


def test_durations() -> None:
    assert parse_duration("90d") == 90 * 86400
    assert parse_duration("7y") == 7 * 365 * 86400
    assert parse_duration("0d") == 0
    with pytest.raises(ValueError):
        parse_duration("7 years")


POLICY = """\
policy:
  notice: "This conversation is archived for compliance."
  networks:
    irc: {allow_groups: [traders], files: block}
  rules:
    - {name: card-numbers, detector: card_number, action: block, networks: [irc]}
    - {name: promises, keywords: [guarantee, risk-free], action: flag}
    - {name: tickers, regex: '\\$[A-Z]{1,5}\\b', action: flag}
"""


def test_policy_section_is_typed(tmp_path: Path, capsys, monkeypatch) -> None:
    text = GOOD + POLICY
    (tmp_path / "directory.yaml").write_text("people: []\n")
    code, err = _check(tmp_path, text, capsys, monkeypatch)
    # The empty directory has no group 'traders': check says so, naming the key.
    assert code == 2 and len(err) == 1
    assert ":30: policy.networks.irc.allow_groups[0]: unknown group 'traders'" in err[0]
    config = load_config(tmp_path / "switchboard.yaml")
    assert [r.name for r in config.policy.rules] == ["card-numbers", "promises", "tickers"]
    assert config.policy.rules[2].matches("buy $ACME now") and not config.policy.rules[2].matches("$acme")
    assert config.policy.networks["irc"].files == "block"
    assert config.policy.notice == "This conversation is archived for compliance."


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (
            ("regex: '\\$[A-Z]{1,5}\\b'", "regex: '([a-z'"),
            "policy.rules[2].regex",
            "invalid regular expression",
        ),
        (("detector: card_number", "detector: iban"), "policy.rules[0].detector", "unknown detector 'iban'"),
        (("action: block", "action: shred"), "policy.rules[0].action", "must be block or flag"),
        (("networks: [irc]}", "networks: [aol]}"), "policy.rules[0].networks[0]", "unknown network 'aol'"),
        (("    irc: {allow", "    aol: {allow"), "policy.networks.aol", "unknown network 'aol'"),
        (("files: block}", "files: maybe}"), "policy.networks.irc.files", "must be allow or block"),
        (
            ('    irc: "#trading"\n', '    irc: "#trading"\n    policy: {rules: [nonesuch]}\n'),
            "rooms[0].policy.rules[0]",
            "unknown rule 'nonesuch'",
        ),
    ],
)
def test_policy_problems(
    tmp_path: Path, capsys, monkeypatch, change: tuple[str, str], key: str, words: str
) -> None:
    text = GOOD + POLICY
    assert change[0] in text
    code, err = _check(tmp_path, text.replace(change[0], change[1], 1), capsys, monkeypatch)
    assert code == 2
    mine = [e for e in err if f": {key}: " in e]
    assert len(mine) == 1 and words in mine[0], err


def test_ldap_settings_are_checked_offline_with_their_line(tmp_path: Path, capsys, monkeypatch) -> None:
    ldap = GOOD.replace(
        "directory:\n  type: yaml\n  path: directory.yaml\n",
        "directory:\n  type: ldap\n  url: ldap://127.0.0.1:1\n  bind_dn: cn=sb,dc=corp\n"
        "  bind_password: ''\n  people_base: ou=people,dc=corp\n",
    )
    assert ldap != GOOD
    code, err = _check(tmp_path, ldap, capsys, monkeypatch)
    assert code == 2 and len(err) == 1
    assert ":20: directory.bind_password: " in err[0] and "empty" in err[0]


def test_the_shipped_example_config_checks_clean(tmp_path: Path, capsys, monkeypatch) -> None:
    """config/switchboard.example.yaml is documentation: it must stay a valid config."""
    root = Path(__file__).parents[2] / "config"
    (tmp_path / "switchboard.yaml").write_text((root / "switchboard.example.yaml").read_text())
    (tmp_path / "directory.yaml").write_text((root / "directory.example.yaml").read_text())
    for name in ("SWITCHBOARD_AS_TOKEN", "SWITCHBOARD_HS_TOKEN", "SWITCHBOARD_MEDIA_SECRET"):
        monkeypatch.setenv(name, "example-secret-of-some-length")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-example")  # Slack's token kinds are checked
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-example")
    code = main(["check", "-c", str(tmp_path / "switchboard.yaml")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "networks: matrix, irc, slack" in out.out
