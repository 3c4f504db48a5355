"""Byte-aware splitting, wire safety, outbound lines and pacing for IRC."""

from __future__ import annotations

import unicodedata

import pytest

from bridge.model import Outbound, Sender
from bridge.text import Span, Text
from connectors.irc.outbound import Templates, notice_payloads, payloads
from connectors.irc.settings import IrcSettings
from connectors.irc.split import frame, split_line, utf8_len, wire_safe
from connectors.irc.throttle import TokenBucket

MASK = "switchboard!~switchboard@127.0.0.1"
ALICE = Sender("matrix", "@alice:corp.test", "Alice Smith", "Alice Smith", "Matrix", "E1001")


def budget_for(target: str, mask: str = MASK) -> int:
    return 510 - utf8_len(f":{mask} PRIVMSG {target} :")


def outbound(
    text: str | Text, kind: str = "message", message_kind: str = "text", sender: Sender = ALICE
) -> Outbound:
    body = text if isinstance(text, Text) else Text.of(text)
    return Outbound("key-1", 1, "#room", sender, kind, body, message_kind)  # type: ignore[arg-type]


def test_wire_safe_neutralises_line_breaks_and_nul() -> None:
    assert wire_safe("PRIVMSG #a :hi\r\nJOIN #evil\nQUIT\x00!") == "PRIVMSG #a :hi  JOIN #evil QUIT!"


def test_short_line_is_one_piece() -> None:
    assert split_line("hello", 10) == ["hello"]
    assert split_line("x" * 10, 10) == ["x" * 10]


def test_one_byte_over_makes_two_pieces() -> None:
    assert split_line("x" * 11, 10) == ["x" * 10, "x"]


def test_prefers_a_space_near_the_limit_and_drops_it() -> None:
    words = " ".join(f"word{i:03d}" for i in range(200))
    pieces = split_line(words, 100)
    assert len(pieces) > 1
    assert all(utf8_len(p) <= 100 for p in pieces)
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)
    assert " ".join(pieces) == words
    # Greedy: every piece but the last is as full as whole words allow.
    assert all(utf8_len(p) > 100 - len("word000 ") for p in pieces[:-1])


def test_does_not_waste_half_a_line_for_a_space() -> None:
    text = "a " + "x" * 300
    pieces = split_line(text, 100)
    assert pieces[0] == text[:100]
    assert "".join(pieces) == text


@pytest.mark.parametrize("char", ["é", "€", "日", "😀"])
@pytest.mark.parametrize("budget", [100, 101, 102, 103])
def test_never_splits_inside_a_character(char: str, budget: int) -> None:
    text = char * 500
    pieces = split_line(text, budget)
    assert "".join(pieces) == text
    width = utf8_len(char)
    for piece in pieces[:-1]:
        assert budget - width < utf8_len(piece) <= budget
        piece.encode("utf-8").decode("utf-8")  # whole characters only


def test_mixed_widths_fill_the_exact_budget() -> None:
    text = "aé€😀" * 200
    for budget in range(40, 60):
        pieces = split_line(text, budget)
        assert "".join(pieces) == text
        assert all(utf8_len(p) <= budget for p in pieces)
        assert all(utf8_len(p) > budget - 4 for p in pieces[:-1])


def test_combining_marks_and_joined_emoji_stay_with_their_base() -> None:
    accented = "e\u0301" * 300
    for piece in split_line(accented, 50):
        assert not unicodedata.combining(piece[0])
    family = "👨\u200d👩\u200d👧" * 100
    pieces = split_line(family, 50)
    assert "".join(pieces) == family
    assert all(p.startswith("👨") and p.endswith("👧") for p in pieces)


def test_formatting_open_at_a_cut_is_reopened() -> None:
    line = "\x02" + " ".join(["bold"] * 100) + "\x02 \x1d" + " ".join(["it"] * 100) + "\x1d"
    pieces = split_line(line, 120)
    assert all(utf8_len(p) <= 120 for p in pieces)
    assert pieces[1].startswith("\x02")
    assert pieces[-1].startswith("\x1d")


def test_tiny_budget_is_refused() -> None:
    with pytest.raises(ValueError):
        split_line("abc", 3)


def test_frame_keeps_the_sender_on_every_piece() -> None:
    body = " ".join(["héllo wörld ✓"] * 100)
    budget = budget_for("#room")
    lines = frame("<{name}> {text}", "Alice Smith", body, budget)
    assert len(lines) > 1
    for line in lines:
        assert line.startswith("<Alice Smith> ")
        assert utf8_len(f":{MASK} PRIVMSG #room :{line}") <= 510
    assert " ".join(line.removeprefix("<Alice Smith> ") for line in lines) == body


