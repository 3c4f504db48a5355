"""RSMF 2.0 (Relativity Short Message Format) export: `rsmf.zip` holding `rsmf_manifest.json`.

Edits and deletes are folded into the event of the message they change, as
RSMF wants (`edits` with the text before and after, `deleted`); replies point
at their `parent`. Kept attachments are files in the zip that events name in
`attachments`; one the archive never had the bytes of is described in the
event's `custom` fields. Standard library only: the offline verifier rebuilds the
manifest from the bundle's proven records and compares it event by event.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bridge.archive import private
from bridge.archive.export.pieces import Piece
from bridge.archive.jsonform import attachments, kept

NAME = "rsmf.zip"
MANIFEST = "rsmf_manifest.json"
CHAT_KINDS = ("message", "edit", "delete", "policy_block")


def event_id(seq: int) -> str:
    return f"seq-{seq}"


def build_manifest(items: Iterable[tuple[dict[str, Any], dict[str, Any] | None]]) -> dict[str, Any]:
    participants: dict[str, dict[str, Any]] = {}
    conversations: dict[str, dict[str, Any]] = {}
    events: dict[str, dict[str, Any]] = {}
    owner: dict[int, str] = {}  # seq -> the event it is shown in
    for record, content in items:
        if record["kind"] not in CHAT_KINDS:
            continue
        pid = record["employee_id"] or f"{record['network']}:{record['sender']}"
        participants.setdefault(
            pid,
            {
                "id": pid,
                "display": record["name"] or record["sender_display"] or record["sender"],
                "account_id": record["employee_id"] or record["sender"],
                "custom": [{"name": "network", "value": record["network"]}],
            },
        )
        cid = record["portal"] or f"{record['network']}:{record['room']}"
        conversation = conversations.setdefault(
            cid,
            {"id": cid, "display": cid, "platform": "switchboard", "type": "channel", "participants": []},
        )
        if pid not in conversation["participants"]:
            conversation["participants"].append(pid)
        text = None if record["purged"] else record["text"] or ""
        target = owner.get(record.get("target_seq") or 0)
        if record["kind"] in ("edit", "delete") and target is not None:
            event = events[target]
            if record["kind"] == "edit":
                event["edits"].append(
                    {
                        "participant": pid,
                        "timestamp": record["occurred_at"],
                        "previous": event["body"],
                        "new": text,
                    }
                )
                event["body"] = text
            else:
                event["deleted"] = True
            owner[record["seq"]] = target
            continue
        eid = event_id(record["seq"])
        event = {
            "id": eid,
            "type": "message",
            "participant": pid,
            "conversation": cid,
            "timestamp": record["occurred_at"],
            "body": text,
            "deleted": record["kind"] == "delete",
            "edits": [],
            "attachments": [
                {"id": attachment_id(a), "display": a.get("name"), "size": a.get("size")}
                for a in attachments(content)
                if kept(a)
            ],
            "custom": [
                {"name": "seq", "value": str(record["seq"])},
                {"name": "kind", "value": record["kind"]},
                {"name": "network", "value": record["network"]},
                {"name": "native_id", "value": record["native_id"]},
                *(
                    {"name": "attachment_not_kept", "value": _described(a)}
                    for a in attachments(content)
                    if not kept(a)
                ),
            ],
        }
        parent = owner.get(record.get("reply_seq") or 0)
        if parent:
            event["parent"] = parent
        events[eid] = event
        owner[record["seq"]] = eid
    return {
        "version": "2.0.0",
        "participants": list(participants.values()),
        "conversations": list(conversations.values()),
        "events": list(events.values()),
    }


def attachment_id(attachment: dict[str, Any]) -> str:
    """The name of a kept attachment's file in the zip, which RSMF events refer to."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", attachment.get("name") or "file").lstrip(".") or "file"
    return f"{attachment['sha256'][:16]}-{name}"


def _described(attachment: dict[str, Any]) -> str:
    return ", ".join(
        str(attachment[k]) for k in ("name", "mimetype", "size", "sha256", "url") if attachment.get(k)
    )


class RsmfWriter:
    def __init__(self, out: Path) -> None:
        self.items: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        # Files go in as they come, so only the manifest's input is held until the end.
        self.file = private.create(out / NAME)
        self.zip = zipfile.ZipFile(self.file, "w", zipfile.ZIP_DEFLATED)
        self.written: set[str] = set()

    def add(
        self, record: dict[str, Any], content: dict[str, Any] | None, files: Mapping[str, bytes]
    ) -> Piece:
        self.items.append((record, content))
        for att in attachments(content):
            member = attachment_id(att)
            if kept(att) and member not in self.written and att["sha256"] in files:
                self.zip.writestr(member, files[att["sha256"]])
                self.written.add(member)
        return Piece(NAME)  # the verifier rebuilds the manifest instead of slicing the zip

    def close(self) -> list[str]:
        manifest = json.dumps(build_manifest(self.items), ensure_ascii=False, indent=1)
        self.zip.writestr(MANIFEST, manifest)
        self.zip.close()
        self.file.close()  # a ZipFile leaves a file it was handed open
        return [NAME]
