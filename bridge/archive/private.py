"""Files only their owner may read: the archive, its keys, checkpoint log and export bundles.

Compliance data must not be readable by whoever else has an account on the host,
whatever umask the process was started with. The command sets `UMASK` for the
whole process (bridge/cli.py); these create with explicit modes as well, so a
caller embedding the archive in another process gets the same. A mode passed to
open() or mkdir() is only ever narrowed by the umask, never widened.

Standard library only: the export writer and the offline verifier share this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dir(path: Path) -> None:
    """Create `path` (and missing parents) as 0700; an existing one is narrowed to 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)


def create(path: Path, mode: int = FILE_MODE) -> BinaryIO:
    """A new file open for writing, 0600 (or `mode`); FileExistsError if one is there already."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    return os.fdopen(fd, "wb")


def write(path: Path, data: bytes) -> None:
    with create(path) as f:
        f.write(data)


def append(path: Path) -> BinaryIO:
    """The file open for appending; created 0600 if it is not there yet."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    return os.fdopen(fd, "ab")


def prepare_sqlite(url: str) -> None:
    """Create a SQLite archive's file 0600 before SQLite does (it would use 0644 less the umask).

    SQLite gives new -wal and -shm files the main file's mode, so they follow. An archive
    made by an older version, readable by others, is narrowed to 0600 with its -wal and -shm.
    """
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return
    path = Path(url[len("sqlite:///") :].split("?", 1)[0])
    if not path.exists():
        if path.parent.is_dir():
            append(path).close()
        return
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(FILE_MODE)
        except OSError:  # not there, or not ours to change: SQLite reports what matters
            pass
