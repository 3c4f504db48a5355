"""Typed configuration, loaded from the user's YAML file.

Secrets are written as `${ENV_VAR}` or `${file:/path/to/secret}` and never
appear in the file itself. Every problem is reported as one line naming the
file, the line and the key; `load_config` collects all of them at once so an
admin can fix a file in one pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.connector import Connector, Option, load_connector, parse_listen
from bridge.detectors import DETECTORS
from bridge.policy import NetworkPolicy, PolicySet, RoomPolicy, Rule
from bridge.yamlsource import Located, SourceError, join_path, load_located

MATRIX = "matrix"
CORE_NETWORK_KEYS = {
    "type": Option(str, required=True, help="connector type, e.g. slack or irc"),
    "display_template": Option(str, help="how senders are named there: {name}, {network}"),
}
APPSERVICE_KEYS = {
    "id": Option(str, required=True),
    "listen": Option(str, required=True),
    "as_token": Option(str, required=True),
    "hs_token": Option(str, required=True),
    "bot": Option(str, default="switchboard"),
    "aliases": Option(list, default=[], help="regexes of room aliases the bridge may create"),
}
DIRECTORY_KEYS = {
    "type": Option(str, default="yaml"),
    "path": Option(str),
    "unmapped": Option(str, default="deny"),
    "refresh_seconds": Option((int, float), default=60),
    "url": Option(str),
    "starttls": Option(bool, default=False),
    "allow_insecure": Option(bool, default=False, help="allow a password bind over plain ldap://"),
    "bind_dn": Option(str),
    "bind_password": Option(str),
    "people_base": Option(str),
    "people_filter": Option(str),
    "group_base": Option(str),
    "disabled_filter": Option(str),
    "attributes": Option(dict),
    "group_filter": Option(str, default="(objectClass=groupOfNames)"),
    "negative_cache_seconds": Option((int, float), default=60),
    "timeout_seconds": Option((int, float), default=10),
    "tls_ca_file": Option(str),
}
ARCHIVE_KEYS = {
    "url": Option(str, default="sqlite:///switchboard-archive.db"),
    "signing_key": Option(str),
    "public_key": Option(str, help="what `archive verify` trusts: a .pub file or 64 hex digits"),
    "checkpoint_every": Option(int, default=1000),
    "checkpoint_seconds": Option((int, float), default=60),
    "checkpoint_log": Option(str, help="a file on other storage that every signed checkpoint is appended to"),
    "instance": Option(str, default="", help="this process's name among bridges sharing one archive"),
    "retention": Option(dict, default={}),
}
MEDIA_KEYS = {
    "listen": Option(str, required=True, help="host:port the media server listens on"),
    "public_url": Option(str, required=True, help="how users reach it, e.g. https://bridge.corp.example"),
    "secret": Option(str, required=True, help="signs the links; at least 16 characters"),
}
MIN_MEDIA_SECRET = 16
DELIVERY_KEYS = {
    "queue_size": Option(int, default=1000, help="outbox rows held in memory per destination room"),
}
POLICY_KEYS = {
    "notice": Option(str),
    "networks": Option(dict, default={}),
    "rules": Option(list, default=[]),
}
_INSTANCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOP_KEYS = {"matrix", "networks", "directory", "archive", "media", "policy", "rooms", "logging", "delivery"}
_SECRET = re.compile(r"\$\{([^}]*)\}")
_DURATION = re.compile(r"^(\d+)\s*([smhdwy])$")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


class ConfigError(Exception):
    """One or more problems; `str()` gives one line per problem."""

    def __init__(self, problems: list[SourceError]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    type: str
    options: Mapping[str, Any]
    display_template: str | None = None


@dataclass(frozen=True)
class RoomConfig:
    id: str
    rooms: tuple[tuple[str, str], ...]
    policy: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DirectoryConfig:
    type: str
    unmapped: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class ArchiveConfig:
    url: str
    signing_key: Path | None
    checkpoint_every: int
    checkpoint_seconds: float
    retention: Mapping[str, Any]
    checkpoint_log: Path | None = None  # every signed checkpoint is appended here too
    public_key: str | None = None  # hex, or the path of a .pub file: the key verify trusts
    instance: str = ""  # this process among several sharing one archive; "" when alone


@dataclass(frozen=True)
class MediaConfig:
    """Where the bridge serves archived files to networks that cannot carry them (bridge/media.py)."""

    host: str
    port: int
    public_url: str
    secret: str


@dataclass(frozen=True)
class Config:
    file: Path
    networks: Mapping[str, NetworkConfig]  # includes the Matrix side, under "matrix"
    directory: DirectoryConfig
    archive: ArchiveConfig
    policy: PolicySet
    rooms: tuple[RoomConfig, ...]
    log_level: str = "INFO"
    media: MediaConfig | None = None
    delivery_queue: int = 1000  # delivery.queue_size
    # (key path, group name) of every group the policy names, for `check` to test
    # against the directory; and the parsed file, to report those with their line.
    group_refs: tuple[tuple[str, str], ...] = ()
    source: Located | None = None

    @property
    def matrix(self) -> NetworkConfig:
        return self.networks[MATRIX]


def parse_duration(text: str) -> float:
    """`90d`, `7y`, `0d`, `30s` → seconds; ValueError otherwise."""
    m = _DURATION.match(str(text).strip())
    if not m:
        raise ValueError(f"'{text}' is not a duration like 30s, 15m, 12h, 90d or 7y")
    return int(m.group(1)) * _DURATION_SECONDS[m.group(2)]


class _Loader:
    def __init__(self, located: Located, env: Mapping[str, str]) -> None:
        self.src = located
        self.env = env
        self.problems: list[SourceError] = []
        self.base = Path(located.file).resolve().parent

    def problem(self, path: str, text: str) -> None:
        self.problems.append(self.src.error(path, text))

    def substitute(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {k: self.substitute(v, join_path(path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute(v, join_path(path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return _SECRET.sub(lambda m: self._secret(m.group(1), path), value)
        return value

    def _secret(self, ref: str, path: str) -> str:
        if ref.startswith("file:"):
            file = self.resolve_path(ref[5:])
            try:
                return file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                self.problem(path, f"cannot read secret file {file}: {exc.strerror}")
                return ""
        if ref not in self.env:
            self.problem(path, f"environment variable {ref} is not set (export it, or use ${{file:PATH}})")
            return ""
        return self.env[ref]

    def resolve_path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p

    def section(self, data: Any, path: str, schema: Mapping[str, Option], extra_ok: bool = False) -> dict:
        """Check keys and types against `schema`; return data with defaults filled in."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.problem(path, f"must be a mapping, not {type(data).__name__}")
            return {k: o.default for k, o in schema.items()}
        out = dict(data)
        for key, value in data.items():
            where = join_path(path, str(key))
            option = schema.get(key)
            if option is None:
                if not extra_ok:
                    known = ", ".join(sorted(schema))
                    self.problem(where, f"unknown key (known keys: {known})")
                continue
            if not _type_ok(value, option.kind):
                self.problem(where, f"must be {_type_name(option.kind)}, not {_type_name(type(value))}")
        for key, option in schema.items():
            if key not in data or data[key] is None:
                if option.required:
                    self.problem(join_path(path, key), "is required but missing")
                out[key] = option.default
        return out


