from __future__ import annotations

import re

import pytest

from connectors.matrix.ghosts import Ghosts, escape, unescape

GHOSTS = Ghosts("_sb_", "corp.test")
LOCALPART = re.compile(r"^[a-z0-9._=\-/]*$")


@pytest.mark.parametrize(
    "native",
    [
        "bob",
        "Bob[away]",
        "x_Y|z",
        "Zoë",
        "日本語",
        "U0ALICE",
        "_lead_",
        "a=b",
        "",
        "emoji 🎉",
        "dots.and-dash/slash",
    ],
)
def test_escape_round_trips_into_the_localpart_alphabet(native: str) -> None:
    escaped = escape(native)
    assert LOCALPART.match(escaped)
    assert unescape(escaped) == native


def test_escape_spells_out_the_rules() -> None:
    assert escape("Bob") == "_bob"
    assert escape("a_b") == "a__b"
    assert escape("[x]") == "=5bx=5d"
    assert escape("é") == "=c3=a9"


@pytest.mark.parametrize("bad", ["_", "_1", "=zz", "=4", "A", "=61", "=c3", "a b"])
def test_unescape_rejects_what_escape_never_produces(bad: str) -> None:
    with pytest.raises(ValueError):
        unescape(bad)


def test_distinct_ids_get_distinct_ghosts() -> None:
    ids = ["bob", "Bob", "BOB", "_bob", "b_ob", "bob_", "b=6fb"]
    assert len({GHOSTS.mxid("irc", i) for i in ids}) == len(ids)


@pytest.mark.parametrize(
    ("network", "native"),
    [
        ("irc", "bob"),
        ("irc", "_Bob"),
        ("irc_libera", "_Bob"),
        ("slack", "U0ALICE"),
        ("irc", "x_Y|z"),
        ("irc", ""),
    ],
)
def test_ghost_ids_parse_back(network: str, native: str) -> None:
    mxid = GHOSTS.mxid(network, native)
    assert mxid.startswith("@_sb_") and mxid.endswith(":corp.test")
    assert GHOSTS.owns(mxid)
    assert GHOSTS.parse(mxid) == (network, native)


def test_ghost_id_format() -> None:
    assert GHOSTS.mxid("irc", "bob") == "@_sb_irc_bob:corp.test"
    assert GHOSTS.mxid("slack", "U1") == "@_sb_slack__u1:corp.test"


def test_upper_case_network_names_are_refused() -> None:
    with pytest.raises(ValueError):
        GHOSTS.mxid("IRC", "bob")


@pytest.mark.parametrize(
    "mxid", ["@alice:corp.test", "@_sb_irc_bob:other.test", "@_sb_irc:corp.test", "@_sb_irc_=zz:corp.test"]
)
def test_others_do_not_parse_as_ghosts(mxid: str) -> None:
    assert GHOSTS.parse(mxid) is None


def test_user_regex_matches_exactly_the_namespace() -> None:
    regex = re.compile(GHOSTS.user_regex())
    assert regex.fullmatch(GHOSTS.mxid("irc", "Bob[away]"))
    assert not regex.fullmatch("@_sb_irc_bob:corpXtest")
    assert not regex.fullmatch("@alice:corp.test")
