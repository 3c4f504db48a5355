"""A private OpenLDAP slapd on a free loopback port, for tests and benchmarks.

The cn=config tree and the initial data are written with slapadd before the
first start (fast, even for 10,000 people); later changes go through ldap3 as
the rootdn, so the bridge sees them the way it would see an admin's edits.
`restart()` keeps the port and the data. The process runs in the foreground
(`-d none`) in its own session and is stopped by its PID.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import ldap3

from bridge.sandbox.ports import free_port
from bridge.sandbox.process import LocalServer
from bridge.sandbox.tls import write_self_signed

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SLAPMODIFY = "/usr/sbin/slapmodify"
SCHEMA_DIR = Path("/etc/ldap/schema")
CHATPERSON_SCHEMA = Path(__file__).parents[2] / "config" / "chatperson.schema.ldif"

SUFFIX = "dc=corp,dc=test"
PEOPLE_BASE = f"ou=people,{SUFFIX}"
GROUP_BASE = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=switchboard,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "switchboard-reads"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "admin-writes"
DISABLED_FILTER = "(employeeType=disabled)"
HANDLE_ATTRIBUTES = {"matrix": "matrixId", "slack": "slackUserId", "irc": "ircNick"}


def ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


@dataclass(frozen=True)
class Person:
    """One inetOrgPerson + chatPerson entry, `uid=<uid>,ou=people,dc=corp,dc=test`."""

    uid: str
    employee_id: str
    name: str
    department: str = ""
    matrix: tuple[str, ...] = ()
    slack: tuple[str, ...] = ()
    irc: tuple[str, ...] = ()
    disabled: bool = False

    @property
    def dn(self) -> str:
        return person_dn(self.uid)

    def attributes(self) -> dict[str, list[str]]:
        attrs: dict[str, list[str]] = {
            "objectClass": ["inetOrgPerson", "chatPerson"],
            "uid": [self.uid],
            "cn": [self.name],
            "sn": [self.name.split()[-1]],
            "displayName": [self.name],
        }
        if self.employee_id:
            attrs["employeeNumber"] = [self.employee_id]
        if self.department:
            attrs["departmentNumber"] = [self.department]
        if self.disabled:
            attrs["employeeType"] = ["disabled"]
        for network, attribute in HANDLE_ATTRIBUTES.items():
            values = getattr(self, network)
            if values:
                attrs[attribute] = list(values)
        return attrs


def person_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE_BASE}"


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUP_BASE}"


def _entry(dn: str, attrs: dict[str, list[str]]) -> str:
    # slapadd -q needs each attribute's values on adjacent lines; a dict keeps them together.
    lines = [f"dn: {dn}"]
    lines += [f"{name}: {value}" for name, values in attrs.items() for value in values]
    return "\n".join(lines) + "\n\n"


def data_ldif(people: Iterable[Person], groups: dict[str, Sequence[str]]) -> str:
    """The whole tree: base, service account, people and groups (group name -> member uids)."""
    out = [
        _entry(SUFFIX, {"objectClass": ["dcObject", "organization"], "dc": ["corp"], "o": ["Corp"]}),
        *(
            _entry(f"ou={ou},{SUFFIX}", {"objectClass": ["organizationalUnit"], "ou": [ou]})
            for ou in ("people", "groups", "services")
        ),
        _entry(
            SERVICE_DN,
            {
                "objectClass": ["applicationProcess", "simpleSecurityObject"],
                "cn": ["switchboard"],
                "userPassword": [ssha(SERVICE_PASSWORD)],
            },
        ),
    ]
    out += [_entry(p.dn, p.attributes()) for p in people]
    out += [
        _entry(
            group_dn(cn),
            {"objectClass": ["groupOfNames"], "cn": [cn], "member": [person_dn(u) for u in uids]},
        )
        for cn, uids in groups.items()
    ]
    return "".join(out)


def generated_people(n: int, departments: int = 20) -> tuple[list[Person], dict[str, list[str]]]:
    """`n` people with a handle on every network, in `departments` departments, one group each."""
    people = [
        Person(
            uid=f"user{i:05d}",
            employee_id=f"E{100000 + i}",
            name=f"User {i:05d}",
            department=f"Dept{i % departments:02d}",
            matrix=(f"@user{i:05d}:corp.test",),
            slack=(f"U{i:08d}",),
            irc=(f"user{i:05d}",),
        )
        for i in range(n)
    ]
    groups: dict[str, list[str]] = {}
    for p in people:
        groups.setdefault(p.department.lower(), []).append(p.uid)
    return people, groups


@dataclass
class Slapd(LocalServer):
    """One slapd holding `dc=corp,dc=test`, readable by the Switchboard service account.

    With `tls=True` the server also speaks StartTLS on `port` and LDAPS on
    `tls_port`, with a self-signed certificate for 127.0.0.1 (`cert_path`).
    """

    name = "slapd"
    people: Sequence[Person] = ()
    groups: dict[str, Sequence[str]] = field(default_factory=dict)
    tls: bool = False
    # False keeps OpenLDAP's default 500-entry size limit for the service account too.
    unlimited_service: bool = True
    tls_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.host}:{self.tls_port}"

    @property
    def cert_path(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def socket_path(self) -> Path:
        return self.directory / "ldapi"

    def options(self, **overrides: object) -> dict[str, object]:
        """Directory options (as in switchboard.yaml) for an LdapDirectory reading this server."""
        opts: dict[str, object] = {
            "type": "ldap",
            "url": self.url,
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PASSWORD,
            # The private test server listens on loopback only; production uses ldaps or starttls.
            "allow_insecure": True,
            "people_base": PEOPLE_BASE,
            "people_filter": "(objectClass=inetOrgPerson)",
            "group_base": GROUP_BASE,
            "disabled_filter": DISABLED_FILTER,
            "attributes": {
                "employee_id": "employeeNumber",
                "name": "displayName",
                "department": "departmentNumber",
                "handles": dict(HANDLE_ATTRIBUTES),
            },
        }
        opts.update(overrides)
        return opts

    def config_ldif(self) -> str:
        d = self.directory
        schemas = [SCHEMA_DIR / f"{name}.ldif" for name in ("core", "cosine", "nis", "inetorgperson")]
        includes = "".join(f"include: file://{path}\n\n" for path in [*schemas, CHATPERSON_SCHEMA])
        tls = ""
        if self.tls:
            key = d / "key.pem"
            write_self_signed(self.cert_path, key, self.host)
            tls = f"olcTLSCertificateFile: {self.cert_path}\nolcTLSCertificateKeyFile: {key}\n"
        limits = ""
        if self.unlimited_service:
            # A production directory keeps the default 500-entry limit and lifts it for the bridge.
            limits = f'olcLimits: {{0}}dn.exact="{SERVICE_DN}" size=unlimited\n'
        return (
            "dn: cn=config\nobjectClass: olcGlobal\ncn: config\n"
            f"olcPidFile: {d}/slapd.pid\nolcArgsFile: {d}/slapd.args\n{tls}\n"
            "dn: cn=module{0},cn=config\nobjectClass: olcModuleList\ncn: module{0}\n"
            "olcModulePath: /usr/lib/ldap\nolcModuleLoad: back_mdb\n\n"
            "dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n"
            f"{includes}"
            "dn: olcDatabase={-1}frontend,cn=config\nobjectClass: olcDatabaseConfig\n"
            "objectClass: olcFrontendConfig\nolcDatabase: {-1}frontend\n\n"
            "dn: olcDatabase={0}config,cn=config\nobjectClass: olcDatabaseConfig\n"
            "olcDatabase: {0}config\nolcAccess: {0}to * by * none\n\n"
            "dn: olcDatabase={1}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n"
            f"olcDatabase: {{1}}mdb\nolcDbDirectory: {d}/data\nolcSuffix: {SUFFIX}\n"
            f"olcRootDN: {ROOT_DN}\nolcRootPW: {ssha(ROOT_PASSWORD)}\n"
            "olcDbNoSync: TRUE\nolcDbMaxSize: 1073741824\n"
            "olcDbIndex: objectClass eq\nolcDbIndex: uid,employeeNumber eq\nolcDbIndex: member eq\n"
            "olcDbIndex: matrixId,slackUserId,ircNick eq\n"
            "olcAccess: {0}to attrs=userPassword by anonymous auth by * none\n"
            f'olcAccess: {{1}}to * by dn.exact="{SERVICE_DN}" read by * none\n'
            f"{limits}"
        )

    def _offline(self, tool: str, args: list[str], ldif: str, name: str) -> None:
        path = self.directory / name
        path.write_text(ldif)
        done = subprocess.run(
            [tool, "-F", str(self.directory / "slapd.d"), *args, "-l", str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {name} failed ({done.returncode}):\n{done.stderr[-3000:]}")

    def modify_offline(self, ldif: str) -> None:
        """Apply LDIF change records (changetype: add/modify/delete) while slapd is stopped."""
        if self.running:
            raise RuntimeError("modify_offline needs slapd stopped")
        self._offline(SLAPMODIFY, ["-b", SUFFIX], ldif, "changes.ldif")

    def _build(self) -> None:
        (self.directory / "slapd.d").mkdir()
        (self.directory / "data").mkdir()
        self._offline(SLAPADD, ["-n0"], self.config_ldif(), "config.ldif")
        self._offline(SLAPADD, ["-q", "-b", SUFFIX], data_ldif(self.people, dict(self.groups)), "data.ldif")

    def start(self) -> None:
        if self.running:
            return
        if not (self.directory / "slapd.d").exists():
            self._build()
        urls = [f"{self.url}/", f"ldapi://{quote(str(self.socket_path), safe='')}"]
        if self.tls:
            urls.append(f"{self.ldaps_url}/")
        argv = [SLAPD, "-d", "none", "-h", " ".join(urls), "-F", str(self.directory / "slapd.d")]
        self.launch(argv, self._ready)

    def _ready(self) -> bool:
        # Our own ldapi socket: a TCP port could be answered by some other server.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(self.socket_path))
                return True
            except OSError:
                return False

    # Changes at runtime, as an admin would make them.

    def _admin(self, change: str, *args: object, **kwargs: object) -> None:
        conn = ldap3.Connection(
            ldap3.Server(self.host, self.port, get_info=ldap3.NONE), ROOT_DN, ROOT_PASSWORD
        )
        try:
            if not conn.bind():
                raise RuntimeError(f"rootdn bind failed: {conn.result}")
            if not getattr(conn, change)(*args, **kwargs):
                raise RuntimeError(f"{change} {args[0]} failed: {conn.result}")
        finally:
            conn.unbind()

    def add_person(self, person: Person, groups: Iterable[str] = ()) -> None:
        attrs = person.attributes()
        self._admin("add", person.dn, attrs.pop("objectClass"), attrs)
        for group in groups:
            self.add_member(group, person.uid)

    def delete_person(self, uid: str) -> None:
        self._admin("delete", person_dn(uid))

    def set_attribute(self, uid: str, attribute: str, values: Sequence[str]) -> None:
        """Replace `attribute` of a person; no values removes it."""
        self._admin("modify", person_dn(uid), {attribute: [(ldap3.MODIFY_REPLACE, list(values))]})

    def disable(self, uid: str) -> None:
        self.set_attribute(uid, "employeeType", ["disabled"])

    def enable(self, uid: str) -> None:
        self.set_attribute(uid, "employeeType", [])

    def add_group(self, cn: str, uids: Sequence[str]) -> None:
        """A new groupOfNames; it must have a member."""
        members = [person_dn(u) for u in uids]
        self._admin("add", group_dn(cn), ["groupOfNames"], {"cn": cn, "member": members})

    def add_member(self, cn: str, uid: str) -> None:
        self._admin("modify", group_dn(cn), {"member": [(ldap3.MODIFY_ADD, [person_dn(uid)])]})

    def remove_member(self, cn: str, uid: str) -> None:
        self._admin("modify", group_dn(cn), {"member": [(ldap3.MODIFY_DELETE, [person_dn(uid)])]})
