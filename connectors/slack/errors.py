"""Which Slack failures a retry can cure, as `DeliveryError`s the core's outbox understands."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from bridge.connector import DeliveryError

# Slack's own words for "try again later"; every other `ok: false` is an answer that
# repeating the same request would only get again (channel_not_found, invalid_auth,
# not_in_channel after a failed join, msg_too_long, cant_update_message, ...).
TRANSIENT_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)
# Failures of the connection itself, or an answer that was not Slack's JSON.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
    json.JSONDecodeError,
    SlackClientError,
)
# What a Web API call can raise that is about Slack or the network, not a bug of ours.
CALL_ERRORS: tuple[type[BaseException], ...] = (SlackApiError, *NETWORK_ERRORS)


def api_error(exc: SlackApiError) -> str:
    data = exc.response.data if exc.response is not None else None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return ""


def status_of(exc: SlackApiError) -> int:
    return exc.response.status_code if exc.response is not None else 0


def retry_after(exc: SlackApiError) -> float | None:
    """Seconds Slack asked us to wait (HTTP 429 `Retry-After`), or None."""
    if status_of(exc) != 429 and api_error(exc) != "ratelimited":
        return None
    headers = exc.response.headers if exc.response is not None else {}
    value = headers.get("Retry-After") or headers.get("retry-after") or "1"
    try:
        return max(1.0, float(value))
    except ValueError:
        return 1.0


def to_delivery_error(exc: BaseException, what: str) -> DeliveryError:
    """One of CALL_ERRORS as a DeliveryError: permanent unless a retry could help."""
    if isinstance(exc, SlackApiError):
        error = api_error(exc) or f"HTTP {status_of(exc)}"
        wait = retry_after(exc)
        if wait is not None:
            return DeliveryError(f"{what}: rate limited; retry after {wait:g}s", retry_after=wait)
        if status_of(exc) >= 500 or error in TRANSIENT_ERRORS:
            return DeliveryError(f"{what}: {error}")
        return DeliveryError(f"{what}: {error}", permanent=True)
    return DeliveryError(f"{what}: {type(exc).__name__}: {exc}")
