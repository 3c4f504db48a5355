"""A directory read from LDAP (OpenLDAP, Active Directory, 389 DS).

The whole directory (people, their groups, who is disabled) is loaded into
memory at start and reloaded every `refresh_seconds`, so `resolve` is a dict
lookup. A handle not in memory (someone added since the last reload) is
searched on the server by `lookup`, one query per unknown handle at a time and
at most once per `negative_cache_seconds` for a handle that is not there.

ldap3 is synchronous: every LDAP operation runs off the event loop, on one of
two long-lived connections (reloads, cold lookups), each with its own thread,
so a 10,000-person reload never delays a cold lookup.

When the server is unreachable the last loaded directory keeps being served;
a reload is all-or-nothing, so a failure never re-enables or unmaps anyone.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import math
import re
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException
from ldap3.utils.conv import escape_filter_chars

from bridge.directory import handle_key
from bridge.model import Identity

log = logging.getLogger("switchboard.directory")

PAGE_SIZE = 500
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
# While the server is down, try again this often even if refresh_seconds is longer.
OUTAGE_RETRY_SECONDS = 10.0
DEFAULT_HANDLES = {"matrix": "matrixId", "slack": "slackUserId", "irc": "ircNick"}

T = TypeVar("T")
HandleKey = tuple[str, str]


class LdapConfigError(ValueError):
    """The directory options are unusable; raised before any server is contacted."""


class DirectoryUnavailable(RuntimeError):
    """The directory could not be loaded (server unreachable, bind refused, search failed)."""


class LdapOperationError(LDAPException):
    """The server answered an operation with an error result."""


@dataclass(frozen=True)
class AttributeMap:
    """Which LDAP attributes hold each Identity field; several names mean 'first one present'."""

    employee_id: tuple[str, ...] = ("employeeNumber",)
    name: tuple[str, ...] = ("displayName", "cn")
    department: tuple[str, ...] = ("departmentNumber", "ou")
    handles: tuple[tuple[str, str], ...] = tuple(DEFAULT_HANDLES.items())

    def requested(self) -> list[str]:
        names = [*self.employee_id, *self.name, *self.department, *(a for _, a in self.handles)]
        return list(dict.fromkeys(names))

    def handle_attribute(self, network: str) -> str | None:
        for net, attribute in self.handles:
            if net == network:
                return attribute
        return None


@dataclass(frozen=True)
class LdapSettings:
    url: str
    host: str
    port: int
    use_ssl: bool
    starttls: bool
    bind_dn: str | None
    bind_password: str | None
    people_base: str
    people_filter: str
    group_base: str | None
    group_filter: str
    disabled_filter: str | None
    attributes: AttributeMap
    refresh_seconds: float
    negative_cache_seconds: float
    timeout_seconds: float
    tls_ca_file: str | None


@dataclass(frozen=True)
class DirectoryReport:
    """What `switchboard directory check` prints: the directory as the bridge would load it now."""

    people: int
    disabled: int
    groups: int
    without_handles: list[str]  # employee ids of people no network can resolve
    conflicts: dict[str, list[str]]  # "network:handle" -> employee ids claiming it (mapped to nobody)
    skipped: list[str]  # DNs matched by people_filter that lack an employee id attribute


@dataclass
class _Loaded:
    people: dict[str, Identity] = field(default_factory=dict)  # dn_key -> person
    groups: int = 0
    skipped: list[str] = field(default_factory=list)


def normalize_filter(text: str) -> str:
    """Admins write `objectClass=person` as often as `(objectClass=person)`; both work."""
    text = text.strip()
    return text if text.startswith("(") else f"({text})"


def and_filter(*filters: str | None) -> str:
    parts = [normalize_filter(f) for f in filters if f and f.strip()]
    if not parts:
        return "(objectClass=*)"
    return parts[0] if len(parts) == 1 else f"(&{''.join(parts)})"


def equality_filter(attribute: str, value: str) -> str:
    """`(attribute=value)` with the value escaped (RFC 4515), so a nick like `*` matches only itself."""
    return f"({attribute}={escape_filter_chars(value)})"


_DN_SPACES = re.compile(r"\s*([,=+])\s*")


def dn_key(dn: str) -> str:
    """A comparison key for DNs: `member` values are typed by admins, entry DNs come from the server."""
    key = dn.strip().lower()
    # Most DNs have no spaces at all; skipping the regex for them matters at 10,000 people.
    return _DN_SPACES.sub(r"\1", key) if " " in key or "\t" in key else key


def describe(exc: BaseException) -> str:
    """An exception's message, without the nested 1-tuples ldap3 wraps socket errors in."""
    text = str(exc)
    while text.startswith("(") and text.endswith(",)"):
        try:
            inner = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            break
        if not (isinstance(inner, tuple) and len(inner) == 1):
            break
        text = str(inner[0])
    return text


