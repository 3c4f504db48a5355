"""Who spoke on IRC is who the services account says, on a real InspIRCd + Anope network.

The real IRC connector feeds the real router and archive; Matrix is stood in
for by a recording connector. Each test registers its own accounts (Anope's
NickServ), so names never collide within the session.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from bridge.archive import AsyncArchive
from bridge.archive.schema import contents
from bridge.archive.search import Filters, search
from bridge.archive.store import ArchiveStore
from bridge.delivery import Delivery
from bridge.directory.yaml import YamlDirectory
from bridge.model import Portal
from bridge.policy import PolicySet
from bridge.router import NetworkInfo, PortalIndex, Router
from bridge.sandbox.ircd import Ngircd
from bridge.text import Span, Text
from connectors.irc import IrcConnector
from connectors.matrix import MatrixConnector
from tests.integration.test_irc_connector import make_connector, message, unique
from tests.integration.test_irc_scripted import poll
from tests.integration.test_router_delivery import Recorder
from tests.servers.inspircd import ServicesNetwork
from tests.servers.ircclient import IrcClient

PASSWORD = "correct-horse-battery"
MATRIX_ROOM = "!room:corp.test"


@dataclass
class Core:
    irc: IrcConnector
    matrix: Recorder
    archive: AsyncArchive
    delivery: Delivery
    irc_channel: str

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        found = list(search(self.archive.store.engine, Filters()))
        return [r for r in found if kind is None or r["kind"] == kind]

    async def settle(self, count: int, what: str) -> list[dict[str, Any]]:
        """The message and policy_block records, once `count` were archived and delivered."""
        await poll(lambda: len(self._spoken()) >= count, what, timeout=15)
        await self.delivery.idle()
        return self._spoken()

    async def said(self, user: IrcClient, text: str) -> None:
        """`user` says `text`; return once it is archived, so lines keep the order they were said in."""
        count = len(self._spoken())
        await user.privmsg(self.irc_channel, text)
        await self.settle(count + 1, text)

    def content(self, seq: int) -> dict[str, Any]:
        """A record's archived content, as the archive holds it (canonical JSON)."""
        with self.archive.store.engine.connect() as conn:
            body = conn.execute(select(contents.c.body).where(contents.c.seq == seq)).scalar_one()
        return json.loads(body)

    def _spoken(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["kind"] in ("message", "policy_block")]


@asynccontextmanager
async def bridged(
    tmp_path: Path,
    archive_url: str,
    services: ServicesNetwork | Ngircd,
    channel: str,
    people: list[dict[str, Any]],
    unmapped: str = "deny",
    **irc_options: Any,
) -> AsyncIterator[Core]:
    """The bridge's core on a real archive, with the real IRC connector joined to `channel`."""
    (tmp_path / "directory.yaml").write_text(yaml.safe_dump({"people": people}))
    directory = YamlDirectory(tmp_path / "directory.yaml")
    directory.load()
    store = ArchiveStore(archive_url)
    store.migrate()
    archive = AsyncArchive(store)
    irc = make_connector(services, **{"identify": "", **irc_options})  # type: ignore[arg-type]
    matrix = Recorder("matrix")
    connectors = {"matrix": matrix, "irc": irc}
    portals = PortalIndex()
    infos = {
        "matrix": NetworkInfo("matrix", "Matrix", MatrixConnector.capabilities),
        "irc": NetworkInfo("irc", "IRC", IrcConnector.capabilities),
    }

    async def notify(network: str, room: str, user: str, text: str) -> None:
        await connectors[network].notify(room, user, text)

    delivery = Delivery(archive, connectors, frozenset({"trading"}))
    router = Router(
        archive, directory, portals, infos, PolicySet(unmapped=unmapped), delivery.enqueue, notify
    )
    await irc.start(router)
    try:
        room = await irc.join(channel)
        portals.add(Portal("trading", (("matrix", MATRIX_ROOM), ("irc", room))))
        router.ready.set()
        yield Core(irc, matrix, archive, delivery, channel)
    finally:
        await irc.stop()
        await delivery.stop()
        await archive.close()


def person(employee_id: str, name: str, account: str, matrix: str = "") -> dict[str, Any]:
    handles = {"irc": account} | ({"matrix": matrix} if matrix else {})
    return {"employee_id": employee_id, "name": name, "department": "Trading", "handles": handles}


async def clients(services: ServicesNetwork | Ngircd, *nicks: str) -> list[IrcClient]:
    """Connected in parallel: each registration takes about a second on InspIRCd."""
    return list(await asyncio.gather(*(IrcClient(services.host, services.port, n).connect() for n in nicks)))


