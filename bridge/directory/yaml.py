"""A directory kept in a YAML file, for small teams and the demo.

The file is re-read when it changes (checked every `refresh_seconds`), so an
admin disabling someone takes effect without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from bridge.directory import handle_key
from bridge.model import Identity
from bridge.yamlsource import SourceError, join_path, load_located

log = logging.getLogger("switchboard.directory")


def load_people(path: str | Path) -> list[Identity]:
    """Parse a directory file; raise SourceError naming the first bad entry."""
    src = load_located(path)
    data = src.data or {}
    if not isinstance(data, dict) or not isinstance(data.get("people", []), list):
        raise src.error("people", "the file must hold `people:`, a list of persons")
    people: list[Identity] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(data.get("people") or []):
        where = join_path("people", i)
        if not isinstance(entry, dict):
            raise src.error(where, "each person is a mapping with employee_id, name, handles")
        for key in ("employee_id", "name"):
            if not isinstance(entry.get(key), str | int) or entry.get(key) == "":
                raise src.error(join_path(where, key), "is required")
        handles = entry.get("handles") or {}
        if not isinstance(handles, dict):
            raise src.error(join_path(where, "handles"), "must map network name to handle")
        for network, handle in handles.items():
            key = f"{network}:{handle_key(str(handle))}"
            if key in seen:
                raise src.error(
                    join_path(where, f"handles.{network}"),
                    f"'{handle}' is already the handle of {seen[key]}",
                )
            seen[key] = str(entry["employee_id"])
        people.append(
            Identity(
                employee_id=str(entry["employee_id"]),
                name=str(entry["name"]),
                department=str(entry.get("department") or ""),
                groups=frozenset(str(g) for g in entry.get("groups") or []),
                enabled=bool(entry.get("enabled", True)),
                handles=tuple((str(n), str(h)) for n, h in handles.items()),
            )
        )
    return people


class YamlDirectory:
    def __init__(self, path: str | Path, refresh_seconds: float = 60.0) -> None:
        self.path = Path(path)
        self.refresh_seconds = refresh_seconds
        self._index: dict[tuple[str, str], Identity] = {}
        self._people: list[Identity] = []
        self._mtime = 0.0
        self._task: asyncio.Task[None] | None = None

    def load(self) -> None:
        people = load_people(self.path)
        self._mtime = self.path.stat().st_mtime
        self._people = people
        self._index = {
            (network, handle_key(handle)): person for person in people for network, handle in person.handles
        }

    async def start(self) -> None:
        self.load()
        self._task = asyncio.create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                if self.path.stat().st_mtime != self._mtime:
                    self.load()
                    log.info("directory reloaded from %s: %d people", self.path, len(self._people))
            except (OSError, SourceError) as exc:
                # Keep serving the last good directory; a half-saved file must not unmap everyone.
                log.warning("directory %s not reloaded: %s", self.path, exc)

    def resolve(self, network: str, native_id: str) -> Identity | None:
        return self._index.get((network, handle_key(native_id)))

    async def lookup(self, network: str, native_id: str) -> Identity | None:
        return self.resolve(network, native_id)

    def people(self) -> list[Identity]:
        return list(self._people)
