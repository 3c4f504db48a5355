"""A Slack workspace emulator (Web API, Socket Mode, Events API) for Switchboard's tests."""

from __future__ import annotations

from .delivery import Envelope, PendingEvent
from .emulator import EmulatorThread, Posted, PostedFile, SlackEmulator
from .model import Channel, File, Message, User
from .signing import post_signed_event, sign, signed_headers, url_verification_body
from .text import display_text, escape, rich_text_blocks, unescape, validate_wire_text
from .webapi import ApiCall, Ephemeral

__all__ = [
    "ApiCall",
    "Channel",
    "EmulatorThread",
    "Envelope",
    "Ephemeral",
    "File",
    "Message",
    "PendingEvent",
    "Posted",
    "PostedFile",
    "SlackEmulator",
    "User",
    "display_text",
    "escape",
    "post_signed_event",
    "rich_text_blocks",
    "sign",
    "signed_headers",
    "unescape",
    "url_verification_body",
    "validate_wire_text",
]
