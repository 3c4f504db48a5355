"""How outbound events look on Slack, how settings are read and how errors are classified."""

from __future__ import annotations

import time
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bridge.model import Attachment, Outbound, Sender
from bridge.text import Span, Text
from connectors.slack.errors import to_delivery_error
from connectors.slack.events import signature, verified
from connectors.slack.outbound import (
    MAX_TEXT,
    file_caption,
    icon_url,
    message_text,
    username,
    wire,
    with_links,
)
from connectors.slack.settings import SlackSettings

SENDER = Sender("irc", "carol", "Carol King (IRC)", "Carol King", "IRC", employee_id="E 7/x")


def out(text: Text | str = "hi", **fields: Any) -> Outbound:
    body = text if isinstance(text, Text) else Text(text)
    return Outbound("sb1", 1, "C0DESK", fields.pop("sender", SENDER), "message", body, **fields)


def test_emotes_are_italic_with_the_name() -> None:
    text = message_text(out(Text("waves hard", (Span("bold", 6, 10),)), message_kind="emote"), "slack")
    assert wire(text, "slack") == "_Carol King waves *hard*_"
    # Asterisks typed on IRC stay asterisks.
    literal = wire(message_text(out("waves *hard*", message_kind="emote"), "slack"), "slack")
    assert literal == "_Carol King waves *\u200bhard*_"
    assert message_text(out("plain", message_kind="notice"), "slack") == Text("plain")


def test_file_caption_names_the_sender_and_links_what_is_not_copied() -> None:
    missing = Attachment("big.iso", "application/octet-stream", 10, "", url="https://files.test/big.iso")
    opaque = Attachment("photo.jpg", "image/jpeg", 10, "", url="mxc://corp.test/abc")
    caption = file_caption(out("see these"), "slack", [missing, opaque])
    assert (
        wire(caption, "slack")
        == "*Carol King (IRC)*: see these\n<https://files.test/big.iso|big.iso>\nphoto.jpg"
    )
    assert wire(with_links(Text(), [opaque]), "slack") == "photo.jpg"


def test_overlong_text_is_cut_within_the_limit() -> None:
    text = Text("<&>" * 3500, (Span("bold", 0, 10_500),))  # 45,502 characters as mrkdwn
    rendered = wire(text, "slack")
    assert MAX_TEXT * 0.8 < len(rendered) <= MAX_TEXT and rendered.endswith(" …")
    assert wire(Text("short"), "slack") == "short"


def test_username_and_icon() -> None:
    assert username(out(sender=Sender("m", "x", "N" * 100, "N", "M"))) == "N" * 80
    assert icon_url(out(), "") is None
    assert icon_url(out(), "https://img.test/{employee_id}.png") == "https://img.test/E%207%2Fx.png"
    no_id = Sender("irc", "dave", "Dave (IRC)", "Dave", "IRC")
    assert icon_url(out(sender=no_id), "https://img.test/{employee_id}.png") is None
    assert (
        icon_url(out(sender=no_id), "https://img.test/{network}/{native_id}") == "https://img.test/irc/dave"
    )
    mxc = Sender("matrix", "@a:b", "A (Matrix)", "A", "Matrix", avatar_url="mxc://b/avatar")
    assert icon_url(out(sender=mxc), "") is None


def _api_error(status: int, error: str, headers: dict[str, str] | None = None) -> SlackApiError:
    response = AsyncSlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.test/api/chat.postMessage",
        req_args={},
        data={"ok": False, "error": error},
        headers=headers or {},
        status_code=status,
    )
    return SlackApiError(error, response)


@pytest.mark.parametrize(
    ("exc", "permanent", "retry_after"),
    [
        (_api_error(429, "ratelimited", {"Retry-After": "3"}), False, 3.0),
        (_api_error(429, "ratelimited", {"retry-after": "0"}), False, 1.0),
        (_api_error(500, "internal_error"), False, None),
        (_api_error(503, ""), False, None),
        (_api_error(200, "fatal_error"), False, None),
        (_api_error(200, "channel_not_found"), True, None),
        (_api_error(200, "not_in_channel"), True, None),
        (_api_error(200, "invalid_auth"), True, None),
        (_api_error(200, "msg_too_long"), True, None),
        (ConnectionResetError("reset"), False, None),
        (TimeoutError(), False, None),
    ],
)
def test_errors_are_classified(exc: BaseException, permanent: bool, retry_after: float | None) -> None:
    error = to_delivery_error(exc, "post")
    assert (error.permanent, error.retry_after) == (permanent, retry_after)
    assert str(error).startswith("post: ")


def test_signature_verification() -> None:
    now = time.time()
    ts = str(int(now))
    body = b'{"type":"event_callback"}'
    good = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature("s3cret", ts, body)}
    assert verified("s3cret", good, body, now)
    assert not verified("other", good, body, now)
    assert not verified("s3cret", good, body + b" ", now)
    assert not verified("s3cret", good, body, now + 301)
    assert not verified("s3cret", good, body, now - 301)  # from the future
    assert not verified("s3cret", {**good, "X-Slack-Request-Timestamp": "-1"}, body, now)
    assert not verified("s3cret", {"X-Slack-Signature": good["X-Slack-Signature"]}, body, now)
    assert not verified("s3cret", {"X-Slack-Request-Timestamp": ts}, body, now)


def test_settings() -> None:
    base = {"bot_token": "xoxb-1", "app_token": "xapp-1"}
    settings = SlackSettings.from_options({**base, "api_url": "http://127.0.0.1:9/api"})
    assert settings.base_url == "http://127.0.0.1:9/api/" and settings.max_file_bytes == 20 * 1024 * 1024
    events = SlackSettings.from_options(
        {"bot_token": "xoxb-1", "receive": "events", "signing_secret": "s", "listen": "[::1]:3000"}
    )
    assert events.listen_address() == ("::1", 3000)
    for bad, message in [
        ({"bot_token": "xoxp-user"}, "xoxb"),
        ({"bot_token": "xoxb-1"}, "app_token"),
        ({**base, "receive": "webhook"}, "socket or events"),
        ({**base, "receive": "events", "listen": "1.2.3.4:5"}, "signing_secret"),
        ({**base, "receive": "events", "signing_secret": "s", "listen": "nowhere"}, "host:port"),
        ({**base, "max_file_mb": 0}, "positive"),
        ({**base, "icon_url_template": "https://x/{email}"}, "icon_url_template"),
        ({**base, "api_url": "slack.com/api"}, "http"),
    ]:
        with pytest.raises(ValueError, match=message):
            SlackSettings.from_options(bad)
