"""Policy decisions for unknown, disabled and known senders."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.model import Identity, Message, Portal, RemoteUser
from bridge.policy import decide
from bridge.text import Text

PORTAL = Portal("trading", (("matrix", "!r:corp.test"), ("irc", "#trading")))
EVENT = Message("irc", "#trading", "x1", RemoteUser("irc", "stud_broker"), Text.of("hi"), datetime.now(UTC))


@pytest.mark.parametrize("mode", ["deny", "relay"])
def test_unmapped_sender(mode: str) -> None:
    decision = decide(None, mode, PORTAL, EVENT)
    if mode == "deny":
        assert decision.blocked and decision.rule == "unmapped"
        assert "stud_broker" in decision.reason
    else:
        assert not decision.blocked and decision.flags == ("unmapped",)


def test_disabled_person_is_refused_whatever_unmapped_says() -> None:
    carol = Identity("E1003", "Carol White", enabled=False)
    for mode in ("deny", "relay"):
        decision = decide(carol, mode, PORTAL, EVENT)
        assert decision.blocked and decision.rule == "disabled"


def test_known_enabled_person_is_relayed_unflagged() -> None:
    decision = decide(Identity("E1001", "Alice Smith"), "deny", PORTAL, EVENT)
    assert not decision.blocked and decision.flags == ()