async def pair(services: ServicesNetwork, account: str, other: str) -> tuple[IrcClient, IrcClient]:
    """Two users: the first registers (and is logged in to) an account named after its nick."""
    first, second = await clients(services, unique(account), unique(other))
    await first.register(PASSWORD)
    return first, second


async def close(*users: IrcClient) -> None:
    await asyncio.gather(*(user.close() for user in users))


async def registered_relay(services: ServicesNetwork) -> dict[str, Any]:
    """Options for a relay that logs in to its own account with SASL."""
    nick = unique("relay")
    [relay] = await clients(services, nick)
    await relay.register(PASSWORD)
    await relay.close()
    return {"nick": nick, "sasl_username": nick, "sasl_password": PASSWORD, "allow_insecure": True}


async def test_an_impostor_with_the_nick_alice_is_unmapped_and_refused(
    services: ServicesNetwork, tmp_path: Path, archive_url: str
) -> None:
    channel = unique("#impostor")
    account = unique("alice")
    [alice] = await clients(services, account)
    await alice.register(PASSWORD)  # the account `aliceN` is Alice's
    await alice.send_raw(f"NICK {account}_w")  # she steps away from her nick …
    await alice.wait_for(lambda line: line.command == "NICK", 10, "nick change")
    relay = await registered_relay(services)
    people = [person("E1001", "Alice Smith", account)]
    async with bridged(tmp_path, archive_url, services, channel, people, **relay) as core:
        assert core.irc._session is not None and core.irc._session.mode == "account"
        [mallory] = await clients(services, account)  # … and Mallory takes it, not logged in
        await asyncio.gather(alice.join(channel), mallory.join(channel))
        await core.said(mallory, "wire the funds today")
        await core.said(alice, "do not wire anything")
        forged, real = await core.settle(2, "both lines")
        notice = await mallory.wait_for(
            lambda line: line.command == "NOTICE" and "not relayed" in line.text, 10, "the refusal"
        )

    assert forged["kind"] == "policy_block" and forged["rule"] == "unmapped"
    assert (forged["sender"], forged["employee_id"], forged["name"]) == (f"nick:{account}", None, None)
    assert forged["sender_display"] == account and forged["text"] == "wire the funds today"
    assert notice.nick == relay["nick"] and notice.target == account
    # The real Alice, under another nick, is Alice: her services account says so.
    assert (real["kind"], real["sender"].casefold(), real["employee_id"]) == ("message", account, "E1001")
    assert real["sender_display"] == f"{account}_w" and real["flags"] == []
    assert [out.text.plain for out in core.matrix.sent] == ["do not wire anything"]
    assert core.matrix.sent[0].sender.employee_id == "E1001"
    await close(alice, mallory)


async def test_with_unmapped_relay_the_impostor_is_flagged_and_not_attributed(
    services: ServicesNetwork, tmp_path: Path, archive_url: str
) -> None:
    channel = unique("#relayed")
    account = unique("alice")
    [holder] = await clients(services, account)
    await holder.register(PASSWORD)
    await holder.close()
    people = [person("E1001", "Alice Smith", account)]
    async with bridged(tmp_path, archive_url, services, channel, people, unmapped="relay") as core:
        [mallory] = await clients(services, account)
        await mallory.join(channel)
        await mallory.privmsg(channel, "I am Alice, trust me")
        [record] = await core.settle(1, "the impostor's line")
    assert record["kind"] == "message" and "unmapped" in record["flags"]
    assert (record["sender"], record["employee_id"]) == (f"nick:{account}", None)
    [out] = core.matrix.sent
    assert out.sender.employee_id is None and "Alice Smith" not in out.sender.display_name
    await mallory.close()


