"""`files/<sha256>` in a bundle: the bytes of kept attachments, each once, for formats with no room for them.

Standard library only: the offline verifier reads these names too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bridge.archive import private

FOLDER = "files"


def file_name(sha256: str) -> str:
    return f"{FOLDER}/{sha256}"


def sha_of(name: str) -> str | None:
    """The sha256 a bundle file is named for, if it is one of the attachment files."""
    folder, _, sha = name.partition("/")
    return sha if folder == FOLDER and sha else None


class FileDir:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.names: list[str] = []

    def put(self, files: Mapping[str, bytes]) -> None:
        for sha, data in files.items():
            name = file_name(sha)
            if name in self.names:
                continue
            path = self.out / name
            if not path.parent.is_dir():
                private.make_dir(path.parent)
            private.write(path, data)
            self.names.append(name)
