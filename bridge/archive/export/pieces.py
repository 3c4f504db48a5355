"""Where each exported record sits in a bundle's files, so a changed byte names its record.

Standard library only: the offline verifier reads these too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Piece:
    file: str  # path inside the bundle
    sha256: str | None = None  # of the bytes at offset/length (or the whole file)
    offset: int | None = None
    length: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "sha256": self.sha256}
        if self.offset is not None:
            out |= {"offset": self.offset, "length": self.length}
        return out


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def byte_piece(file: str, data: bytes, offset: int | None = None) -> Piece:
    digest = hashlib.sha256(data).hexdigest()
    if offset is None:
        return Piece(file, digest)
    return Piece(file, digest, offset, len(data))
