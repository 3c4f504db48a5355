"""LDAP directory pieces that need no server: options, filters, DNs, entry mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.directory.ldap import (
    AttributeMap,
    LdapConfigError,
    and_filter,
    describe,
    dn_key,
    equality_filter,
    index_handles,
    normalize_filter,
    parse_attributes,
    parse_options,
    person_from_entry,
)
from bridge.model import Identity

BASE = {
    "url": "ldap://ldap.corp.example",
    "bind_dn": "cn=switchboard,ou=services,dc=corp,dc=example",
    "bind_password": "secret",
    "people_base": "ou=people,dc=corp,dc=example",
    "allow_insecure": True,  # a password over plain ldap://: see test_a_cleartext_password_bind_is_refused
}


def test_filters_are_parenthesized_and_combined() -> None:
    assert normalize_filter(" objectClass=person ") == "(objectClass=person)"
    assert normalize_filter("(objectClass=person)") == "(objectClass=person)"
    assert and_filter("objectClass=person", None, "", "(employeeType=disabled)") == (
        "(&(objectClass=person)(employeeType=disabled))"
    )
    assert and_filter("(uid=a)") == "(uid=a)"
    assert and_filter(None) == "(objectClass=*)"


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("alice", "(ircNick=alice)"),
        ("ali*", r"(ircNick=ali\2a)"),
        ("a(b)c", r"(ircNick=a\28b\29c)"),
        ("back\\slash", r"(ircNick=back\5cslash)"),
        ("nul\x00", r"(ircNick=nul\00)"),
        ("*)(uid=*", r"(ircNick=\2a\29\28uid=\2a)"),  # an injection attempt stays one value
    ],
)
def test_equality_filter_escapes_the_value(value: str, escaped: str) -> None:
    assert equality_filter("ircNick", value) == escaped


def test_member_filter_escapes_a_dn_with_escaped_commas() -> None:
    dn = r"cn=Smith\, John,ou=people,dc=corp,dc=test"
    assert equality_filter("member", dn) == r"(member=cn=Smith\5c, John,ou=people,dc=corp,dc=test)"


def test_dn_key_ignores_case_and_spaces_around_separators() -> None:
    assert dn_key("uid=Alice, ou=People ,dc=corp,dc=test") == dn_key("UID = alice,ou=people,DC=corp,dc=test")
    assert dn_key("uid=alice,ou=people,dc=corp,dc=test") != dn_key("uid=alicia,ou=people,dc=corp,dc=test")


def test_entry_maps_with_fallbacks_and_multi_valued_handles() -> None:
    mapping = AttributeMap()
    attrs = {
        "employeeNumber": ["E1"],
        "cn": ["Alice Smith", "A. Smith"],
        "displayName": [],
        "ou": ["Trading"],
        "ircNick": ["alice", " ", "ALI"],
        "matrixId": [b"@alice:corp.test"],
        "slackUserId": [],
    }
    person = person_from_entry(attrs, mapping, {"traders"}, enabled=False)
    assert person == Identity(
        employee_id="E1",
        name="Alice Smith",
        department="Trading",
        groups=frozenset({"traders"}),
        enabled=False,
        handles=(("matrix", "@alice:corp.test"), ("irc", "alice"), ("irc", "ALI")),
    )
    assert person.handle("irc") == "alice"


def test_entry_prefers_the_first_attribute_present_and_needs_an_employee_id() -> None:
    mapping = AttributeMap()
    attrs = {
        "employeeNumber": ["E2"],
        "displayName": ["Bob J."],
        "cn": ["Bob Jones"],
        "departmentNumber": ["42"],
    }
    bob = person_from_entry(attrs, mapping, (), enabled=True)
    assert bob is not None and (bob.name, bob.department, bob.handles) == ("Bob J.", "42", ())
    assert person_from_entry({"cn": ["No Number"]}, mapping, (), enabled=True) is None
    undecodable = person_from_entry({"employeeNumber": [b"E\xff3"]}, mapping, (), enabled=True)
    assert (
        undecodable is not None and undecodable.employee_id == "E\ufffd3" and undecodable.name == "E\ufffd3"
    )


def test_handle_claimed_by_two_people_maps_to_nobody() -> None:
    ann = Identity("E1", "Ann", handles=(("irc", "Ann"), ("irc", "ann"), ("slack", "U1")))
    bea = Identity("E2", "Bea", handles=(("irc", "ANN"), ("slack", "U2")))
    index, conflicts = index_handles([ann, bea])
    assert conflicts == {("irc", "ann"): ["E1", "E2"]}
    assert index == {("slack", "u1"): ann, ("slack", "u2"): bea}


def test_attributes_default_and_override() -> None:
    default = parse_attributes(None)
    assert default.requested() == [
        "employeeNumber",
        "displayName",
        "cn",
        "departmentNumber",
        "ou",
        "matrixId",
        "slackUserId",
        "ircNick",
    ]
    ad = parse_attributes(
        {
            "employee_id": "employeeID",
            "name": ["displayName"],
            "department": "department",
            "handles": {"irc": "ircNick"},
        }
    )
    assert ad.employee_id == ("employeeID",) and ad.department == ("department",)
    assert ad.name == ("displayName", "cn")  # cn is mandatory on every person: the last fallback
    assert ad.handles == (("irc", "ircNick"),)
    assert ad.handle_attribute("irc") == "ircNick" and ad.handle_attribute("matrix") is None


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"nmae": "cn"}, "unknown key 'nmae'"),
        ({"name": ""}, "attributes.name"),
        ({"department": ["ou", 3]}, "attributes.department"),
        ({"handles": ["ircNick"]}, "attributes.handles"),
        ({"handles": {"irc": ""}}, "attributes.handles"),
    ],
)
def test_bad_attributes_are_named(attributes: dict[str, object], message: str) -> None:
    with pytest.raises(LdapConfigError, match=message):
        parse_attributes(attributes)


def test_options_defaults() -> None:
    s = parse_options({**BASE, "people_filter": "objectClass=person", "type": "ldap", "unmapped": "deny"})
    assert (s.host, s.port, s.use_ssl, s.starttls) == ("ldap.corp.example", 389, False, False)
    assert s.people_filter == "(objectClass=person)"
    assert (
        s.group_base is None and s.group_filter == "(objectClass=groupOfNames)" and s.disabled_filter is None
    )
    assert (s.refresh_seconds, s.negative_cache_seconds, s.timeout_seconds) == (60.0, 60.0, 10.0)
    ldaps = parse_options({**BASE, "url": "ldaps://ldap.corp.example", "refresh_seconds": 5})
    assert (ldaps.port, ldaps.use_ssl, ldaps.refresh_seconds) == (636, True, 5.0)
    assert parse_options({**BASE, "url": "ldap://10.0.0.1:1389"}).port == 1389
    anonymous = parse_options({"url": "ldap://h", "people_base": "dc=x"})
    assert anonymous.bind_dn is None and anonymous.bind_password is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bind_password": ""}, "bind_password is empty"),
        ({"bind_password": None}, "bind_password is empty"),
        ({"bind_dn": None}, "bind_dn is not"),
        ({"url": "http://ldap.corp.example"}, "directory.url"),
        ({"url": None}, "directory.url"),
        ({"url": "ldaps://h", "starttls": True}, "starttls"),
        ({"people_base": " "}, "people_base is required"),
        ({"refresh_seconds": 0}, "refresh_seconds"),
        ({"negative_cache_seconds": "1m"}, "negative_cache_seconds"),
        ({"tls_ca_file": "/nonexistent/ca.pem"}, "tls_ca_file"),
    ],
)
def test_bad_options_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(LdapConfigError, match=message):
        parse_options({**BASE, **change})


def test_a_cleartext_password_bind_is_refused_unless_allowed() -> None:
    cleartext = {k: v for k, v in BASE.items() if k != "allow_insecure"}
    with pytest.raises(LdapConfigError, match=r"^directory.url: a password bind over plain ldap://"):
        parse_options(cleartext)
    with pytest.raises(LdapConfigError, match="clear text"):
        parse_options({**cleartext, "allow_insecure": False})
    assert parse_options({**cleartext, "starttls": True}).starttls
    assert parse_options({**cleartext, "url": "ldaps://ldap.corp.example"}).use_ssl
    assert parse_options({**cleartext, "allow_insecure": True}).bind_password == "secret"
    # No password, nothing to overhear: an anonymous bind over ldap:// stays allowed.
    assert parse_options({"url": "ldap://h", "people_base": "dc=x"}).bind_dn is None


def test_ca_file_must_exist(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert parse_options({**BASE, "tls_ca_file": str(ca)}).tls_ca_file == str(ca)


def test_describe_unwraps_ldap3_nested_messages() -> None:
    wrapped = Exception("(\"('socket ssl wrapping error: certificate verify failed',)\",)")
    assert describe(wrapped) == "socket ssl wrapping error: certificate verify failed"
    assert (
        describe(Exception("bind as x refused: invalidCredentials"))
        == "bind as x refused: invalidCredentials"
    )
    assert describe(Exception("(a, b)")) == "(a, b)"