def test_frame_shortens_an_absurd_name() -> None:
    lines = frame("<{name}> {text}", "N" * 600 + "\r\nQUIT", "hi", 400)
    assert lines == [f"<{'N' * (400 - 3 - 64 - 3)}…> hi"]
    assert utf8_len(lines[0]) <= 400


def test_message_lines_become_irc_lines_and_blank_lines_vanish() -> None:
    text = Text("hello there\n\n  \nsecond", (Span("bold", 6, 11),))
    assert payloads(outbound(text), Templates(), 400) == [
        "<Alice Smith> hello \x02there\x02",
        "<Alice Smith> second",
    ]


def test_emote_edit_notice_and_delete() -> None:
    templates = Templates()
    assert payloads(outbound("waves", message_kind="emote"), templates, 400) == ["* Alice Smith waves"]
    assert payloads(outbound("fixed\ntext", kind="edit"), templates, 400) == ["* Alice Smith: fixed text"]
    assert payloads(outbound("fyi", message_kind="notice"), templates, 400) == ["<Alice Smith> fyi"]
    assert payloads(outbound("gone", kind="delete"), templates, 400) == []


def test_nothing_outbound_can_break_the_line() -> None:
    evil = Sender("matrix", "@e:x", "Eve\r\nQUIT :bye", "Eve", "Matrix")
    text = "hi\r\nJOIN #evil\x00\n\rQUIT\n\x01ACTION x\x01"
    lines = payloads(outbound(text, sender=evil), Templates(), 400)
    lines += notice_payloads("a\r\nJOIN #evil\x00", 400)
    assert lines
    for line in lines:
        assert not set(line) & {"\r", "\n", "\x00", "\x01"}, line


def test_template_is_configurable() -> None:
    templates = Templates(line="[{name}] {text}")
    assert payloads(outbound("hi"), templates, 400) == ["[Alice Smith] hi"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket(burst=5, rate=2.0, clock=clock)
    assert [bucket.reserve() for _ in range(5)] == [0.0] * 5
    assert [bucket.reserve() for _ in range(3)] == [0.5, 1.0, 1.5]
    clock.now += 1.5  # the debt is paid off, nothing saved up
    assert bucket.reserve() == 0.5


def test_token_bucket_refills_only_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(burst=3, rate=10.0, clock=clock)
    clock.now += 3600
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.1)]


def test_settings_defaults_and_validation() -> None:
    settings = IrcSettings.from_options({"host": "irc.test", "port": "6697", "flood_rate": 3})
    assert (settings.port, settings.nick, settings.user, settings.flood_burst) == (
        6697,
        "switchboard",
        "switchboard",
        5,
    )
    assert settings.flood_rate == 3.0 and not settings.tls and settings.tls_verify and not settings.sasl
    with pytest.raises(ValueError, match="host"):
        IrcSettings.from_options({})
    with pytest.raises(ValueError, match="line_template"):
        IrcSettings.from_options({"host": "h", "line_template": "<{name}>"})
    with pytest.raises(ValueError, match="line_template"):
        IrcSettings.from_options({"host": "h", "line_template": "{who}: {text}"})
    with pytest.raises(ValueError, match="sasl"):
        IrcSettings.from_options({"host": "h", "sasl_username": "bot"})


def test_attachments_become_a_line_naming_the_file() -> None:
    from bridge.model import Attachment, Outbound, Sender
    from bridge.text import Text
    from connectors.irc.outbound import Templates, payloads

    out = Outbound(
        key="k",
        seq=1,
        room="#c",
        sender=Sender("slack", "U1", "Carol White", "Carol White", "Slack"),
        kind="message",
        text=Text.of("the chart"),
        attachments=(
            Attachment("chart.png", "image/png", 40960, "ab" * 32, url="https://files.example/chart.png"),
            Attachment("notes.txt", "text/plain", 12, "cd" * 32, url="mxc://corp.test/abc"),
        ),
    )
    lines = payloads(out, Templates("<{name}> {text}", "* {name} {text}", "* {name}: {text}"), 400)
    assert lines == [
        "<Carol White> the chart",
        "<Carol White> [file] chart.png (image/png, 40 KB) https://files.example/chart.png",
        "<Carol White> [file] notes.txt (text/plain, 12 bytes)",
    ]
