"""`POST /api/{method}`: the Web API methods a bridge uses, with Slack's errors."""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .model import Channel, File, Message, TokenInfo
from .text import normalize_wire_text, rich_text_blocks

if TYPE_CHECKING:
    from .emulator import SlackEmulator

MAX_TEXT = 40_000


class ApiError(Exception):
    """A Slack `{"ok": false, "error": ...}` answer (HTTP 200 unless `status` says otherwise)."""

    def __init__(
        self,
        error: str,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}
        self.extra = extra or {}


@dataclass
class ApiCall:
    """One Web API request as the emulator saw it (token left out)."""

    method: str
    params: dict[str, Any]
    token_kind: str | None
    status: int
    ok: bool
    error: str | None
    at: float = field(default_factory=time.time)


@dataclass
class InjectedFault:
    error: str
    status: int
    times: int
    retry_after: int | None
    delay: float


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    token: TokenInfo

    def arg(self, key: str, *, required: bool = False, missing: str = "invalid_arguments") -> str | None:
        value = self.params.get(key)
        if value is None or value == "":
            if required:
                raise ApiError(missing)
            return None
        return value if isinstance(value, str) else str(value)

    def flag(self, key: str) -> bool:
        value = self.params.get(key)
        if isinstance(value, bool):
            return value
        return str(value).lower() in ("1", "true", "yes") if value is not None else False

    def number(self, key: str, default: int) -> int:
        value = self.params.get(key)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ApiError("invalid_arguments") from None

    def structured(self, key: str) -> Any:
        """Blocks, attachments and file lists: JSON strings in forms, structures in JSON bodies."""
        value = self.params.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise ApiError(f"invalid_{key}") from None
        return value


def _metadata(call: Call) -> dict[str, Any] | None:
    """chat.postMessage's `metadata`: from an app only, `event_type` a non-empty string and
    `event_payload` an object, as Slack checks them."""
    try:
        meta = call.structured("metadata")
    except ApiError:
        raise ApiError("invalid_metadata_format") from None
    if meta is None:
        return None
    if call.token.kind != "bot":
        raise ApiError("metadata_must_be_sent_from_app")
    event_type = meta.get("event_type") if isinstance(meta, dict) else None
    if not isinstance(event_type, str) or not event_type or not isinstance(meta.get("event_payload"), dict):
        raise ApiError("invalid_metadata_format")
    return meta


Handler = Callable[[Call], Awaitable[dict[str, Any]]]

# Which token kinds each method takes; app-level tokens open sockets and nothing else.
_WEB = ("bot", "user")


