"""The YAML directory: lookups, errors that name the entry, live reload."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bridge.directory.yaml import YamlDirectory, load_people
from bridge.yamlsource import SourceError

EXAMPLE = Path(__file__).parents[2] / "config" / "directory.example.yaml"


def test_example_directory_resolves_case_insensitively() -> None:
    d = YamlDirectory(EXAMPLE)
    d.load()
    alice = d.resolve("irc", "ALICE")
    assert alice is not None and alice.employee_id == "E1001" and alice.department == "Trading"
    assert d.resolve("matrix", "@alice:corp.test") == alice
    assert d.resolve("irc", "stud_broker") is None
    carol = d.resolve("irc", "carol")
    assert carol is not None and not carol.enabled


def test_handle_claimed_twice_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "dir.yaml"
    f.write_text(
        "people:\n"
        "  - {employee_id: E1, name: A, handles: {irc: ann}}\n"
        "  - employee_id: E2\n"
        "    name: B\n"
        "    handles: {irc: Ann}\n"
    )
    with pytest.raises(SourceError) as err:
        load_people(f)
    assert str(err.value).startswith(f"{f}:5: people[1].handles.irc:")
    assert "already the handle of E1" in str(err.value)


async def test_reload_picks_up_a_disabled_person(tmp_path: Path) -> None:
    f = tmp_path / "dir.yaml"
    f.write_text("people:\n  - {employee_id: E1, name: Ann, handles: {irc: ann}}\n")
    d = YamlDirectory(f, refresh_seconds=0.05)
    await d.start()
    try:
        assert d.resolve("irc", "ann").enabled
        f.write_text("people:\n  - {employee_id: E1, name: Ann, enabled: false, handles: {irc: ann}}\n")
        st = f.stat()
        os.utime(f, (st.st_atime, st.st_mtime + 5))
        for _ in range(100):
            if not d.resolve("irc", "ann").enabled:
                break
            await asyncio.sleep(0.02)
        assert not d.resolve("irc", "ann").enabled
        f.write_text("people: [oops")  # a half-saved file keeps the last good directory
        os.utime(f, (st.st_atime, st.st_mtime + 10))
        await asyncio.sleep(0.2)
        assert d.resolve("irc", "ann") is not None
    finally:
        await d.stop()
