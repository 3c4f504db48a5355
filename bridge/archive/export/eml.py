"""EML export: one RFC 5322 message per record, readable by any mail or e-discovery tool.

Each attachment the archive keeps the bytes of is attached as itself; one it
never had the bytes of (too large, or unreachable when it was sent) becomes an
inline part describing it (name, type, size, sha256, url).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from bridge.archive.export.pieces import Piece, byte_piece
from bridge.archive.jsonform import attachments
from bridge.codec import parse_timestamp

DOMAIN = "switchboard.invalid"  # RFC 2606: can never be mistaken for a deliverable address


def render_eml(record: dict[str, Any], content: dict[str, Any] | None, files: Mapping[str, bytes]) -> bytes:
    msg = EmailMessage()
    network = record["network"] or "archive"
    sender = record["employee_id"] or record["sender"] or "unknown"
    display = record["name"] or record["sender_display"] or record["sender"]
    msg["From"] = Address(display, _local(sender), f"{network}.{DOMAIN}")
    room = record["portal"] or record["room"] or "archive"
    msg["To"] = Address(room, _local(room), f"rooms.{DOMAIN}")
    msg["Date"] = format_datetime(parse_timestamp(record["occurred_at"]))
    msg["Subject"] = f"{room} ({record['room']} on {network})" if record["room"] else room
    msg["Message-ID"] = f"<seq-{record['seq']}@{DOMAIN}>"
    msg["X-Switchboard-Seq"] = str(record["seq"])
    msg["X-Switchboard-Kind"] = record["kind"]
    msg["X-Switchboard-Network"] = record["network"]
    msg["X-Switchboard-Native-Id"] = record["native_id"]
    msg["X-Switchboard-Employee-Id"] = record["employee_id"] or ""
    if record.get("target_seq") is not None:
        msg["X-Switchboard-Target-Seq"] = str(record["target_seq"])
        msg["In-Reply-To"] = f"<seq-{record['target_seq']}@{DOMAIN}>"
    if record["flags"]:
        msg["X-Switchboard-Flags"] = ", ".join(record["flags"])
    msg.set_content(_body(record))
    for att in attachments(content):
        data = files.get(att.get("sha256", ""))
        if data is not None:
            maintype, _, subtype = (att.get("mimetype") or "").partition("/")
            if not (maintype and subtype):
                maintype, subtype = "application", "octet-stream"
            msg.add_attachment(data, maintype, subtype, filename=att.get("name") or att["sha256"])
            continue
        lines = [f"{k}: {att.get(k)}" for k in ("name", "mimetype", "size", "sha256", "url") if att.get(k)]
        msg.add_attachment("\n".join(lines) + "\n", disposition="inline", filename=att.get("name") or None)
    return bytes(msg)


def _body(record: dict[str, Any]) -> str:
    if record["purged"]:
        return "[content purged by retention]\n"
    text = record["text"] or ""
    if record["kind"] == "delete":
        return f"[deleted the message of seq {record.get('target_seq')}]\n"
    if record["kind"] == "policy_block":
        return f"[blocked by policy: {record.get('reason') or record.get('rule')}]\n{text}\n"
    return text + "\n"


def _local(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "unknown"


class EmlWriter:
    def __init__(self, out: Path) -> None:
        self.dir = out / "eml"
        self.dir.mkdir()
        self.files: list[str] = []

    def add(
        self, record: dict[str, Any], content: dict[str, Any] | None, files: Mapping[str, bytes]
    ) -> Piece:
        name = f"eml/{record['seq']:010d}.eml"
        data = render_eml(record, content, files)
        (self.dir.parent / name).write_bytes(data)
        self.files.append(name)
        return byte_piece(name, data)

    def close(self) -> list[str]:
        return self.files
