"""The LDAP directory against a real OpenLDAP: mapping, cold lookups, refresh, outages, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from bridge.directory.ldap import DirectoryUnavailable, LdapConfigError, LdapDirectory
from bridge.model import Identity
from tests.servers.slapd import PEOPLE_BASE, Person, Slapd, generated_people, person_dn

ALICE = Person(
    "alice",
    "E1001",
    "Alice Smith",
    "Trading",
    matrix=("@alice:corp.test",),
    slack=("U0ALICE",),
    irc=("alice",),
)
BOB = Person(
    "bob", "E1002", "Bob Jones", "Sales", matrix=("@bob:corp.test",), slack=("U0BOB",), irc=("bob", "bobby")
)
CAROL = Person("carol", "E1003", "Carol White", "Trading", irc=("carol",), disabled=True)
DAVE = Person("dave", "E1004", "Dave Brown", "Sales")  # no chat handles at all
GROUPS = {"traders": ["alice", "carol"], "sales": ["bob", "dave"], "staff": ["alice", "bob"]}
LOGGER = "switchboard.directory"


@pytest.fixture
def slapd() -> Iterator[Slapd]:
    """A fresh server per test: tests change people, stop and restart it."""
    with Slapd(people=[ALICE, BOB, CAROL, DAVE], groups=GROUPS) as server:
        yield server


@pytest.fixture
async def directory(slapd: Slapd) -> AsyncIterator[LdapDirectory]:
    """Started against `slapd`; refresh long enough never to run during a test."""
    d = LdapDirectory(slapd.options(refresh_seconds=3600))
    await d.start()
    yield d
    await d.stop()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and text in r.getMessage()]


async def test_resolves_every_network_case_insensitively(directory: LdapDirectory) -> None:
    alice = directory.resolve("irc", "ALICE")
    assert alice == Identity(
        employee_id="E1001",
        name="Alice Smith",
        department="Trading",
        groups=frozenset({"traders", "staff"}),
        enabled=True,
        handles=(("matrix", "@alice:corp.test"), ("slack", "U0ALICE"), ("irc", "alice")),
    )
    assert directory.resolve("matrix", "@Alice:Corp.Test") is alice
    assert directory.resolve("slack", "u0alice") is alice
    bob = directory.resolve("irc", "Bobby")  # second value of a multi-valued handle attribute
    assert bob is not None and bob.employee_id == "E1002" and bob.department == "Sales"
    assert bob.groups == {"sales", "staff"} and directory.resolve("irc", "bob") is bob
    carol = directory.resolve("irc", "carol")
    assert carol is not None and not carol.enabled and carol.groups == {"traders"}
    assert directory.resolve("irc", "stud_broker") is None
    assert directory.resolve("xmpp", "alice") is None  # a network with no handle attribute
    assert directory.resolve("slack", "alice") is None  # handles belong to their network
    assert sorted(p.employee_id for p in directory.people()) == ["E1001", "E1002", "E1003", "E1004"]


async def test_default_attributes_fall_back_to_cn_and_ou(slapd: Slapd) -> None:
    slapd.set_attribute("bob", "displayName", [])
    slapd.set_attribute("bob", "departmentNumber", [])
    slapd.set_attribute("bob", "ou", ["Research"])
    options = slapd.options(refresh_seconds=3600)
    del options["attributes"]  # the defaults: employeeNumber, displayName|cn, departmentNumber|ou, chatPerson
    d = LdapDirectory(options)
    await d.start()
    try:
        bob = d.resolve("slack", "U0BOB")
        assert bob is not None and (bob.name, bob.department) == ("Bob Jones", "Research")
        alice = d.resolve("matrix", "@alice:corp.test")
        assert alice is not None and alice.department == "Trading"
    finally:
        await d.stop()


async def test_lookup_finds_a_person_added_after_start(slapd: Slapd, directory: LdapDirectory) -> None:
    slapd.add_person(Person("frank", "E1006", "Frank Green", "Sales", irc=("frank",)), groups=["sales"])
    slapd.add_person(Person("gina", "E1007", "Gina Black", "Ops", slack=("U0GINA",), disabled=True))
    assert directory.resolve("irc", "frank") is None  # memory only, and not reloaded yet
    frank = await directory.lookup("irc", "FRANK")
    assert frank is not None and (frank.employee_id, frank.name, frank.department) == (
        "E1006",
        "Frank Green",
        "Sales",
    )
    assert frank.groups == {"sales"} and frank.enabled
    assert directory.resolve("irc", "frank") is frank  # now served from memory
    assert frank in directory.people()
    gina = await directory.lookup("slack", "u0gina")
    assert gina is not None and not gina.enabled  # the cold path applies disabled_filter too
    assert directory.server_lookups == 2
    assert await directory.lookup("irc", "alice") is directory.resolve("irc", "alice")
    assert directory.server_lookups == 2  # known handles never reach the server


async def test_a_new_handle_of_a_known_person_replaces_their_entry(
    slapd: Slapd, directory: LdapDirectory
) -> None:
    slapd.set_attribute("alice", "ircNick", ["alice", "alice_away"])
    alice = await directory.lookup("irc", "alice_away")
    assert alice is not None and alice.employee_id == "E1001"
    assert directory.resolve("irc", "alice") is alice and directory.resolve("slack", "U0ALICE") is alice
    assert [p.employee_id for p in directory.people()].count("E1001") == 1


async def test_lookup_escapes_the_handle(slapd: Slapd, directory: LdapDirectory) -> None:
    slapd.add_person(Person("moo", "E1008", "Moo Cow", irc=("[m]oo\\",), matrix=("@m(oo)*:corp.test",)))
    assert await directory.lookup("irc", "ali*") is None  # unescaped, this would find alice
    assert await directory.lookup("matrix", "*") is None
    moo = await directory.lookup("irc", "[M]OO\\")
    assert moo is not None and moo.employee_id == "E1008"
    assert await directory.lookup("matrix", "@m(oo)*:corp.test") is moo


async def test_unknown_handle_is_asked_once_per_negative_cache_period(
    slapd: Slapd, directory: LdapDirectory
) -> None:
    floods = await asyncio.gather(*(directory.lookup("irc", "stud_broker") for _ in range(100)))
    assert floods == [None] * 100
    assert directory.server_lookups == 1  # concurrent lookups share one query
    for _ in range(50):
        assert await directory.lookup("irc", "Stud_Broker") is None
    assert directory.server_lookups == 1  # then the miss is remembered
    slapd.add_person(Person("stud", "E1009", "Stud Broker", irc=("stud_broker",)))
    assert await directory.lookup("irc", "stud_broker") is None  # still within the default 60 s
    assert directory.server_lookups == 1


async def test_negative_cache_expires(slapd: Slapd) -> None:
    d = LdapDirectory(slapd.options(refresh_seconds=3600, negative_cache_seconds=0.3))
    await d.start()
    try:
        assert await d.lookup("irc", "latecomer") is None
        slapd.add_person(Person("late", "E1010", "Late Comer", irc=("latecomer",)))
        assert await d.lookup("irc", "latecomer") is None  # the remembered miss
        assert d.server_lookups == 1
        deadline = time.monotonic() + 10
        while (late := await d.lookup("irc", "latecomer")) is None:
            assert time.monotonic() < deadline, "the negative cache never expired"
            await asyncio.sleep(0.05)
        assert late.employee_id == "E1010" and d.server_lookups == 2
        assert d.resolve("irc", "latecomer") is late
    finally:
        await d.stop()


async def test_changes_on_the_server_arrive_with_the_refresh(slapd: Slapd) -> None:
    d = LdapDirectory(slapd.options(refresh_seconds=0.5))
    await d.start()
    try:
        alice = d.resolve("irc", "alice")
        assert alice is not None and alice.enabled
        slapd.disable("alice")
        slapd.enable("carol")
        slapd.remove_member("staff", "bob")
        slapd.delete_person("dave")
        slapd.set_attribute("bob", "ircNick", ["robert"])

        def refreshed() -> bool:
            alice, carol = d.resolve("irc", "alice"), d.resolve("irc", "carol")
            return alice is not None and not alice.enabled and carol is not None and carol.enabled

        await eventually(refreshed, "alice disabled and carol enabled")
        bob = d.resolve("irc", "robert")
        assert bob is not None and bob.groups == {"sales"}
        assert d.resolve("irc", "bobby") is None  # a removed handle stops resolving
        assert "E1004" not in {p.employee_id for p in d.people()}
    finally:
        await d.stop()


async def test_server_outage_keeps_serving_and_recovers(
    slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    d = LdapDirectory(slapd.options(refresh_seconds=0.3, negative_cache_seconds=0.01))
    await d.start()
    try:
        slapd.stop()
        await eventually(lambda: bool(warnings(caplog, "unavailable")), "the outage warning")
        alice = d.resolve("irc", "alice")
        assert alice is not None and alice.enabled and alice.groups == {"traders", "staff"}
        carol = d.resolve("irc", "carol")
        assert carol is not None and not carol.enabled  # a failure never enables anyone
        before = d.server_lookups
        for i in range(5):  # each goes to the (down) server and fails
            assert await d.lookup("irc", f"nobody{i}") is None
        assert d.server_lookups == before + 5
        assert await d.lookup("irc", "ALICE") is alice
        assert len(warnings(caplog, "unavailable")) == 1  # one warning per outage, not per failure
        assert not warnings(caplog, "reachable again")

        # Changes made while the bridge could not see the server.
        slapd.modify_offline(
            f"dn: {person_dn('alice')}\nchangetype: modify\nreplace: employeeType\nemployeeType: disabled\n-\n\n"
            f"dn: uid=hank,{PEOPLE_BASE}\nchangetype: add\nobjectClass: inetOrgPerson\nobjectClass: chatPerson\n"
            "uid: hank\ncn: Hank Hill\nsn: Hill\nemployeeNumber: E1011\nircNick: hank\n\n"
        )
        slapd.start()

        def recovered() -> bool:
            alice, hank = d.resolve("irc", "alice"), d.resolve("irc", "hank")
            return alice is not None and not alice.enabled and hank is not None

        await eventually(recovered, "the changes made during the outage")
        hank = d.resolve("irc", "hank")
        assert hank is not None and (hank.employee_id, hank.name) == ("E1011", "Hank Hill")
        assert len(warnings(caplog, "reachable again")) == 1
        assert len(warnings(caplog, "unavailable")) == 1
        bob = await d.lookup("irc", "bob")
        assert bob is not None and bob.enabled
    finally:
        await d.stop()


async def test_restarted_server_is_reconnected_without_a_warning(
    slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    d = LdapDirectory(slapd.options(refresh_seconds=3600))
    await d.start()
    try:
        slapd.restart()  # both long-lived connections are now dead sockets
        slapd.add_person(Person("ivy", "E1012", "Ivy Gold", irc=("ivy",)))
        ivy = await d.lookup("irc", "ivy")
        assert ivy is not None and ivy.employee_id == "E1012"
        report = await d.check()  # the bulk connection reconnects too
        assert report.people == 5
        assert not warnings(caplog, "unavailable")
    finally:
        await d.stop()


async def test_wrong_password_is_a_clear_error_at_start(slapd: Slapd) -> None:
    d = LdapDirectory(slapd.options(bind_password="not-the-password"))
    with pytest.raises(DirectoryUnavailable) as err:
        await d.start()
    message = str(err.value)
    assert slapd.url in message and "cn=switchboard" in message and "invalidCredentials" in message
    assert "not-the-password" not in message


async def test_server_down_at_start_is_a_clear_error(slapd: Slapd) -> None:
    slapd.stop()
    d = LdapDirectory(slapd.options())
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable) as err:
        await d.start()
    assert time.monotonic() - started < 5
    assert slapd.url in str(err.value) and "refused" in str(err.value).lower()


def test_empty_password_is_refused_without_contacting_the_server() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        url = f"ldap://127.0.0.1:{listener.getsockname()[1]}"
        options = {
            "url": url,
            "bind_dn": "cn=switchboard,ou=services,dc=corp,dc=test",
            "people_base": PEOPLE_BASE,
        }
        for empty in ("", None):
            with pytest.raises(LdapConfigError, match="bind_password is empty"):
                LdapDirectory({**options, "bind_password": empty})
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


async def test_check_reports_what_to_fix(slapd: Slapd, directory: LdapDirectory) -> None:
    slapd.add_person(Person("erin", "E1005", "Erin Gray", irc=("Shared",)))
    slapd.add_person(Person("fred", "E1013", "Fred Blue", irc=("shared",), slack=("U0FRED",)))
    slapd.add_person(Person("nobody", "", "No Number", irc=("nonumber",)))  # no employeeNumber
    report = await directory.check()
    assert (report.people, report.disabled, report.groups) == (6, 1, 3)
    assert report.without_handles == ["E1004"]
    assert report.conflicts == {"irc:shared": ["E1005", "E1013"]}
    assert report.skipped == [person_dn("nobody")]
    assert await directory.lookup("irc", "shared") is None  # claimed twice: nobody's
    fred = await directory.lookup("slack", "U0FRED")
    assert fred is not None and fred.employee_id == "E1013"
    assert directory.resolve("irc", "shared") is None


async def test_large_directory_is_paged_and_a_size_limit_is_an_error() -> None:
    people, groups = generated_people(1200, departments=3)
    with Slapd(people=people, groups=groups) as server:
        d = LdapDirectory(server.options(refresh_seconds=3600))
        await d.start()
        try:
            assert len(d.people()) == 1200  # three pages of 500
            user = d.resolve("irc", "user01199")
            assert user is not None and user.groups == {"dept02"}
        finally:
            await d.stop()
    with Slapd(people=people[:600], groups={}, unlimited_service=False) as limited:
        d = LdapDirectory(limited.options())
        with pytest.raises(DirectoryUnavailable, match="size limit"):
            await d.start()  # never a silently partial directory


async def test_starttls_and_ldaps_verify_the_certificate() -> None:
    with Slapd(people=[ALICE], groups={}, tls=True) as server:
        ca = str(server.cert_path)
        for options in (
            server.options(starttls=True, tls_ca_file=ca),
            server.options(url=server.ldaps_url, tls_ca_file=ca),
        ):
            d = LdapDirectory(options)
            await d.start()
            try:
                assert d.resolve("irc", "alice") is not None
            finally:
                await d.stop()
        for options in (server.options(starttls=True), server.options(url=server.ldaps_url)):
            with pytest.raises(DirectoryUnavailable, match="certificate verify failed"):
                await LdapDirectory(options).start()  # a self-signed certificate is not trusted by default
        wrong_name = server.options(url=server.ldaps_url.replace("127.0.0.1", "localhost"), tls_ca_file=ca)
        with pytest.raises(DirectoryUnavailable, match="doesn't match any name"):
            await LdapDirectory(wrong_name).start()


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the fd listdir itself used
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


async def test_stop_closes_its_connections(slapd: Slapd) -> None:
    before = open_sockets()
    d = LdapDirectory(slapd.options(refresh_seconds=0.2))
    await d.start()
    assert await d.lookup("irc", "nobody") is None  # opens the lookup connection too
    await d.check()
    assert open_sockets() == before + 2
    await d.stop()
    assert open_sockets() == before
    failing = LdapDirectory(slapd.options(bind_password="wrong"))
    with pytest.raises(DirectoryUnavailable):
        await failing.start()
    assert open_sockets() == before


async def test_misses_stay_bounded_during_an_outage() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"ldap://127.0.0.1:{closed.getsockname()[1]}"
        d = LdapDirectory({"url": url, "people_base": PEOPLE_BASE, "negative_cache_seconds": 0.2})
        for i in range(50):
            assert await d.lookup("irc", f"flood{i}") is None
        assert len(d._misses) == 50
        deadline = time.monotonic() + 10
        # Each round adds a miss; pruning keeps only those younger than 0.2 s (a few rounds).
        while len(d._misses) > 10:
            assert time.monotonic() < deadline, "misses were never pruned"
            await asyncio.sleep(0.05)
            assert await d.lookup("irc", f"late{time.monotonic()}") is None
        assert d.server_lookups > 50
        await d.stop()
