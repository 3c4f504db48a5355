"""JSON Lines and CSV exports: one record per line (or row), in seq order.

Attached files the archive keeps are written once each to `files/<sha256>`;
a record's line lists its attachments with their sha256.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.archive.export.files import FileDir, file_name
from bridge.archive.export.pieces import Piece, byte_piece
from bridge.archive.jsonform import attachments, kept

CSV_COLUMNS = (
    "seq",
    "kind",
    "occurred_at",
    "captured_at",
    "network",
    "room",
    "portal",
    "native_id",
    "sender",
    "sender_display",
    "employee_id",
    "name",
    "department",
    "target_seq",
    "text",
    "flags",
    "rule",
    "reason",
    "purged",
    "attachments",
    "content_sha256",
)


class _LineWriter:
    name = ""

    def __init__(self, out: Path) -> None:
        self.file = (out / self.name).open("wb")
        self.offset = 0
        self.files = FileDir(out)

    def _write(self, data: bytes) -> Piece:
        piece = byte_piece(self.name, data, self.offset)
        self.file.write(data)
        self.offset += len(data)
        return piece

    def close(self) -> list[str]:
        self.file.close()
        return [self.name, *self.files.names]


class JsonlWriter(_LineWriter):
    name = "records.jsonl"

    def add(
        self, record: dict[str, Any], content: dict[str, Any] | None, files: Mapping[str, bytes]
    ) -> Piece:
        self.files.put(files)
        line = {**record, "attachments": attachments(content)}
        return self._write(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")


class CsvWriter(_LineWriter):
    name = "records.csv"

    def __init__(self, out: Path) -> None:
        super().__init__(out)
        self._write(self._row(CSV_COLUMNS))

    def add(
        self, record: dict[str, Any], content: dict[str, Any] | None, files: Mapping[str, bytes]
    ) -> Piece:
        self.files.put(files)
        values = {
            **record,
            "flags": ";".join(record["flags"]),
            "attachments": ";".join(_described(a) for a in attachments(content)),
        }
        return self._write(self._row([values.get(c) for c in CSV_COLUMNS]))

    @staticmethod
    def _row(values: Any) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerow(["" if v is None else v for v in values])
        return buf.getvalue().encode("utf-8")


def _described(attachment: dict[str, Any]) -> str:
    """`name` or, when the bundle holds its bytes, `name (files/<sha256>)`."""
    name = attachment.get("name", "")
    return f"{name} ({file_name(attachment['sha256'])})" if kept(attachment) else name
