"""How an `Outbound` looks on Slack: the text, the sender's name and icon, file captions."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from bridge.model import Attachment, Outbound
from bridge.text import Text, TextBuilder
from connectors.slack.format import render

MAX_TEXT = 40_000  # characters Slack accepts in `text`
MAX_USERNAME = 80
_ELLIPSIS = " …"


def message_text(out: Outbound, network: str) -> Text:
    """The words to post: an emote reads `_Name waves_`, as Slack shows /me."""
    if out.message_kind != "emote":
        return out.text
    b = TextBuilder()
    b.append(out.sender.name + " ")
    b.extend(out.text)
    b.add_span("italic", 0)
    return b.build()


def file_caption(out: Outbound, network: str, links: Iterable[Attachment]) -> Text:
    """The comment of a file share, which Slack shows as the bot: it names the sender itself."""
    b = TextBuilder()
    b.append(out.sender.display_name)
    b.add_span("bold", 0)
    text = message_text(out, network)
    if text:
        b.append(": ")
        b.extend(text)
    return with_links(b.build(), links)


def with_links(text: Text, attachments: Iterable[Attachment]) -> Text:
    """`text` and a line per file that is not copied: its name, linked where a reader can open it."""
    b = TextBuilder()
    b.extend(text)
    for a in attachments:
        if b.length:
            b.append("\n")
        start = b.length
        b.append(a.name or "file")
        if a.url.startswith(("http://", "https://")):
            b.add_span("link", start, url=a.url)
    return b.build()


def wire(text: Text, network: str) -> str:
    """`text` as mrkdwn within Slack's length limit, cut short (and marked so) when over it."""
    rendered = render(text, network)
    if len(rendered) <= MAX_TEXT:
        return rendered
    # Escapes make the length of a rendering unknowable up front; start from the
    # average and shorten until it fits (once, nearly always).
    keep = len(text.plain) * (MAX_TEXT - len(_ELLIPSIS)) // len(rendered)
    while keep > 0:
        shorter = render(text.slice(0, keep), network) + _ELLIPSIS
        if len(shorter) <= MAX_TEXT:
            return shorter
        keep = keep * 9 // 10
    return _ELLIPSIS.strip()


def username(out: Outbound) -> str:
    return out.sender.display_name[:MAX_USERNAME] or out.sender.name[:MAX_USERNAME]


def icon_url(out: Outbound, template: str) -> str | None:
    """The sender's avatar, or one made from `template`; only http(s) URLs Slack can fetch."""
    url = out.sender.avatar_url
    if not url and template:
        fields = {
            "network": out.sender.network,
            "native_id": out.sender.native_id,
            "employee_id": out.sender.employee_id or "",
            "name": out.sender.name,
        }
        if "{employee_id}" in template and not out.sender.employee_id:
            return None
        url = template.format(**{k: quote(v, safe="") for k, v in fields.items()})
    return url if url.startswith(("http://", "https://")) else None
