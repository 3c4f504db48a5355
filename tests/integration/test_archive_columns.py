"""What a peer sends that a database column cannot hold is archived anyway, and still verifies.

PostgreSQL refuses NUL in text and values longer than a varchar; on SQLite neither fails.
Each used to fail the transaction on PostgreSQL over and over (a poison pill for Matrix,
whose homeserver retries the transaction forever).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from bridge.archive.schema import contents, records
from bridge.archive.signing import Signer
from bridge.archive.store import ArchiveStore, RecordDraft
from bridge.archive.verify import verify_archive
from bridge.codec import text_to_json
from bridge.model import Identity
from bridge.text import Text


def test_nul_and_over_long_values_are_archived_and_verify(tmp_path: Path, archive_url: str) -> None:
    signer = Signer.generate(tmp_path / "key")
    store = ArchiveStore(archive_url, signer=signer)
    store.migrate()
    said = "pay\x00load \ud800 end"
    draft = RecordDraft(
        kind="message",
        occurred_at=datetime.now(UTC),
        network="matrix",
        room="!r:corp.test",
        native_id="$nul",
        portal="trading",
        sender="@mallory:corp.test",
        sender_display="M" * 300 + "\x00",
        identity=Identity("E1", "N" * 400, department="D\x00" * 200),
        content={"text": text_to_json(Text.of(said))},
        plain=said,
        reason="r" * 2000,
    )
    appended = store.append(draft, [])
    assert appended is not None
    # The same event offered again is still recognised: the id map holds what the record holds.
    assert store.append(draft, []) is None
    with store.engine.connect() as conn:
        row = conn.execute(select(records).where(records.c.seq == appended.seq)).one()
        body, plain = conn.execute(
            select(contents.c.body, contents.c.plain).where(contents.c.seq == appended.seq)
        ).one()
    assert row.sender_display == "M" * 254 + "…"
    assert len(row.name) == 255 and len(row.department) == 255 and "\x00" not in row.department
    assert len(row.reason) == 1024
    assert plain == "pay\ufffdload \ufffd end"
    # The content keeps exactly what was sent.
    assert json.loads(body)["text"]["plain"] == said
    store.checkpoint()
    assert verify_archive(store.engine, signer.public_key, workers=1).failure is None
    store.close()


def test_surrogate_halves_that_meet_read_back_as_the_character_they_make(
    tmp_path: Path, archive_url: str
) -> None:
    """Found by the fuzz run: a parser joining `\\ud83d` and `\\ude00` from two text nodes made
    a string whose canonical JSON reads back as 😀, while the search column held two U+FFFD."""
    signer = Signer.generate(tmp_path / "key")
    store = ArchiveStore(archive_url, signer=signer)
    store.migrate()
    joined = "half \ud83d" + "\ude00 and lone \ud800"
    draft = RecordDraft(
        kind="message",
        occurred_at=datetime.now(UTC),
        network="matrix",
        room="!r:corp.test",
        native_id="$pair",
        content={"text": text_to_json(Text.of(joined))},
        plain=joined,
    )
    appended = store.append(draft, [])
    assert appended is not None
    with store.engine.connect() as conn:
        body, plain = conn.execute(
            select(contents.c.body, contents.c.plain).where(contents.c.seq == appended.seq)
        ).one()
    assert plain == "half 😀 and lone \ufffd"
    assert json.loads(body)["text"]["plain"] == "half 😀 and lone \ud800"
    store.checkpoint()
    assert verify_archive(store.engine, signer.public_key, workers=1).failure is None
    store.close()
