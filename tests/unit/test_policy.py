"""Policy decisions: who may be bridged where, files, data-loss rules, unknown and disabled senders."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bridge.detectors import card_number, luhn_ok
from bridge.model import Attachment, Delete, Edit, Identity, Message, Portal, Reaction, RemoteUser
from bridge.policy import NetworkPolicy, PolicySet, RoomPolicy, Rule, Target, decide, normalised
from bridge.text import Span, Text

PORTAL = Portal("trading", (("matrix", "!r:corp.test"), ("slack", "C1"), ("irc", "#trading")))
ALICE = Identity("E1001", "Alice Smith", "Trading", frozenset({"trading"}))
SAM = Identity("E1004", "Sam Seller", "Sales", frozenset({"sales"}))
RULES = (
    Rule("card-numbers", "block", frozenset({"slack", "irc"}), detector=card_number),
    Rule("promises", "flag", keywords=("guarantee", "risk-free")),
    Rule("tickers", "flag", pattern=re.compile(r"\$[A-Z]{1,5}\b")),
)


def _msg(network: str, sender: str, text: str, attachments: tuple[Attachment, ...] = ()) -> Message:
    room = PORTAL.room(network) or ""
    return Message(
        network,
        room,
        "x",
        RemoteUser(network, sender),
        Text.of(text),
        datetime.now(UTC),
        attachments=attachments,
    )


def _others(network: str) -> tuple[str, ...]:
    return tuple(n for n in PORTAL.networks if n != network)


def _decide(policy: PolicySet, who: Identity | None, event: Message):
    return decide(policy, who, PORTAL, event, _others(event.network))


@pytest.mark.parametrize("mode", ["deny", "relay"])
def test_unmapped_sender(mode: str) -> None:
    decision = _decide(PolicySet(unmapped=mode), None, _msg("irc", "stud_broker", "hi"))
    if mode == "deny":
        assert decision.blocked and decision.rule == "unmapped"
        assert "stud_broker" in decision.reason
    else:
        assert not decision.blocked and decision.flags == ("unmapped",)


def test_disabled_person_is_refused_whatever_unmapped_says() -> None:
    carol = Identity("E1003", "Carol White", enabled=False)
    for mode in ("deny", "relay"):
        decision = _decide(PolicySet(unmapped=mode), carol, _msg("irc", "carol", "hi"))
        assert decision.blocked and decision.rule == "disabled"


def test_known_enabled_person_is_relayed_unflagged() -> None:
    decision = _decide(PolicySet(), ALICE, _msg("irc", "alice", "hi"))
    assert not decision.blocked and decision.flags == () and decision.withheld == {}


def test_allow_groups_restricts_a_destination_and_the_network_itself() -> None:
    policy = PolicySet(networks={"slack": NetworkPolicy(allow_groups=frozenset({"sales"}))})
    from_matrix = _decide(policy, ALICE, _msg("matrix", "@alice:corp.test", "hi"))
    assert not from_matrix.blocked and set(from_matrix.withheld) == {"slack"}
    assert from_matrix.withheld["slack"].rule == "groups:slack"
    assert _decide(policy, SAM, _msg("matrix", "@sam:corp.test", "hi")).withheld == {}
    # Alice may not use Slack at all: her Slack message goes nowhere.
    from_slack = _decide(policy, ALICE, _msg("slack", "U1", "hi"))
    assert from_slack.blocked and from_slack.rule == "groups:slack"


def test_deny_groups_and_room_overrides() -> None:
    policy = PolicySet(
        networks={"irc": NetworkPolicy(deny_groups=frozenset({"trading"}))},
        rooms={"trading": RoomPolicy(NetworkPolicy(allow_groups=frozenset({"trading", "sales"})))},
    )
    decision = _decide(policy, ALICE, _msg("matrix", "@alice:corp.test", "hi"))
    assert set(decision.withheld) == {"irc"} and "trading" in decision.withheld["irc"].reason
    outsider = Identity("E9", "Out Sider", groups=frozenset({"ops"}))
    assert _decide(policy, outsider, _msg("matrix", "@o:corp.test", "hi")).blocked


def test_files_blocked_on_a_network_both_ways_and_size_limit() -> None:
    pdf = Attachment("deal.pdf", "application/pdf", 3 * 1024 * 1024, "ab" * 32)
    policy = PolicySet(networks={"irc": NetworkPolicy(files="block"), "slack": NetworkPolicy(max_file_mb=2)})
    to_all = _decide(policy, ALICE, _msg("matrix", "@alice:corp.test", "", (pdf,)))
    assert set(to_all.withheld) == {"irc", "slack"} and to_all.blocked  # nowhere left to go
    assert to_all.withheld["slack"].rule == "files:slack" and "2 MB" in to_all.withheld["slack"].reason
    from_irc = _decide(policy, ALICE, _msg("irc", "alice", "", (pdf,)))
    assert from_irc.blocked and from_irc.rule == "files:irc"
    said_on_irc = _decide(policy, ALICE, _msg("irc", "alice", "see", (pdf,)))  # the words go, not the file
    assert not said_on_irc.blocked and said_on_irc.withheld == {}
    assert {n: r.rule for n, r in said_on_irc.files_withheld.items()} == {
        "matrix": "files:irc",
        "slack": "files:irc",
    }
    room_allows = PolicySet(
        networks={"irc": NetworkPolicy(files="block")},
        rooms={"trading": RoomPolicy(NetworkPolicy(files="allow"))},
    )
    assert _decide(room_allows, ALICE, _msg("irc", "alice", "see", (pdf,))).withheld == {}


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("4111 1111 1111 1111", True),
        ("card 4111-1111-1111-1111 thanks", True),
        ("4111111111111111", True),
        ("card-4111-1111-1111-1111.png", True),
        ("4111 1111 1111 1112", False),  # fails Luhn
        ("order 1234 5678", False),
        ("call +44 20 7946 0958 00", False),
    ],
)
def test_card_number_detector(text: str, found: bool) -> None:
    assert card_number(text) is found


def test_luhn() -> None:
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")


def test_block_rule_withholds_only_its_networks_and_flags_are_collected() -> None:
    policy = PolicySet(rules=RULES)
    card = _decide(policy, ALICE, _msg("matrix", "@alice:corp.test", "pay with 4111 1111 1111 1111"))
    assert set(card.withheld) == {"slack", "irc"} and card.withheld["irc"].rule == "card-numbers"
    everywhere = _decide(policy, ALICE, _msg("slack", "U1", "4111 1111 1111 1111"))
    assert not everywhere.blocked and set(everywhere.withheld) == {"irc"}  # Matrix is internal
    flagged = _decide(policy, ALICE, _msg("matrix", "@a:corp.test", "I GUARANTEE $ACME goes up"))
    assert not flagged.blocked and flagged.flags == ("promises", "tickers")


def test_a_refused_file_is_withheld_alone_where_the_message_has_words() -> None:
    pdf = Attachment("deal.pdf", "application/pdf", 3 * 1024 * 1024, "ab" * 32)
    policy = PolicySet(
        networks={"irc": NetworkPolicy(files="block"), "slack": NetworkPolicy(max_file_mb=2)}, rules=RULES
    )
    decision = _decide(policy, ALICE, _msg("matrix", "@alice:corp.test", "see the deal", (pdf,)))
    assert not decision.blocked and decision.withheld == {}
    assert {net: r.rule for net, r in decision.files_withheld.items()} == {
        "irc": "files:irc",
        "slack": "files:slack",
    }
    assert "2 MB" in decision.files_withheld["slack"].reason
    # A data-loss rule still withholds the whole message, and then not its files alone.
    irc_blocks = PolicySet(networks={"irc": NetworkPolicy(files="block")}, rules=RULES)
    card = _decide(irc_blocks, ALICE, _msg("slack", "U1", "4111 1111 1111 1111", (pdf,)))
    assert set(card.withheld) == {"irc"} and card.withheld["irc"].rule == "card-numbers"
    assert card.files_withheld == {}
    blank = _decide(irc_blocks, ALICE, _msg("slack", "U1", "  ", (pdf,)))  # nothing to send without it
    assert set(blank.withheld) == {"irc"} and blank.files_withheld == {}


@pytest.mark.parametrize(
    ("text", "spans", "files"),
    [
        ("see the form", (Span("link", 4, 8, url="https://pay.test/?card=4111111111111111"),), ()),
        ("here", (Span("link", 0, 4, url="https://pay.test/?c=4111%201111%201111%201111"),), ()),
        ("attached", (), ("card-4111-1111-1111-1111.png",)),
        ("4111\u200b1111\u200b1111\u200b1111", (), ()),  # zero-width spaces
        ("４１１１ １１１１ １１１１ １１１１", (), ()),  # full-width digits
        ("4111\u00ad1111\u00ad1111\u00ad1111", (), ()),  # soft hyphens
        ("4111\u202e1111\u2066111\u200d1 1111", (), ()),  # bidi controls, a zero-width joiner
    ],
)
def test_data_loss_rules_read_link_targets_file_names_and_normalised_text(
    text: str, spans: tuple[Span, ...], files: tuple[str, ...]
) -> None:
    attachments = tuple(Attachment(name, "image/png", 10, "cd" * 32) for name in files)
    event = Message(
        "matrix", "!r:corp.test", "x", RemoteUser("matrix", "@a"), Text(text, spans), datetime.now(UTC),
        attachments=attachments,
    )  # fmt: skip
    decision = decide(PolicySet(rules=RULES), ALICE, PORTAL, event, ("slack", "irc"))
    assert decision.blocked and decision.rule == "card-numbers"


def test_keywords_match_through_zero_width_and_full_width_characters() -> None:
    decision = _decide(PolicySet(rules=RULES), ALICE, _msg("matrix", "@a", "ｇｕａｒ\u200bａｎｔｅｅ"))
    assert decision.flags == ("promises",)
    assert normalised("a\u200b\u00ad\u2060\ufeffb\u202c") == "ab"
    wide = Rule("wide", "flag", keywords=("ｒｉｓｋ-ｆｒｅｅ",))
    assert _decide(PolicySet(rules=(wide,)), ALICE, _msg("matrix", "@a", "Risk-free!")).flags == ("wide",)


def _edit(sender: str, network: str = "matrix") -> Edit:
    room = PORTAL.room(network) or ""
    user = RemoteUser(network, sender)
    return Edit(network, room, "e2", user, "e1", Text.of("new words"), datetime.now(UTC))


def _delete(sender: str, moderator: bool = False, network: str = "matrix") -> Delete:
    room = PORTAL.room(network) or ""
    user = RemoteUser(network, sender)
    return Delete(network, room, "d1", user, "e1", datetime.now(UTC), moderator=moderator)


ALICES = Target("matrix", "@alice:corp.test", "Alice Smith")
BOB = Identity("E1002", "Bob Jones", "Sales")


@pytest.mark.parametrize(
    ("event", "target", "rule"),
    [
        (_edit("@alice:corp.test"), ALICES, None),
        (_delete("@alice:corp.test"), ALICES, None),
        (_edit("@bob:corp.test"), ALICES, "not_author"),
        (_delete("@bob:corp.test"), ALICES, "not_author"),
        (_delete("@bob:corp.test", moderator=True), ALICES, None),
        (_edit("@bob:corp.test"), None, "unknown_target"),
        (_delete("@alice:corp.test"), None, "unknown_target"),
        # Same native id on another network is someone else.
        (_edit("@alice:corp.test", network="slack"), ALICES, "not_author"),
        # A moderator may delete; nobody may edit another's words.
        (_edit("@bob:corp.test"), Target("slack", "U0ALICE", "Alice Smith"), "not_author"),
    ],
)
def test_edits_only_from_the_sender_deletes_also_from_moderators(
    event: Edit | Delete, target: Target | None, rule: str | None
) -> None:
    decision = decide(PolicySet(), BOB, PORTAL, event, _others(event.network), target)
    assert decision.rule == rule and decision.blocked is (rule is not None)
    if rule == "not_author":
        assert "Bob Jones" in decision.reason and "Alice Smith" in decision.reason


def test_all_destinations_withheld_means_blocked_with_the_first_rule() -> None:
    portal = Portal("p", (("matrix", "!r"), ("irc", "#c")))
    policy = PolicySet(rules=RULES)
    event = Message(
        "matrix", "!r", "x", RemoteUser("matrix", "@a"), Text.of("4111 1111 1111 1111"), datetime.now(UTC)
    )
    decision = decide(policy, ALICE, portal, event, ("irc",))
    assert decision.blocked and decision.rule == "card-numbers"


def test_room_may_choose_its_rules() -> None:
    policy = PolicySet(rules=RULES, rooms={"trading": RoomPolicy(rules=frozenset({"tickers"}))})
    decision = _decide(policy, ALICE, _msg("matrix", "@a:corp.test", "guarantee 4111 1111 1111 1111 $ACME"))
    assert decision.withheld == {} and decision.flags == ("tickers",)


def test_a_reaction_key_is_read_by_data_loss_rules() -> None:
    # A Matrix reaction key is free text: it must not carry a card number past the rules.
    reaction = Reaction(
        "matrix",
        "!r:corp.test",
        "x",
        RemoteUser("matrix", "@a"),
        "e1",
        "4111 1111 1111 1111",
        datetime.now(UTC),
    )
    decision = decide(PolicySet(rules=RULES), ALICE, PORTAL, reaction, ("slack", "irc"))
    assert decision.blocked and decision.rule == "card-numbers"