async def test_login_and_logout_mid_channel_are_followed(
    services: ServicesNetwork, tmp_path: Path, archive_url: str
) -> None:
    channel = unique("#account")
    dana, bob = await pair(services, "dana", "bob")
    dana_account, bob_nick = dana.nick, bob.nick
    await dana.logout()
    people = [person("E1004", "Dana Lee", dana_account, "@dana:corp.test")]
    async with bridged(tmp_path, archive_url, services, channel, people, unmapped="relay") as core:
        await asyncio.gather(dana.join(channel), bob.join(channel))
        session = core.irc._session
        assert session is not None
        await core.said(bob, f"{dana_account}: are you there? (1)")
        await core.said(dana, "not logged in yet")
        await dana.identify(PASSWORD)  # ACCOUNT dana
        await poll(lambda: session.account(dana_account) is not None, "account-notify")
        await core.said(bob, f"{dana_account}: are you there? (2)")
        await core.said(dana, "logged in now")
        await dana.logout()  # ACCOUNT *
        await poll(lambda: session.account(dana_account) is None, "account-notify *")
        await core.said(bob, f"{dana_account}: are you there? (3)")
        await core.said(dana, "logged out again")
        records = await core.settle(6, "after logout")

    said = [(r["text"], r["sender"].casefold(), r["employee_id"]) for r in records]
    assert said == [
        (f"{dana_account}: are you there? (1)", f"nick:{bob_nick}", None),
        ("not logged in yet", f"nick:{dana_account}", None),
        (f"{dana_account}: are you there? (2)", f"nick:{bob_nick}", None),
        ("logged in now", dana_account, "E1004"),
        (f"{dana_account}: are you there? (3)", f"nick:{bob_nick}", None),
        ("logged out again", f"nick:{dana_account}", None),
    ]
    # A mention reaches Dana's Matrix account only while her IRC nick was logged in to her account.
    asked = [out for out in core.matrix.sent if "there?" in out.text.plain]
    pinged = [[s.user for s in out.text.mentions()] == ["@dana:corp.test"] for out in asked]
    assert pinged == [False, True, False]
    await close(dana, bob)


async def test_members_there_before_the_bridge_are_resolved_with_whox(
    services: ServicesNetwork, tmp_path: Path, archive_url: str
) -> None:
    channel = unique("#whox")
    carol, guest = await pair(services, "carol", "guest")
    carol_account, guest_nick = carol.nick, guest.nick
    await asyncio.gather(carol.join(channel), guest.join(channel))
    people = [person("E1003", "Carol White", carol_account, "@carol:corp.test")]
    async with bridged(tmp_path, archive_url, services, channel, people, unmapped="relay") as core:
        session = core.irc._session
        assert session is not None
        await poll(lambda: session.account(carol_account) is not None, "the WHOX reply")
        assert session.account(guest_nick) is None
        await core.said(guest, f"{carol_account}: the report?")
        [record] = await core.settle(1, "the guest's line")
    assert record["sender"] == f"nick:{guest_nick}"
    [out] = core.matrix.sent
    assert [s.user for s in out.text.mentions()] == ["@carol:corp.test"]
    await close(carol, guest)


async def test_a_nick_change_keeps_the_account(
    services: ServicesNetwork, tmp_path: Path, archive_url: str
) -> None:
    channel = unique("#renamed")
    erin, frank = await pair(services, "erin", "frank")
    erin_account = erin.nick
    people = [person("E1005", "Erin Ng", erin_account, "@erin:corp.test")]
    async with bridged(tmp_path, archive_url, services, channel, people, unmapped="relay") as core:
        await asyncio.gather(erin.join(channel), frank.join(channel))
        session = core.irc._session
        assert session is not None
        await erin.send_raw(f"NICK {erin_account}_away")
        await frank.wait_for(lambda line: line.command == "NICK", 10, "the nick change")
        await poll(lambda: session.account(f"{erin_account}_away") is not None, "the account renamed")
        await core.said(erin, "still me")
        await core.said(frank, f"{erin_account}_away: noted")
        first, second = await core.settle(2, "both lines")
        # From elsewhere, a mention of Erin's account highlights the nick she uses now.
        mention = Text(
            f"{erin_account}: thanks", (Span("mention", 0, len(erin_account), "", "irc", erin_account),)
        )
        await core.irc.send(message(mention, core.irc_channel.lower()))
        line = await frank.wait_for(lambda line: "thanks" in line.text, 10, "the relayed mention")
        assert line.text == f"<Alice Smith> {erin_account}_away: thanks"
    assert (first["sender"].casefold(), first["employee_id"], first["sender_display"]) == (
        erin_account,
        "E1005",
        f"{erin_account}_away",
    )
    assert [s.user for s in core.matrix.sent[1].text.mentions()] == ["@erin:corp.test"]
    assert second["employee_id"] is None
    await close(erin, frank)


async def test_identify_nick_maps_by_nick_and_flags_every_message(
    services: ServicesNetwork, tmp_path: Path, archive_url: str
) -> None:
    channel = unique("#bynick")
    nick = unique("gina")
    people = [person("E1006", "Gina Roe", nick)]
    async with bridged(tmp_path, archive_url, services, channel, people, identify="nick") as core:
        [gina] = await clients(services, nick)
        await gina.join(channel)
        await core.said(gina, "by nick alone")
        [record] = await core.settle(1, "gina's line")
    assert (record["sender"], record["employee_id"]) == (nick, "E1006")
    assert record["flags"] == ["unverified_identity"]
    await gina.close()