def _text(value: Any) -> str:
    # Without schema ldap3 returns str, or bytes when a value is not UTF-8.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _first(attrs: Mapping[str, Any], names: Sequence[str]) -> str:
    for name in names:
        values = attrs.get(name)
        if isinstance(values, list | tuple):
            for value in values:
                if _text(value).strip():
                    return _text(value).strip()
        elif values is not None and _text(values).strip():
            return _text(values).strip()
    return ""


def _values(attrs: Mapping[str, Any], name: str) -> list[str]:
    values = attrs.get(name)
    if values is None:
        return []
    items = values if isinstance(values, list | tuple) else [values]
    return [_text(v).strip() for v in items if _text(v).strip()]


def person_from_entry(
    attrs: Mapping[str, Any], mapping: AttributeMap, groups: Iterable[str], enabled: bool
) -> Identity | None:
    """An Identity from one entry's attributes; None when it has no employee id to archive under."""
    employee_id = _first(attrs, mapping.employee_id)
    if not employee_id:
        return None
    handles: list[tuple[str, str]] = []
    for network, attribute in mapping.handles:
        for value in _values(attrs, attribute):
            if (network, value) not in handles:
                handles.append((network, value))
    return Identity(
        employee_id=employee_id,
        name=_first(attrs, mapping.name) or employee_id,
        department=_first(attrs, mapping.department),
        groups=frozenset(groups),
        enabled=enabled,
        handles=tuple(handles),
    )


def index_handles(people: Iterable[Identity]) -> tuple[dict[HandleKey, Identity], dict[HandleKey, list[str]]]:
    """Handle -> person, and the handles two people claim, which map to nobody.

    A claimed-twice handle could be either person; attributing a message to the
    wrong employee is worse for the archive than leaving the sender unmapped.
    """
    owners: dict[HandleKey, list[Identity]] = {}
    for person in people:
        for network, handle in person.handles:
            claimants = owners.setdefault((network, handle_key(handle)), [])
            if not claimants or claimants[-1] is not person:
                claimants.append(person)
    index = {key: claimants[0] for key, claimants in owners.items() if len(claimants) == 1}
    conflicts = {
        key: sorted(p.employee_id for p in claimants)
        for key, claimants in owners.items()
        if len(claimants) > 1
    }
    return index, conflicts


