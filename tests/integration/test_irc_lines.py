"""One IRC line is one archived message, its text exactly as sent (real ngircd, real archive)."""

from __future__ import annotations

from pathlib import Path

from bridge.sandbox.ircd import Ngircd
from tests.integration.test_irc_accounts import bridged, clients, person
from tests.integration.test_irc_connector import unique

# (what the user sends, the kind archived, the text archived)
LINES = [
    ("text \x01PING 123", "text", "text \x01PING 123"),  # the irc library made two messages of this
    ("quoted \x10n not a newline \x10\x10 \x100", "text", "quoted \x10n not a newline \x10\x10 \x100"),
    ("\x01VERSION\x01", "text", "\x01VERSION\x01"),
    ("before \x01ACTION inside\x01 after", "text", "before \x01ACTION inside\x01 after"),
    ("\x01ACTION waves\x01", "emote", "waves"),
    ("\x01ACTION waves without the closing delimiter", "emote", "waves without the closing delimiter"),
    ("\x01ACTION two \x01PING 1\x01", "text", "\x01ACTION two \x01PING 1\x01"),
    ("  spaces kept", "text", "  spaces kept"),  # (ngircd itself drops trailing spaces)
]


async def test_each_line_is_one_message_with_its_text_as_sent(
    ngircd: Ngircd, tmp_path: Path, archive_url: str
) -> None:
    channel, nick = unique("#lines"), unique("ctcp")
    people = [person("E1007", "Hal Poe", nick)]
    async with bridged(tmp_path, archive_url, ngircd, channel, people, identify="nick") as core:
        [hal] = await clients(ngircd, nick)
        await hal.join(channel)
        for sent, _, _ in LINES:
            await core.said(hal, sent)
        await hal.privmsg(channel, "the last line")
        records = await core.settle(len(LINES) + 1, "every line")
        await hal.close()

    assert len(records) == len(LINES) + 1  # nothing split in two, nothing lost
    archived = [core.content(r["seq"]) for r in records[:-1]]
    assert [(c["message_kind"], c["text"]["plain"]) for c in archived] == [(k, t) for _, k, t in LINES]
    assert [r["text"] for r in records[:-1]] == [text for _, _, text in LINES]
    assert all(r["employee_id"] == "E1007" for r in records)
    delivered = [(out.message_kind, out.text.plain) for out in core.matrix.sent]
    assert delivered == [*((kind, text) for _, kind, text in LINES), ("text", "the last line")]
