"""JSON Lines and CSV exports: one record per line (or row), in seq order.

Attached files the archive keeps are written once each to `files/<sha256>`;
a record's line lists its attachments with their sha256.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (and, in some,
a tab or carriage return) as a formula: chat text such as `=HYPERLINK(…)`
would run on the reviewer's machine. Such cells are written with a leading `'`
(OWASP's advice), which spreadsheets show as text; the offline check rebuilds
every row and expects exactly that form. The text itself is in proofs.jsonl
and records.jsonl as it was archived.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.archive import private
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


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralised(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def csv_row(values: Any) -> bytes:
    cells = ["" if v is None else neutralised(v) if isinstance(v, str) else v for v in values]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(cells)
    return buf.getvalue().encode("utf-8")


def record_row(record: dict[str, Any], content: dict[str, Any] | None) -> bytes:
    """The CSV row of one record, as the export writes it and the offline check expects it."""
    values = {
        **record,
        "flags": ";".join(record["flags"]),
        "attachments": ";".join(_described(a) for a in attachments(content)),
    }
    return csv_row([values.get(c) for c in CSV_COLUMNS])


class _LineWriter:
    name = ""

    def __init__(self, out: Path) -> None:
        self.file = private.create(out / self.name)
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
        self._write(csv_row(CSV_COLUMNS))

    def add(
        self, record: dict[str, Any], content: dict[str, Any] | None, files: Mapping[str, bytes]
    ) -> Piece:
        self.files.put(files)
        return self._write(record_row(record, content))


def _described(attachment: dict[str, Any]) -> str:
    """`name` or, when the bundle holds its bytes, `name (files/<sha256>)`."""
    name = attachment.get("name", "")
    return f"{name} ({file_name(attachment['sha256'])})" if kept(attachment) else name