def _type_ok(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    if value is None:
        return True
    return isinstance(value, kinds)


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}
    names |= {dict: "a mapping", list: "a list", type(None): "empty"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Load and check a config file; raise ConfigError listing every problem."""
    located = load_located(path)
    loader = _Loader(located, os.environ if env is None else env)
    raw = located.data
    if not isinstance(raw, dict):
        raise ConfigError([located.error("", "the file must hold a mapping of sections")])
    for key in raw:
        if key not in TOP_KEYS:
            loader.problem(str(key), f"unknown section (known: {', '.join(sorted(TOP_KEYS))})")
    data = loader.substitute(raw, "")

    networks: dict[str, NetworkConfig] = {}
    classes: dict[str, type[Connector]] = {}
    if "matrix" not in data:
        loader.problem("matrix", "section is required (the homeserver this bridge serves)")
    else:
        _network(loader, MATRIX, {"type": MATRIX, **(data["matrix"] or {})}, "matrix", networks, classes)
    raw_networks = data.get("networks") or {}
    if not isinstance(raw_networks, dict):
        loader.problem("networks", "must be a mapping of network name to its settings")
        raw_networks = {}
    for name, section in raw_networks.items():
        where = join_path("networks", str(name))
        if name == MATRIX:
            loader.problem(where, "the name 'matrix' is taken by the top-level matrix section")
        elif not re.fullmatch(r"[a-z][a-z0-9]*", str(name)):
            loader.problem(where, "network names are lower-case letters and digits, starting with a letter")
        elif not isinstance(section, dict):
            loader.problem(where, "must be a mapping with at least `type`")
        else:
            _network(loader, str(name), section, where, networks, classes)

    directory = loader.section(data.get("directory"), "directory", DIRECTORY_KEYS)
    if directory["unmapped"] not in ("deny", "relay"):
        loader.problem("directory.unmapped", f"must be deny or relay, not '{directory['unmapped']}'")
    if directory["type"] == "yaml":
        if not directory.get("path"):
            loader.problem("directory.path", "is required for a yaml directory")
        else:
            directory["path"] = str(loader.resolve_path(directory["path"]))
    elif directory["type"] == "ldap":
        if directory.get("tls_ca_file"):
            directory["tls_ca_file"] = str(loader.resolve_path(directory["tls_ca_file"]))
    else:
        loader.problem("directory.type", f"must be yaml or ldap, not '{directory['type']}'")

    archive = loader.section(data.get("archive"), "archive", ARCHIVE_KEYS)
    url = _archive_url(loader, archive["url"])
    for key, value in (archive["retention"] or {}).items():
        _check_retention(loader, join_path("archive.retention", key), value)
    if archive["instance"] and not _INSTANCE.fullmatch(archive["instance"]):
        loader.problem("archive.instance", "use letters, digits, '-' and '_' only (it prefixes stored state)")
    checkpoint_log = loader.resolve_path(archive["checkpoint_log"]) if archive["checkpoint_log"] else None
    if checkpoint_log is not None and not archive["signing_key"]:
        loader.problem(
            "archive.checkpoint_log", "needs archive.signing_key: only signed checkpoints are logged"
        )
    elif checkpoint_log is not None and not checkpoint_log.parent.is_dir():
        loader.problem(
            "archive.checkpoint_log",
            f"the folder {checkpoint_log.parent} does not exist (mount or create it)",
        )

    media = _media(loader, data["media"]) if data.get("media") is not None else None
    delivery = loader.section(data.get("delivery"), "delivery", DELIVERY_KEYS)
    if delivery["queue_size"] < 1:
        loader.problem("delivery.queue_size", "must be at least 1")
    policy = loader.section(data.get("policy"), "policy", POLICY_KEYS)
    declared = {MATRIX, *map(str, raw_networks)}
    rooms = _rooms(loader, data.get("rooms"), networks, classes, declared)
    policy_set, group_refs = _policy(loader, policy, rooms, declared, directory["unmapped"])

    if loader.problems:
        raise ConfigError(loader.problems)
    return Config(
        file=Path(located.file),
        networks=networks,
        directory=DirectoryConfig(directory["type"], directory["unmapped"], directory),
        archive=ArchiveConfig(
            url=url,
            signing_key=loader.resolve_path(archive["signing_key"]) if archive["signing_key"] else None,
            checkpoint_every=archive["checkpoint_every"],
            checkpoint_seconds=float(archive["checkpoint_seconds"]),
            retention=archive["retention"] or {},
            checkpoint_log=checkpoint_log,
            instance=archive["instance"],
            public_key=_public_key(loader, archive["public_key"]),
        ),
        policy=policy_set,
        rooms=rooms,
        log_level=str((data.get("logging") or {}).get("level", "INFO")).upper(),
        media=media,
        delivery_queue=delivery["queue_size"],
        group_refs=tuple(group_refs),
        source=located,
    )


def _network(
    loader: _Loader,
    name: str,
    section: dict,
    where: str,
    networks: dict[str, NetworkConfig],
    classes: dict[str, type[Connector]],
) -> None:
    type_name = section.get("type")
    if not isinstance(type_name, str):
        loader.problem(join_path(where, "type"), "is required: the connector type, e.g. slack or irc")
        return
    try:
        cls = load_connector(type_name)
    except KeyError:
        from bridge.connector import connector_types

        loader.problem(
            join_path(where, "type"),
            f"no connector '{type_name}' is installed (installed: {', '.join(connector_types())})",
        )
        return
    schema = {**CORE_NETWORK_KEYS, **cls.options}
    options = loader.section(section, where, schema)
    if name == MATRIX:
        options["appservice"] = loader.section(
            options.get("appservice"), join_path(where, "appservice"), APPSERVICE_KEYS
        )
    display = options.pop("display_template")
    options.pop("type")
    # Only a section whose keys, types and secrets are right is worth asking the connector about:
    # a missing secret would come back as a bad token.
    if not any(p.key == where or p.key.startswith((f"{where}.", f"{where}[")) for p in loader.problems):
        problem = cls.options_problem(options)
        if problem:
            # Connectors name their section themselves ("slack: …", "matrix.max_file_mb: …").
            loader.problem(where, problem.removeprefix(f"{type_name}: ").removeprefix(f"{type_name}."))
    networks[name] = NetworkConfig(name, type_name, options, display)
    classes[name] = cls


def _media(loader: _Loader, raw: Any) -> MediaConfig | None:
    media = loader.section(raw, "media", MEDIA_KEYS)
    if not all(isinstance(media[k], str) and media[k] for k in MEDIA_KEYS):
        return None  # the section check reported it
    try:
        host, port = parse_listen(media["listen"], "media.listen")
    except ValueError as exc:
        loader.problem("media.listen", str(exc).removeprefix("media.listen: "))
        return None
    if not media["public_url"].startswith(("https://", "http://")):
        loader.problem("media.public_url", "must be an http(s) URL that users' browsers reach")
        return None
    if len(media["secret"]) < MIN_MEDIA_SECRET:
        loader.problem(
            "media.secret", f"must be at least {MIN_MEDIA_SECRET} characters (e.g. openssl rand -hex 32)"
        )
        return None
    return MediaConfig(host, port, media["public_url"], media["secret"])


def _archive_url(loader: _Loader, url: str) -> str:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        return "sqlite:///" + str(loader.resolve_path(url[len("sqlite:///") :]))
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", url):
        loader.problem("archive.url", f"must be a sqlite:/// or postgresql+psycopg:// URL, not '{url}'")
    return url


def _public_key(loader: _Loader, value: str | None) -> str | None:
    if not value:
        return None
    if re.fullmatch(r"[0-9a-fA-F]{64}", value.strip()):
        return value.strip().lower()
    return str(loader.resolve_path(value))


def _check_retention(loader: _Loader, path: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _check_retention(loader, join_path(path, key), inner)
        return
    try:
        parse_duration(value)
    except ValueError as exc:
        loader.problem(path, str(exc))


def _rooms(
    loader: _Loader,
    data: Any,
    networks: Mapping[str, NetworkConfig],
    classes: Mapping[str, type[Connector]],
    declared: set[str],
) -> tuple[RoomConfig, ...]:
    """The bridged rooms; references to a network whose own section is broken are not reported twice."""
    if data is None:
        return ()
    if not isinstance(data, list):
        loader.problem("rooms", "must be a list of rooms, each with an id and one room per network")
        return ()
    rooms: list[RoomConfig] = []
    seen_ids: set[str] = set()
    seen_native: dict[tuple[str, str], str] = {}
    for i, entry in enumerate(data):
        where = join_path("rooms", i)
        problems_before = len(loader.problems)
        if not isinstance(entry, dict):
            loader.problem(
                where, "must be a mapping like {id: trading, matrix: '#trading:corp.test', irc: '#t'}"
            )
            continue
        room_id = entry.get("id")
        if not isinstance(room_id, str) or not room_id:
            loader.problem(join_path(where, "id"), "is required: a short name for this bridged room")
            room_id = f"rooms[{i}]"
        elif room_id in seen_ids:
            loader.problem(join_path(where, "id"), f"'{room_id}' is used by another room")
        seen_ids.add(room_id)
        links: list[tuple[str, str]] = []
        unchecked = 0
        for key, value in entry.items():
            if key in ("id", "policy"):
                continue
            path = join_path(where, str(key))
            if key not in networks:
                if key in declared:
                    unchecked += 1
                    continue
                known = ", ".join(sorted(networks)) or "none"
                loader.problem(path, f"unknown network '{key}' (networks defined: {known})")
                continue
            if not isinstance(value, str) or not value.strip():
                loader.problem(path, "must be the room's name or id on that network, as a string")
                continue
            trouble = classes[key].room_problem(value) if key in classes else None
            if trouble:
                loader.problem(path, trouble)
                continue
            other = seen_native.get((key, value))
            if other:
                loader.problem(path, f"'{value}' is already bridged by room '{other}'")
            seen_native[(key, value)] = room_id
            links.append((key, value))
        if len(links) + unchecked < 2 and len(loader.problems) == problems_before:
            loader.problem(where, "links fewer than two networks, so nothing would be bridged")
        policy = entry.get("policy") or {}
        if not isinstance(policy, dict):
            loader.problem(join_path(where, "policy"), "must be a mapping")
            policy = {}
        rooms.append(RoomConfig(room_id, tuple(links), policy))
    return tuple(rooms)


NETWORK_POLICY_KEYS = {
    "allow_groups": Option(list, help="only members of these groups are bridged to this network"),
    "deny_groups": Option(list, default=[], help="members of these groups are never bridged to it"),
    "files": Option(str, help="allow or block files to and from this network"),
    "max_file_mb": Option((int, float), help="largest file relayed, in MB"),
}
ROOM_POLICY_KEYS = {
    **NETWORK_POLICY_KEYS,
    "rules": Option(list, help="names of the data-loss rules applied here"),
}
RULE_KEYS = {
    "name": Option(str, required=True),
    "action": Option(str, default="flag"),
    "networks": Option(list),
    "detector": Option(str),
    "keywords": Option(list, default=[]),
    "regex": Option(str),
}


def _network_policy(
    loader: _Loader, data: Any, path: str, schema: Mapping[str, Option], refs: list[tuple[str, str]]
) -> dict[str, Any]:
    section = loader.section(data, path, schema)
    for key in ("allow_groups", "deny_groups"):
        for i, group in enumerate(section.get(key) or []):
            refs.append((join_path(join_path(path, key), i), str(group)))
    if section.get("files") not in (None, "allow", "block"):
        loader.problem(join_path(path, "files"), f"must be allow or block, not '{section['files']}'")
    return section


def _as_network_policy(section: Mapping[str, Any]) -> NetworkPolicy:
    allow = section.get("allow_groups")
    return NetworkPolicy(
        allow_groups=frozenset(map(str, allow)) if allow is not None else None,
        deny_groups=frozenset(map(str, section.get("deny_groups") or [])),
        files=section.get("files") if section.get("files") in ("allow", "block") else None,
        max_file_mb=float(section["max_file_mb"]) if section.get("max_file_mb") is not None else None,
    )


def _policy(
    loader: _Loader, policy: dict, rooms: tuple[RoomConfig, ...], declared: set[str], unmapped: str
) -> tuple[PolicySet, list[tuple[str, str]]]:
    refs: list[tuple[str, str]] = []
    networks: dict[str, NetworkPolicy] = {}
    for name, section in (policy.get("networks") or {}).items():
        path = join_path("policy.networks", str(name))
        if name not in declared:
            loader.problem(
                path, f"unknown network '{name}' (networks defined: {', '.join(sorted(declared))})"
            )
            continue
        networks[str(name)] = _as_network_policy(
            _network_policy(loader, section, path, NETWORK_POLICY_KEYS, refs)
        )

    rules: list[Rule] = []
    for i, raw in enumerate(policy.get("rules") or []):
        path = join_path("policy.rules", i)
        rule = _rule(loader, raw, path, declared, {r.name for r in rules})
        if rule:
            rules.append(rule)

    room_policies: dict[str, RoomPolicy] = {}
    names = {r.name for r in rules}
    for i, room in enumerate(rooms):
        if not room.policy:
            continue
        path = join_path(join_path("rooms", i), "policy")
        section = _network_policy(loader, dict(room.policy), path, ROOM_POLICY_KEYS, refs)
        chosen = section.get("rules")
        for j, name in enumerate(chosen or []):
            if name not in names:
                known = ", ".join(sorted(names)) or "none defined"
                loader.problem(
                    join_path(join_path(path, "rules"), j), f"unknown rule '{name}' (rules: {known})"
                )
        room_policies[room.id] = RoomPolicy(
            overrides=_as_network_policy(section),
            rules=frozenset(map(str, chosen)) if chosen is not None else None,
        )
    return (
        PolicySet(
            unmapped="relay" if unmapped == "relay" else "deny",
            notice=policy.get("notice"),
            networks=networks,
            rooms=room_policies,
            rules=tuple(rules),
        ),
        refs,
    )


def _rule(loader: _Loader, raw: Any, path: str, declared: set[str], taken: set[str]) -> Rule | None:
    section = loader.section(raw, path, RULE_KEYS)
    name = section.get("name")
    before = len(loader.problems)
    if name in taken:
        loader.problem(join_path(path, "name"), f"another rule is already named '{name}'")
    if section["action"] not in ("block", "flag"):
        loader.problem(join_path(path, "action"), f"must be block or flag, not '{section['action']}'")
    detector = None
    if section.get("detector") is not None:
        detector = DETECTORS.get(section["detector"])
        if detector is None:
            known = ", ".join(sorted(DETECTORS))
            loader.problem(
                join_path(path, "detector"), f"unknown detector '{section['detector']}' (known: {known})"
            )
    pattern = None
    if section.get("regex") is not None:
        try:
            pattern = re.compile(section["regex"])
        except re.error as exc:
            loader.problem(join_path(path, "regex"), f"invalid regular expression: {exc}")
    keywords = tuple(str(k) for k in section.get("keywords") or [])
    if detector is None and pattern is None and not keywords and len(loader.problems) == before:
        loader.problem(path, "needs a detector, keywords or a regex to match")
    for j, net in enumerate(section.get("networks") or []):
        if net not in declared:
            loader.problem(join_path(join_path(path, "networks"), j), f"unknown network '{net}'")
    if len(loader.problems) > before or not isinstance(name, str):
        return None
    networks = section.get("networks")
    return Rule(
        name=name,
        action=section["action"],
        networks=frozenset(map(str, networks)) if networks is not None else None,
        keywords=keywords,
        pattern=pattern,
        detector=detector,
    )
