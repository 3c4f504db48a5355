"""Posting an outbox row to Slack at most once, though `chat.postMessage` has no idempotency key.

Every bridged post carries the row's key in Slack message metadata. When a row may have
been posted already (the bridge died between the post and recording it, or a post failed
in a way that says nothing about whether it arrived), the channel (or the thread) is read
back from just before the row was archived, and a post of ours with that key is the
answer instead of a second post.

File shares (`files.completeUploadExternal`) take no metadata, so they cannot be found
this way and are uploaded again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.slack.catchup import pages

EVENT_TYPE = "switchboard_relay"
# How far before the row was archived to look: the bridge's and Slack's clocks may disagree.
CLOCK_MARGIN = timedelta(minutes=5)
# A row in doubt is the one its room's worker was sending, so only what others said since
# lies between it and now; past this many pages it is taken as never posted.
MAX_PAGES = 10


def metadata(key: str) -> dict[str, Any]:
    return {"event_type": EVENT_TYPE, "event_payload": {"key": key}}


async def earlier_post(
    read: Callable[..., Awaitable[Any]], bot_id: str, key: str, since: datetime
) -> str | None:
    """The ts of the post by bot `bot_id` that carries `key`, listed by `read` (a bound
    `conversations.history` or `.replies`) from `since` less the margin on; None if none."""
    oldest = f"{(since - CLOCK_MARGIN).timestamp():.6f}"
    read_pages = 0
    async for page in pages(read, oldest=oldest, include_all_metadata=True):
        for message in page:
            if _carries(message, bot_id, key):
                return str(message["ts"])
        read_pages += 1
        if read_pages == MAX_PAGES:
            break
    return None


def _carries(message: Mapping[str, Any], bot_id: str, key: str) -> bool:
    # Only our own posts count: any app can post metadata, and a forged key would
    # otherwise make the bridge drop a message as already delivered.
    meta = message.get("metadata")
    if message.get("bot_id") != bot_id or not isinstance(meta, Mapping):
        return False
    payload = meta.get("event_payload")
    return meta.get("event_type") == EVENT_TYPE and isinstance(payload, Mapping) and payload.get("key") == key
