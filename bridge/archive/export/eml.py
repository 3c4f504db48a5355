"""EML export: one RFC 5322 message per record, readable by any mail or e-discovery tool.

Each attachment the archive keeps the bytes of is attached as itself; one it
never had the bytes of (too large, or unreachable when it was sent) becomes an
inline part describing it (name, type, size, sha256, url).

Names come from chat networks and may hold anything: a CR/LF in a file name
would otherwise abort the export or start a header of its own. Every value
that becomes a header loses its control characters first (each becomes a
space); non-ASCII names are then encoded by the email package (RFC 2047 in
headers, RFC 2231 in file names). The body and the archive keep the text as it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from bridge.archive import private
from bridge.archive.export.pieces import Piece, byte_piece
from bridge.archive.jsonform import attachments
from bridge.codec import parse_timestamp

DOMAIN = "switchboard.invalid"  # RFC 2606: can never be mistaken for a deliverable address
_TOKEN = re.compile(r"[A-Za-z0-9!#$&^_.+-]+")  # RFC 6838 type and subtype names
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def header_value(text: str) -> str:
    """`text` with no character that could end a header line or start another."""
    return _CONTROL.sub(" ", text)


def render_eml(record: dict[str, Any], content: dict[str, Any] | None, files: Mapping[str, bytes]) -> bytes:
    msg = EmailMessage()
    h = header_value
    network = record["network"] or "archive"
    sender = record["employee_id"] or record["sender"] or "unknown"
    display = record["name"] or record["sender_display"] or record["sender"]
    msg["From"] = Address(h(display), _local(sender), f"{_local(network)}.{DOMAIN}")
    room = record["portal"] or record["room"] or "archive"
    msg["To"] = Address(h(room), _local(room), f"rooms.{DOMAIN}")
    msg["Date"] = format_datetime(parse_timestamp(record["occurred_at"]))
    msg["Subject"] = h(f"{room} ({record['room']} on {network})" if record["room"] else room)
    msg["Message-ID"] = f"<seq-{record['seq']}@{DOMAIN}>"
    msg["X-Switchboard-Seq"] = str(record["seq"])
    msg["X-Switchboard-Kind"] = h(record["kind"])
    msg["X-Switchboard-Network"] = h(record["network"])
    msg["X-Switchboard-Native-Id"] = h(record["native_id"])
    msg["X-Switchboard-Employee-Id"] = h(record["employee_id"] or "")
    if record.get("target_seq") is not None:
        msg["X-Switchboard-Target-Seq"] = str(record["target_seq"])
        msg["In-Reply-To"] = f"<seq-{record['target_seq']}@{DOMAIN}>"
    if record["flags"]:
        msg["X-Switchboard-Flags"] = h(", ".join(record["flags"]))
    msg.set_content(_body(record))
    for att in attachments(content):
        data = files.get(att.get("sha256", ""))
        name = h(att.get("name") or "") or None
        if data is not None:
            maintype, _, subtype = (att.get("mimetype") or "").partition("/")
            if not (_TOKEN.fullmatch(maintype) and _TOKEN.fullmatch(subtype)):
                maintype, subtype = "application", "octet-stream"
            msg.add_attachment(data, maintype, subtype, filename=name or att["sha256"])
            continue
        lines = [f"{k}: {att.get(k)}" for k in ("name", "mimetype", "size", "sha256", "url") if att.get(k)]
        msg.add_attachment("\n".join(lines) + "\n", disposition="inline", filename=name)
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
        private.make_dir(self.dir)
        self.files: list[str] = []

    def add(
        self, record: dict[str, Any], content: dict[str, Any] | None, files: Mapping[str, bytes]
    ) -> Piece:
        name = f"eml/{record['seq']:010d}.eml"
        data = render_eml(record, content, files)
        private.write(self.dir.parent / name, data)
        self.files.append(name)
        return byte_piece(name, data)

    def close(self) -> list[str]:
        return self.files
