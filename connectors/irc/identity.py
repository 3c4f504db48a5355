"""Who is speaking on IRC: a services account the server vouches for, or only a nick.

A nick proves nothing: anyone may take `alice` while Alice is away. With
`identify: account` a sender is their services account, learnt from what the
server itself says (IRCv3 `account` tag, extended JOIN, ACCOUNT, WHOX); the
account name is the native id the directory's `irc` handle must match. A
sender who is not logged in gets `nick:<nick>`, which no directory handle can
match (IRC account names are nicks and never contain `:`), so the directory's
`unmapped` rule applies to them whatever nick they chose.

`identify: nick` is for servers without services: the nick is the native id,
and every message is flagged `unverified_identity`. A server that offers no
account capabilities while `identify` was left unset gets neither: its senders
are all unverified and unmapped (mode `unverified`), since mapping them by
nick was never asked for.
"""

from __future__ import annotations

from typing import Literal

Mode = Literal["account", "nick", "unverified"]
IDENTIFY_CHOICES = ("account", "nick")
UNVERIFIED = "unverified_identity"
NICK_PREFIX = "nick:"
# Either lets us know a member's account; account-notify keeps it current.
ACCOUNT_CAPS = frozenset({"account-tag", "extended-join"})
WANTED_CAPS = ("account-tag", "extended-join", "account-notify", "message-tags", "server-time")
# How servers say "no account": `*` in extended JOIN and ACCOUNT, `0` in WHOX.
_NO_ACCOUNT = frozenset({"", "*", "0"})


def choose_mode(identify: str, acked: set[str]) -> Mode:
    """The mode a session runs in, given the config and the capabilities the server granted."""
    if identify == "nick":
        return "nick"
    if ACCOUNT_CAPS & acked:
        return "account"
    if identify == "account":
        raise ValueError(
            "identify: account, but the server offers neither account-tag nor extended-join "
            "(it has no services accounts); set identify: nick only for a server without services"
        )
    return "unverified"


def account_value(value: str | None) -> str | None:
    """An account name as a server wrote it, or None for "not logged in"."""
    if value is None or value in _NO_ACCOUNT:
        return None
    return value


def sender_id(mode: Mode, nick: str, account: str | None) -> tuple[str, tuple[str, ...]]:
    """The native id the core sees for a sender, and the flags their messages carry."""
    if mode == "nick":
        return nick, (UNVERIFIED,)
    if mode == "account" and account:
        return account, ()
    return NICK_PREFIX + nick, (UNVERIFIED,) if mode == "unverified" else ()
