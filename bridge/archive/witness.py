"""Checkpoints kept outside the database: the witness that catches a cut tail.

Whoever can write the database can cut the end of the log together with the
checkpoints that covered it, and the rest still verifies. Every checkpoint the
archive signs is therefore also appended to a file (`archive.checkpoint_log`),
meant for other storage: a WORM mount, a log shipper's input, another host's
share. `switchboard archive verify` reads it back: the log must still extend
every checkpoint in it. Standard library only, like the offline verifier.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from bridge.archive import private
from bridge.archive.signing import Checkpoint
from bridge.codec import canonical


def publish(path: Path, checkpoints: Iterable[Checkpoint]) -> None:
    """Append checkpoints as JSON lines and fsync, so a published one survives a crash.

    A new log is created 0600: it names every signed head, so it is archive data too."""
    lines = b"".join(canonical(cp.to_json()) + b"\n" for cp in checkpoints)
    if not lines:
        return
    with private.append(path) as f:
        f.write(lines)
        f.flush()
        os.fsync(f.fileno())


def read(path: Path) -> list[Checkpoint]:
    """Every checkpoint in a checkpoint log; ValueError naming the line that is not one."""
    out = []
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(Checkpoint.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                # A torn last line (a crash mid-append) is no checkpoint; anything else is tampering.
                if line.endswith(b"\n"):
                    raise ValueError(f"{path}:{n}: not a checkpoint") from None
    return out