def _names(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return (value.strip(),)
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(v.strip() for v in value)
    raise LdapConfigError(f"directory.attributes.{key} must be an attribute name or a list of them")


def parse_attributes(raw: Mapping[str, Any] | None) -> AttributeMap:
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise LdapConfigError("directory.attributes must be a mapping")
    unknown = set(raw) - {"employee_id", "name", "department", "handles"}
    if unknown:
        raise LdapConfigError(f"directory.attributes: unknown key {sorted(unknown)[0]!r}")
    defaults = AttributeMap()
    name = _names(raw["name"], "name") if "name" in raw else defaults.name
    if "cn" not in name:
        # Every person entry has a cn (it is mandatory), so a name is never empty.
        name = (*name, "cn")
    handles = raw.get("handles", DEFAULT_HANDLES)
    if not isinstance(handles, Mapping) or not all(
        isinstance(n, str) and isinstance(a, str) and a.strip() for n, a in handles.items()
    ):
        raise LdapConfigError("directory.attributes.handles must map network name to attribute name")
    return AttributeMap(
        employee_id=_names(raw["employee_id"], "employee_id")
        if "employee_id" in raw
        else defaults.employee_id,
        name=name,
        department=_names(raw["department"], "department") if "department" in raw else defaults.department,
        handles=tuple((str(n), a.strip()) for n, a in handles.items()),
    )


def _seconds(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise LdapConfigError(f"directory.{key} must be a positive number of seconds, not {value!r}")
    return float(value)


def parse_options(options: Mapping[str, Any]) -> LdapSettings:
    """Check the `directory:` options of an LDAP source without contacting the server."""
    url = str(options.get("url") or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise LdapConfigError(f"directory.url must be ldap://host[:port] or ldaps://host[:port], not {url!r}")
    use_ssl = parts.scheme == "ldaps"
    starttls = bool(options.get("starttls"))
    if use_ssl and starttls:
        raise LdapConfigError("directory.starttls: ldaps:// is already encrypted; use one or the other")
    bind_dn = options.get("bind_dn") or None
    password = options.get("bind_password")
    if bind_dn and not password:
        # An empty password makes a simple bind "unauthenticated": servers accept it and grant
        # anonymous access, so the bridge would silently see an empty or partial directory.
        raise LdapConfigError(
            f"directory.bind_password is empty for {bind_dn}; an empty password is not a login"
        )
    if password and not bind_dn:
        raise LdapConfigError("directory.bind_password is set but directory.bind_dn is not")
    if password and not (use_ssl or starttls or options.get("allow_insecure")):
        # A simple bind sends the password as it is: on plain ldap:// anyone on the path reads it.
        raise LdapConfigError(
            "directory.url: a password bind over plain ldap:// sends the password in clear text: "
            "use ldaps://, set starttls: true, or set allow_insecure: true to accept that"
        )
    people_base = str(options.get("people_base") or "").strip()
    if not people_base:
        raise LdapConfigError("directory.people_base is required for an ldap directory")
    ca_file = options.get("tls_ca_file") or None
    if ca_file and not Path(ca_file).is_file():
        raise LdapConfigError(f"directory.tls_ca_file: no such file {ca_file}")
    return LdapSettings(
        url=url,
        host=parts.hostname,
        port=parts.port or (636 if use_ssl else 389),
        use_ssl=use_ssl,
        starttls=starttls,
        bind_dn=bind_dn,
        bind_password=password or None,
        people_base=people_base,
        people_filter=normalize_filter(options.get("people_filter") or "(objectClass=inetOrgPerson)"),
        group_base=str(options.get("group_base") or "").strip() or None,
        group_filter=normalize_filter(options.get("group_filter") or "(objectClass=groupOfNames)"),
        disabled_filter=normalize_filter(options["disabled_filter"])
        if options.get("disabled_filter")
        else None,
        attributes=parse_attributes(options.get("attributes")),
        refresh_seconds=_seconds(options, "refresh_seconds", 60.0),
        negative_cache_seconds=_seconds(options, "negative_cache_seconds", 60.0),
        timeout_seconds=_seconds(options, "timeout_seconds", 10.0),
        tls_ca_file=ca_file,
    )


class _Link:
    """One LDAP connection, opened and bound on first use and reopened after a failure,
    used by one thread of its own (ldap3's synchronous connection is not thread-safe).

    Not asyncio's default pool: lookups queued behind a slow server must not hold up
    getaddrinfo and the other users of that pool.
    """

    def __init__(self, settings: LdapSettings, name: str) -> None:
        self._s = settings
        self._name = name
        self._conn: ldap3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ldap-{name}")

    async def call(self, work: Callable[[ldap3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, work)

    async def close(self) -> None:
        """Unbind; the link reopens (with a new thread) if used again."""
        pool = self._pool
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ldap-{self._name}")
        await asyncio.get_running_loop().run_in_executor(pool, self._drop)
        pool.shutdown(wait=False)

    def _open(self) -> ldap3.Connection:
        s = self._s
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=s.tls_ca_file)
        server = ldap3.Server(
            s.host, s.port, use_ssl=s.use_ssl, tls=tls, get_info=ldap3.NONE, connect_timeout=s.timeout_seconds
        )
        conn = ldap3.Connection(
            server,
            user=s.bind_dn,
            password=s.bind_password,
            read_only=True,
            auto_referrals=False,
            receive_timeout=math.ceil(s.timeout_seconds),  # ldap3 packs it into SO_RCVTIMEO as an int
        )
        try:
            conn.open()
            if s.starttls and not conn.start_tls():
                raise LdapOperationError(f"StartTLS refused: {conn.result.get('description')}")
            # Explicit bind and unbind: ldap3's auto_bind in a `with` block leaks the socket.
            if not conn.bind():
                who = s.bind_dn or "anonymous"
                raise LdapOperationError(f"bind as {who} refused: {conn.result.get('description')}")
        except BaseException:
            # The socket may be broken already; its error must not hide the one that matters.
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()
            raise
        return conn

    def _run(self, work: Callable[[ldap3.Connection], T]) -> T:
        reused = self._conn is not None
        try:
            return work(self._connection())
        except LDAPCommunicationError:
            self._drop()
            if not reused:
                raise
        # An idle connection may have died with a server restart: try once on a fresh one.
        try:
            return work(self._connection())
        except LDAPCommunicationError:
            self._drop()
            raise

    def _connection(self) -> ldap3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()


def _check(conn: ldap3.Connection, what: str) -> None:
    code = conn.result.get("result")
    if code == 0:
        return
    description = conn.result.get("description")
    if description == "sizeLimitExceeded":
        # ldap3 reports success with the entries so far; a partial directory would unmap people.
        raise LdapOperationError(
            f"{what} stopped at the server's size limit; lift it for the bind DN "
            f'(OpenLDAP: olcLimits: dn.exact="<bind_dn>" size=unlimited)'
        )
    raise LdapOperationError(f"{what} failed: {description} {conn.result.get('message') or ''}".rstrip())


def _search(
    conn: ldap3.Connection, base: str, search_filter: str, attributes: list[str], scope: str = ldap3.SUBTREE
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Entries as (dn, attributes), a page of PAGE_SIZE at a time (simple paged results, RFC 2696)."""
    cookie: bytes | None = None
    while True:
        conn.search(
            base, search_filter, scope, attributes=attributes, paged_size=PAGE_SIZE, paged_cookie=cookie
        )
        _check(conn, f"search {search_filter} under {base}")
        for entry in conn.response or ():
            if entry.get("type") == "searchResEntry":
                yield entry["dn"], entry["attributes"]
        control = (conn.result.get("controls") or {}).get(PAGED_RESULTS_OID) or {}
        cookie = (control.get("value") or {}).get("cookie")
        if not cookie:
            return


class LdapDirectory:
    """The Directory protocol over an LDAP server. Options as in `directory:` of switchboard.yaml."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.settings = parse_options(options)
        # Two connections: a 10,000-person reload must not delay a cold lookup.
        self._bulk = _Link(self.settings, "reload")
        self._point = _Link(self.settings, "lookup")
        self._people: dict[str, Identity] = {}
        self._index: dict[HandleKey, Identity] = {}
        self._conflicts: set[HandleKey] = set()
        self._misses: dict[HandleKey, float] = {}  # handle -> when the server last said "nobody"
        self._pruned = time.monotonic()
        self._inflight: dict[HandleKey, asyncio.Task[Identity | None]] = {}
        self._down = False
        self._task: asyncio.Task[None] | None = None
        self.server_lookups = 0  # cold lookups that went to the server, for metrics and tests

    async def start(self) -> None:
        """Load the whole directory; DirectoryUnavailable if that fails (no directory, no bridge)."""
        started = time.monotonic()
        try:
            loaded = await self._load_or_raise()
        except DirectoryUnavailable:
            await self._bulk.close()
            raise
        self._install(loaded, started)
        log.info(
            "LDAP directory %s: %d people, %d groups", self.settings.url, len(loaded.people), loaded.groups
        )
        self._task = asyncio.create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._bulk.close()
        await self._point.close()

    def resolve(self, network: str, native_id: str) -> Identity | None:
        return self._index.get((network, handle_key(native_id)))

    async def lookup(self, network: str, native_id: str) -> Identity | None:
        key = (network, handle_key(native_id))
        person = self._index.get(key)
        if person is not None:
            return person
        attribute = self.settings.attributes.handle_attribute(network)
        if attribute is None or not native_id.strip():
            return None
        missed = self._misses.get(key)
        if missed is not None and time.monotonic() - missed < self.settings.negative_cache_seconds:
            return None
        # A flood from one unknown nick shares one query instead of sending one per message.
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._ask(key, attribute, native_id))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        # shield: one cancelled caller must not cancel the query the others wait for.
        return await asyncio.shield(task)

    def people(self) -> list[Identity]:
        return list(self._people.values())

    async def check(self) -> DirectoryReport:
        """Load the directory afresh (without serving it) and report what an admin should fix."""
        loaded = await self._load_or_raise()
        people = list(loaded.people.values())
        _, conflicts = index_handles(people)
        return DirectoryReport(
            people=len(people),
            disabled=sum(1 for p in people if not p.enabled),
            groups=loaded.groups,
            without_handles=sorted(p.employee_id for p in people if not p.handles),
            conflicts={f"{net}:{handle}": ids for (net, handle), ids in sorted(conflicts.items())},
            skipped=loaded.skipped,
        )

    # Loading

    async def _load_or_raise(self) -> _Loaded:
        try:
            return await self._bulk.call(self._load)
        except (LDAPException, OSError) as exc:
            raise DirectoryUnavailable(f"LDAP directory {self.settings.url}: {describe(exc)}") from exc

    def _load(self, conn: ldap3.Connection) -> _Loaded:
        """The whole directory in three paged searches: groups, disabled people, people."""
        s = self.settings
        loaded = _Loaded()
        # One search of all groups beats one (member=...) search per person by 10,000 round trips.
        member_of: dict[str, set[str]] = {}
        if s.group_base:
            for _, attrs in _search(conn, s.group_base, s.group_filter, ["cn", "member"]):
                loaded.groups += 1
                name = _first(attrs, ["cn"])
                for member in _values(attrs, "member"):
                    member_of.setdefault(dn_key(member), set()).add(name)
        disabled: set[str] = set()
        if s.disabled_filter:
            # The server evaluates the filter: AD's bit-matching rules cannot be applied locally.
            search_filter = and_filter(s.people_filter, s.disabled_filter)
            disabled = {dn_key(dn) for dn, _ in _search(conn, s.people_base, search_filter, ["1.1"])}
        for dn, attrs in _search(conn, s.people_base, s.people_filter, s.attributes.requested()):
            key = dn_key(dn)
            person = person_from_entry(attrs, s.attributes, member_of.get(key, ()), key not in disabled)
            if person is None:
                loaded.skipped.append(dn)
            else:
                loaded.people[key] = person
        return loaded

    def _install(self, loaded: _Loaded, started: float) -> None:
        index, conflicts = index_handles(loaded.people.values())
        for key in conflicts.keys() - self._conflicts:
            log.warning(
                "%s handle %r is claimed by %s in LDAP: mapped to nobody until fixed",
                key[0],
                key[1],
                ", ".join(conflicts[key]),
            )
        self._people, self._index, self._conflicts = loaded.people, index, set(conflicts)
        # Misses older than this load are answered by it: anyone added since is in memory now.
        self._misses = {key: t for key, t in self._misses.items() if t > started}

    async def _refresh_loop(self) -> None:
        while True:
            delay = self.settings.refresh_seconds
            await asyncio.sleep(min(delay, OUTAGE_RETRY_SECONDS) if self._down else delay)
            started = time.monotonic()
            try:
                loaded = await self._bulk.call(self._load)
            except Exception as exc:  # whatever goes wrong, keep serving and keep trying
                self._failed(exc)
                continue
            self._reached()
            self._install(loaded, started)

    # Cold path: one handle not in memory

    async def _ask(self, key: HandleKey, attribute: str, native_id: str) -> Identity | None:
        self.server_lookups += 1
        try:
            found = await self._point.call(lambda conn: self._fetch(conn, attribute, native_id))
        except Exception as exc:  # a sender must never crash the router; they stay unmapped
            self._failed(exc)
            found = []
        else:
            self._reached()
        if len(found) != 1:
            if len(found) > 1:
                ids = ", ".join(sorted(p.employee_id for _, p in found))
                log.warning("%s handle %r is claimed by %s in LDAP: not mapped", key[0], native_id, ids)
            self._remember_miss(key)
            return None
        dn, person = found[0]
        self._learn(key, dn, person)
        return person

    def _fetch(self, conn: ldap3.Connection, attribute: str, native_id: str) -> list[tuple[str, Identity]]:
        s = self.settings
        search_filter = and_filter(s.people_filter, equality_filter(attribute, native_id))
        found: list[tuple[str, Identity]] = []
        # list(): the searches below reuse the connection, which would discard an unread page.
        for dn, attrs in list(_search(conn, s.people_base, search_filter, s.attributes.requested())):
            enabled = not s.disabled_filter or not list(
                _search(conn, dn, s.disabled_filter, ["1.1"], ldap3.BASE)
            )
            groups: list[str] = []
            if s.group_base:
                member_filter = and_filter(s.group_filter, equality_filter("member", dn))
                groups = [_first(a, ["cn"]) for _, a in _search(conn, s.group_base, member_filter, ["cn"])]
            person = person_from_entry(attrs, s.attributes, groups, enabled)
            if person is not None:
                found.append((dn_key(dn), person))
        return found

    def _remember_miss(self, key: HandleKey) -> None:
        now = time.monotonic()
        ttl = self.settings.negative_cache_seconds
        # Reloads prune misses, but not while the server is down: nicks cycled by a flooder
        # during a long outage would otherwise pile up. Pruning once per period stays O(1) amortized.
        if now - self._pruned > ttl:
            self._misses = {k: t for k, t in self._misses.items() if now - t < ttl}
            self._pruned = now
        self._misses[key] = now

    def _learn(self, searched: HandleKey, dn: str, person: Identity) -> None:
        """Serve a person found by a cold lookup until the next reload replaces the whole directory.

        Only the searched handle is known to have one owner: the person's other handles
        take over from their own older entry or fill gaps, but never override another
        person, a disputed handle or a recent miss (which may be a dispute too).
        A reload already running may drop the person again; the next lookup asks once more.
        """
        self._conflicts.discard(searched)
        self._misses.pop(searched, None)
        old = self._people.get(dn)
        if old is not None:
            for network, handle in old.handles:
                if self._index.get((network, handle_key(handle))) is old:
                    del self._index[(network, handle_key(handle))]
        self._people[dn] = person
        for network, handle in person.handles:
            key = (network, handle_key(handle))
            if key == searched or (
                key not in self._index and key not in self._conflicts and key not in self._misses
            ):
                self._index[key] = person

    # Outages: one warning when it starts, one info when it ends.

    def _failed(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "LDAP directory %s unavailable, serving the %d people loaded before: %s",
                self.settings.url,
                len(self._people),
                describe(exc),
                # LDAP and socket errors explain themselves; anything else is a bug worth a traceback.
                exc_info=not isinstance(exc, LDAPException | OSError),
            )

    def _reached(self) -> None:
        if self._down:
            self._down = False
            log.info("LDAP directory %s reachable again", self.settings.url)
