"""What was said in a channel while the bridge was not listening, fetched from Slack again.

Slack keeps a channel's history (`conversations.history`), so after an outage
the bridge asks for everything newer than the last event the archive holds from
that channel and feeds it through the core once, oldest first, flagged
`caught_up`. Anything it already had is dropped there by native-id dedup.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bridge.connector import Backoff, Sink, SinkUnavailable
from connectors.slack.inbound import Inbound

CAUGHT_UP = "caught_up"
PAGE = 200  # messages per conversations.history call (Slack allows up to 1000; 200 is its advice)


async def history_since(web: AsyncWebClient, channel: str, oldest: str) -> list[Mapping[str, Any]]:
    """The channel's messages after `oldest` (exclusive), with the replies after it in threads
    begun after it, oldest first, all pages. (Slack lists no replies to older threads.)"""
    found = await _pages(web.conversations_history, channel=channel, oldest=oldest)
    after = _ts_order({"ts": oldest})
    for parent in list(found):
        latest = parent.get("latest_reply")
        if isinstance(latest, str) and _ts_order({"ts": latest}) > after:
            replies = await _pages(web.conversations_replies, channel=channel, ts=parent["ts"], oldest=oldest)
            found.extend(m for m in replies if m.get("ts") != parent["ts"])
    # Slack answers history newest first; sorted by ts, the order does not depend on that, and a
    # reply also sent to the channel, listed twice, is kept once.
    unique = {m.get("ts"): m for m in found}
    return sorted(unique.values(), key=_ts_order)


async def _pages(method: Callable[..., Awaitable[Any]], **kwargs: Any) -> list[Mapping[str, Any]]:
    """Every message of a cursor-paginated listing."""
    return [m async for page in pages(method, **kwargs) for m in page]


async def pages(
    method: Callable[..., Awaitable[Any]], **kwargs: Any
) -> AsyncIterator[list[Mapping[str, Any]]]:
    """The messages of a cursor-paginated listing, a page at a time."""
    cursor = ""
    while True:
        response = await method(**kwargs, limit=PAGE, **({"cursor": cursor} if cursor else {}))
        yield [m for m in response.get("messages") or () if isinstance(m, Mapping)]
        metadata = response.get("response_metadata") or {}
        cursor = metadata.get("next_cursor") or "" if isinstance(metadata, Mapping) else ""
        if not response.get("has_more") or not cursor:
            return


def _ts_order(message: Mapping[str, Any]) -> tuple[int, int]:
    seconds, _, micros = str(message.get("ts") or "").partition(".")
    return (int(seconds), int(micros)) if seconds.isdigit() and micros.isdigit() else (0, 0)


async def replay(
    inbound: Inbound, sink: Sink, channel: str, messages: list[Mapping[str, Any]], log: logging.Logger
) -> int:
    """Hand each fetched message to the core in order; how many became events.

    A message the archive cannot take now is retried (so order holds) until it can.
    """
    handed = 0
    for message in messages:
        event = await inbound.convert({**message, "type": "message", "channel": channel})
        if event is None:
            continue
        event = dataclasses.replace(event, flags=(*event.flags, CAUGHT_UP))
        backoff = Backoff(initial=0.2, maximum=10.0)
        while True:
            try:
                await sink.receive(event)
                break
            except SinkUnavailable as exc:
                delay = backoff.next_delay()
                log.warning(
                    "catch-up of %s waits for the archive (%s); retrying in %.1fs", channel, exc, delay
                )
                await asyncio.sleep(delay)
            except Exception:  # one bad message must not keep the rest from the record
                log.exception("catch-up of %s: message %s not handled", channel, message.get("ts"))
                break
        handed += 1
    return handed