def _cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def _uncursor(kind: str, cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        decoded = base64.b64decode(cursor.encode()).decode()
    except ValueError:
        raise ApiError("invalid_cursor") from None
    prefix, _, value = decoded.partition(":")
    if prefix != kind or not value:
        raise ApiError("invalid_cursor")
    return value


class WebApi:
    def __init__(self, emu: SlackEmulator) -> None:
        self.emu = emu
        self.calls: list[ApiCall] = []
        self.faults: dict[str, list[InjectedFault]] = {}
        self.methods: dict[str, tuple[Handler, tuple[str, ...]]] = {
            "api.test": (self.api_test, ("bot", "user", "app")),
            "auth.test": (self.auth_test, _WEB),
            "apps.connections.open": (self.apps_connections_open, ("app",)),
            "team.info": (self.team_info, _WEB),
            "chat.postMessage": (self.chat_post_message, _WEB),
            "chat.update": (self.chat_update, _WEB),
            "chat.delete": (self.chat_delete, _WEB),
            "chat.postEphemeral": (self.chat_post_ephemeral, _WEB),
            "chat.getPermalink": (self.chat_get_permalink, _WEB),
            "reactions.add": (self.reactions_add, _WEB),
            "reactions.remove": (self.reactions_remove, _WEB),
            "conversations.info": (self.conversations_info, _WEB),
            "conversations.members": (self.conversations_members, _WEB),
            "conversations.history": (self.conversations_history, _WEB),
            "conversations.replies": (self.conversations_replies, _WEB),
            "conversations.join": (self.conversations_join, _WEB),
            "conversations.list": (self.conversations_list, _WEB),
            "users.info": (self.users_info, _WEB),
            "users.list": (self.users_list, _WEB),
            "users.lookupByEmail": (self.users_lookup_by_email, _WEB),
            "files.getUploadURLExternal": (self.files_get_upload_url_external, _WEB),
            "files.completeUploadExternal": (self.files_complete_upload_external, _WEB),
            "files.info": (self.files_info, _WEB),
        }

    # -- HTTP plumbing ------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params, json_body = await self._params(request)
        token_kind: str | None = None
        try:
            fault = self._take_fault(method)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                raise ApiError(fault.error, status=fault.status, headers=headers)
            entry = self.methods.get(method)
            if entry is None:
                raise ApiError("unknown_method", extra={"req_method": method})
            handler, kinds = entry
            token = self._token(request, params, json_body)
            token_kind = token.kind
            if token.kind not in kinds:
                raise ApiError("not_allowed_token_type")
            retry_after = self.emu._method_limiter_for(method).acquire(method)
            if retry_after is not None:
                raise ApiError("ratelimited", status=429, headers={"Retry-After": str(retry_after)})
            body = await handler(Call(method, params, token))
            status, ok, error = 200, True, None
            response = web.json_response({"ok": True, **body}, headers=self._scope_headers())
        except ApiError as e:
            status, ok, error = e.status, False, e.error
            response = web.json_response(
                {"ok": False, "error": e.error, **e.extra}, status=e.status, headers=e.headers
            )
        logged = {k: v for k, v in params.items() if k != "token"}
        self.calls.append(ApiCall(method, logged, token_kind, status, ok, error))
        self.emu._changed()
        return response

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], bool]:
        params: dict[str, Any] = dict(request.query)
        json_body = False
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    body = None
                if isinstance(body, dict):
                    # Slack never reads a token from a JSON body: it must come in the header.
                    params.update({k: v for k, v in body.items() if k != "token"})
                json_body = True
            else:
                form = await request.post()
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
        return params, json_body

    def _token(self, request: web.Request, params: dict[str, Any], json_body: bool) -> TokenInfo:
        header = request.headers.get("Authorization", "")
        token: str | None = None
        if header.startswith("Bearer "):
            token = header[len("Bearer ") :].strip()
        elif not json_body:
            token = params.get("token")
        params.pop("token", None)
        if not token:
            raise ApiError("not_authed")
        if token in self.emu.ws.revoked:
            raise ApiError("token_revoked")
        info = self.emu.ws.tokens.get(token)
        if info is None:
            raise ApiError("invalid_auth")
        return info

    def _scope_headers(self) -> dict[str, str]:
        return {"X-OAuth-Scopes": self.emu.bot_scopes}

    def _take_fault(self, method: str) -> InjectedFault | None:
        queue = self.faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        return fault

    # -- helpers ------------------------------------------------------------------

    def _channel(self, call: Call, key: str = "channel", *, by_name: bool = False) -> Channel:
        ref = call.arg(key, required=True, missing="channel_not_found")
        assert ref is not None
        ws = self.emu.ws
        channel = ws.channels.get(ref)
        if channel is None and by_name:
            name = ref.removeprefix("#")
            channel = next((c for c in ws.channels.values() if c.name == name), None)
        # Private channels do not exist for a token whose user is not in them.
        if channel is None or (channel.is_private and call.token.user_id not in channel.members):
            raise ApiError("channel_not_found")
        return channel

    def _readable(self, call: Call, channel: Channel) -> None:
        if call.token.user_id not in channel.members:
            raise ApiError("not_in_channel")

    def _message(self, channel: Channel, ts: str | None) -> Message:
        msg = channel.by_ts.get(ts or "")
        if msg is None or msg.deleted:
            raise ApiError("message_not_found")
        return msg

    def _author_check(self, call: Call, msg: Message, error: str) -> None:
        ws = self.emu.ws
        if call.token.kind == "bot":
            if msg.bot_id != ws.bot_id:
                raise ApiError(error)
        elif msg.user != call.token.user_id or msg.bot_id is not None:
            user = ws.users.get(call.token.user_id or "")
            if not (user and user.is_admin and error == "cant_delete_message"):
                raise ApiError(error)

    # -- methods ------------------------------------------------------------------

    async def api_test(self, call: Call) -> dict[str, Any]:
        return {"args": {k: v for k, v in call.params.items() if isinstance(v, str)}}

    async def auth_test(self, call: Call) -> dict[str, Any]:
        ws = self.emu.ws
        user = ws.users[call.token.user_id or ws.bot_user_id]
        body = {
            "url": f"https://{ws.domain}.slack.com/",
            "team": ws.team_name,
            "user": user.name,
            "team_id": ws.team_id,
            "user_id": user.id,
            "is_enterprise_install": False,
        }
        if call.token.kind == "bot":
            body["bot_id"] = ws.bot_id
        return body

    async def apps_connections_open(self, call: Call) -> dict[str, Any]:
        ticket = self.emu.delivery.new_ticket()
        return {"url": f"{self.emu.ws_base_url}link/?ticket={ticket}&app_id={self.emu.ws.app_id}"}

    async def team_info(self, call: Call) -> dict[str, Any]:
        ws = self.emu.ws
        return {
            "team": {
                "id": ws.team_id,
                "name": ws.team_name,
                "domain": ws.domain,
                "email_domain": "",
                "icon": {"image_default": True},
                "url": f"https://{ws.domain}.slack.com/",
            }
        }

    async def chat_post_message(self, call: Call) -> dict[str, Any]:
        emu, ws = self.emu, self.emu.ws
        channel = self._channel(call, by_name=True)
        raw_text = call.arg("text") or ""
        blocks = call.structured("blocks")
        attachments = call.structured("attachments")
        metadata = _metadata(call)
        if not raw_text and not blocks and not attachments:
            raise ApiError("no_text")
        if len(raw_text) > MAX_TEXT:
            raise ApiError("msg_too_long")
        if channel.is_archived:
            raise ApiError("is_archived")
        member = call.token.user_id in channel.members
        if not member and not (call.token.kind == "bot" and emu.chat_write_public and not channel.is_private):
            raise ApiError("not_in_channel")
        thread_ts = call.arg("thread_ts")
        if thread_ts is not None:
            parent = channel.by_ts.get(thread_ts)
            if parent is not None:
                if parent.deleted:
                    raise ApiError("thread_not_found")
                thread_ts = ws.root_ts(channel, thread_ts)
            # An unknown thread_ts (say a float that lost its trailing zeros) is accepted
            # by Slack and the reply lands in a thread nobody can open.
        retry_after = emu.post_limiter.acquire(channel.id)
        if retry_after is not None:
            raise ApiError("ratelimited", status=429, headers={"Retry-After": str(retry_after)})
        text = normalize_wire_text(raw_text)
        as_bot = call.token.kind == "bot"
        username = call.arg("username") if as_bot else None
        icon_url = call.arg("icon_url") if as_bot else None
        icon_emoji = call.arg("icon_emoji") if as_bot else None
        broadcast = thread_ts is not None and call.flag("reply_broadcast")
        if broadcast:
            subtype: str | None = "thread_broadcast"
        elif as_bot and (username or icon_url or icon_emoji):
            # A post with a customized name or icon is a classic bot_message.
            subtype = "bot_message"
        else:
            subtype = None
        msg = Message(
            channel=channel.id,
            ts=ws.clock.next(),
            text=text,
            raw_text=raw_text,
            user=call.token.user_id,
            bot_id=ws.bot_id if as_bot else None,
            app_id=ws.app_id if as_bot else None,
            username=username,
            icon_url=icon_url,
            icon_emoji=icon_emoji,
            subtype=subtype,
            thread_ts=thread_ts,
            reply_broadcast=broadcast,
            blocks=blocks or rich_text_blocks(text) or None,
            attachments=attachments,
            metadata=metadata,
        )
        ws.store(msg)
        emu._emit_message(msg)
        message = ws.message_dict(msg)
        return {"channel": channel.id, "ts": msg.ts, "message": message}

    async def chat_update(self, call: Call) -> dict[str, Any]:
        emu, ws = self.emu, self.emu.ws
        channel = self._channel(call)
        msg = self._message(channel, call.arg("ts"))
        self._author_check(call, msg, "cant_update_message")
        raw_text = call.arg("text")
        blocks = call.structured("blocks")
        attachments = call.structured("attachments")
        if raw_text is None and blocks is None and attachments is None:
            raise ApiError("no_text")
        if raw_text is not None and len(raw_text) > MAX_TEXT:
            raise ApiError("msg_too_long")
        text = normalize_wire_text(raw_text) if raw_text is not None else msg.text
        emu._edit(
            msg, text, raw_text=raw_text, blocks=blocks, attachments=attachments, editor=call.token.user_id
        )
        return {"channel": channel.id, "ts": msg.ts, "text": msg.text, "message": ws.message_dict(msg)}

    async def chat_delete(self, call: Call) -> dict[str, Any]:
        channel = self._channel(call)
        msg = self._message(channel, call.arg("ts"))
        if msg.tombstone:
            raise ApiError("message_not_found")
        self._author_check(call, msg, "cant_delete_message")
        self.emu._delete(msg)
        return {"channel": channel.id, "ts": msg.ts}

    async def chat_post_ephemeral(self, call: Call) -> dict[str, Any]:
        emu, ws = self.emu, self.emu.ws
        channel = self._channel(call)
        user = call.arg("user", required=True, missing="user_not_found")
        if user not in ws.users:
            raise ApiError("user_not_found")
        if user not in channel.members:
            raise ApiError("user_not_in_channel")
        text = call.arg("text") or ""
        if not text and not call.structured("blocks") and not call.structured("attachments"):
            raise ApiError("no_text")
        ts = ws.clock.next()
        emu._ephemerals.append(
            Ephemeral(
                channel=channel.id,
                user=user,
                text=normalize_wire_text(text),
                ts=ts,
                thread_ts=call.arg("thread_ts"),
                blocks=call.structured("blocks"),
                username=call.arg("username"),
                icon_url=call.arg("icon_url"),
            )
        )
        return {"message_ts": ts}

    async def chat_get_permalink(self, call: Call) -> dict[str, Any]:
        channel = self._channel(call)
        msg = self._message(channel, call.arg("message_ts", required=True, missing="message_not_found"))
        link = f"https://{self.emu.ws.domain}.slack.com/archives/{channel.id}/p{msg.ts.replace('.', '')}"
        if msg.is_reply:
            link += f"?thread_ts={msg.thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    async def reactions_add(self, call: Call) -> dict[str, Any]:
        return self._react(call, removed=False)

    async def reactions_remove(self, call: Call) -> dict[str, Any]:
        return self._react(call, removed=True)

    def _react(self, call: Call, *, removed: bool) -> dict[str, Any]:
        """reactions.add/remove: as the token's own user (a bot reacts as its bot user), on a
        message in a channel that user is in; `name` is the shortcode without colons."""
        channel = self._channel(call)
        self._readable(call, channel)
        ts = call.arg("timestamp", required=True, missing="no_item_specified")
        name = call.arg("name", required=True, missing="invalid_name")
        assert ts is not None and name is not None and call.token.user_id is not None
        self.emu.react(channel, ts, call.token.user_id, name.strip(":"), removed=removed)
        return {}

    async def conversations_info(self, call: Call) -> dict[str, Any]:
        channel = self._channel(call)
        info = self.emu.ws.channel_dict(channel, call.token.user_id)
        if call.flag("include_num_members"):
            info["num_members"] = len(channel.members)
        return {"channel": info}

    async def conversations_members(self, call: Call) -> dict[str, Any]:
        channel = self._channel(call)
        limit = max(1, min(call.number("limit", 100), 1000))
        start = _uncursor("user", call.arg("cursor"))
        members = channel.members
        # A cursor whose member has left ends the listing rather than starting over.
        index = members.index(start) if start in members else (0 if start is None else len(members))
        page = members[index : index + limit]
        rest = members[index + limit :]
        return {
            "members": page,
            "response_metadata": {"next_cursor": _cursor("user", rest[0]) if rest else ""},
        }

    def _window(self, call: Call, messages: list[Message], *, newest_first: bool) -> dict[str, Any]:
        oldest = call.arg("oldest") or "0"
        latest = call.arg("latest")
        inclusive = call.flag("inclusive")

        def inside(m: Message) -> bool:
            low = float(m.ts) >= float(oldest) if inclusive else float(m.ts) > float(oldest)
            if latest is None:
                return low
            high = float(m.ts) <= float(latest) if inclusive else float(m.ts) < float(latest)
            return low and high

        selected = [m for m in messages if inside(m)]
        if newest_first:
            selected.reverse()
        start = _uncursor("next_ts", call.arg("cursor"))
        if start is not None:
            selected = [m for m in selected if (m.ts <= start if newest_first else m.ts >= start)]
        limit = max(1, min(call.number("limit", 100 if newest_first else 1000), 1000))
        page, rest = selected[:limit], selected[limit:]
        ws, with_metadata = self.emu.ws, call.flag("include_all_metadata")
        return {
            "messages": [ws.message_dict(m, metadata=with_metadata) for m in page],
            "has_more": bool(rest),
            "response_metadata": {"next_cursor": _cursor("next_ts", rest[0].ts) if rest else ""},
        }

    async def conversations_history(self, call: Call) -> dict[str, Any]:
        channel = self._channel(call)
        self._readable(call, channel)
        # Thread replies show in the channel only when broadcast; a reply to an unknown
        # thread_ts shows nowhere.
        visible = [m for m in channel.messages if not m.deleted and (not m.is_reply or m.reply_broadcast)]
        body = self._window(call, visible, newest_first=True)
        body.update({"pin_count": 0, "channel_actions_ts": None, "channel_actions_count": 0})
        return body

    async def conversations_replies(self, call: Call) -> dict[str, Any]:
        ws = self.emu.ws
        channel = self._channel(call)
        self._readable(call, channel)
        ts = call.arg("ts", required=True, missing="thread_not_found")
        assert ts is not None
        root = ws.root_ts(channel, ts)
        parent = channel.by_ts.get(root)
        if parent is None or parent.is_reply or (parent.deleted and not parent.tombstone):
            raise ApiError("thread_not_found")
        thread = [parent, *ws.replies(channel, parent)]
        return self._window(call, thread, newest_first=False)

    async def conversations_join(self, call: Call) -> dict[str, Any]:
        ws = self.emu.ws
        channel = self._channel(call)
        if channel.is_private:
            raise ApiError("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise ApiError("is_archived")
        body: dict[str, Any] = {}
        user_id = call.token.user_id or ws.bot_user_id
        if user_id in channel.members:
            body.update(
                {"warning": "already_in_channel", "response_metadata": {"warnings": ["already_in_channel"]}}
            )
        else:
            self.emu._join(channel, user_id)
        body["channel"] = ws.channel_dict(channel, user_id)
        return body

    async def conversations_list(self, call: Call) -> dict[str, Any]:
        ws = self.emu.ws
        types = (call.arg("types") or "public_channel").split(",")
        exclude_archived = call.flag("exclude_archived")
        listed = [
            c
            for c in ws.channels.values()
            if ("private_channel" in types and c.is_private and call.token.user_id in c.members)
            or ("public_channel" in types and not c.is_private)
        ]
        if exclude_archived:
            listed = [c for c in listed if not c.is_archived]
        return self._page(
            call,
            "channel",
            [c.id for c in listed],
            lambda cid: ws.channel_dict(ws.channels[cid], call.token.user_id),
        )

    def _page(self, call: Call, kind: str, ids: list[str], render: Callable[[str], Any]) -> dict[str, Any]:
        limit = max(1, min(call.number("limit", 100), 1000))
        start = _uncursor(kind, call.arg("cursor"))
        index = ids.index(start) if start in ids else (0 if start is None else len(ids))
        page, rest = ids[index : index + limit], ids[index + limit :]
        key = "channels" if kind == "channel" else "members"
        return {
            key: [render(i) for i in page],
            "response_metadata": {"next_cursor": _cursor(kind, rest[0]) if rest else ""},
        }

    async def users_info(self, call: Call) -> dict[str, Any]:
        ws = self.emu.ws
        user = ws.users.get(call.arg("user", required=True, missing="user_not_found") or "")
        if user is None:
            raise ApiError("user_not_found")
        return {"user": ws.user_dict(user)}

    async def users_list(self, call: Call) -> dict[str, Any]:
        ws = self.emu.ws
        body = self._page(call, "user", list(ws.users), lambda uid: ws.user_dict(ws.users[uid]))
        body["cache_ts"] = int(time.time())
        return body

    async def users_lookup_by_email(self, call: Call) -> dict[str, Any]:
        ws = self.emu.ws
        email = (call.arg("email", required=True, missing="users_not_found") or "").lower()
        for user in ws.users.values():
            if user.email and user.email.lower() == email:
                return {"user": ws.user_dict(user)}
        raise ApiError("users_not_found")

    async def files_get_upload_url_external(self, call: Call) -> dict[str, Any]:
        ws = self.emu.ws
        filename = call.arg("filename")
        length = call.params.get("length")
        if not filename or length in (None, ""):
            missing = "filename" if not filename else "length"
            raise ApiError(
                "invalid_arguments",
                extra={"response_metadata": {"messages": [f"[ERROR] missing required field: {missing}"]}},
            )
        f = File(
            id=ws.ids.new("F"),
            name=filename,
            title=filename,
            mimetype=mimetypes.guess_type(filename)[0] or "application/octet-stream",
            user=call.token.user_id or ws.bot_user_id,
            created=int(time.time()),
            declared_length=call.number("length", 0),
            alt_txt=call.arg("alt_txt"),
            upload_token=secrets.token_urlsafe(18),
        )
        ws.files[f.id] = f
        return {"upload_url": f"{self.emu.root_url}upload/v1/{f.upload_token}", "file_id": f.id}

    async def files_complete_upload_external(self, call: Call) -> dict[str, Any]:
        emu, ws = self.emu, self.emu.ws
        items = call.structured("files")
        if not isinstance(items, list) or not items:
            raise ApiError("invalid_arguments")
        files: list[File] = []
        for item in items:
            f = ws.files.get(item.get("id", "")) if isinstance(item, dict) else None
            if f is None or f.user != (call.token.user_id or ws.bot_user_id) or f.data is None:
                raise ApiError("file_not_found")
            files.append(f)
        targets: list[Channel] = []
        channel_ids = [call.arg("channel_id")] if call.arg("channel_id") else []
        channel_ids += [c for c in (call.arg("channels") or "").split(",") if c]
        for cid in dict.fromkeys(c for c in channel_ids if c):
            call.params["_target"] = cid
            channel = self._channel(call, "_target")
            self._readable(call, channel)
            targets.append(channel)
        call.params.pop("_target", None)
        thread_ts = call.arg("thread_ts")
        for f, item in zip(files, items, strict=True):
            if item.get("title"):
                f.title = item["title"]
            f.completed = True
        if targets:
            comment = call.arg("initial_comment") or ""
            blocks = None if comment else call.structured("blocks")
            emu._share_files_later(call.token, targets, files, comment, blocks, thread_ts)
        return {"files": [ws.file_dict(f) for f in files]}

    async def files_info(self, call: Call) -> dict[str, Any]:
        ws = self.emu.ws
        f = ws.files.get(call.arg("file", required=True, missing="file_not_found") or "")
        if f is None or not f.completed:
            raise ApiError("file_not_found")
        return {
            "file": ws.file_dict(f, with_shares=True),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }


@dataclass(frozen=True)
class Ephemeral:
    channel: str
    user: str
    text: str
    ts: str
    thread_ts: str | None
    blocks: Any
    username: str | None
    icon_url: str | None
