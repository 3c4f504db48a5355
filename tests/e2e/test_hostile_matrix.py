"""Hostile Matrix messages through `switchboard run`: real Synapse, the Slack emulator, real ngircd.

A pill to a ghost whose id decodes to `!channel` used to reach Slack as `<!channel>`
(issue 9, hole 3); markup the stdlib parser choked on stopped all Matrix inbound (hole 1).
"""

from __future__ import annotations

from tests.e2e import test_three_way as three_way
from tests.e2e.harness import unique
from tests.e2e.test_three_way import World

ircd, world = three_way.ircd, three_way.world  # the fixtures: one three-way room


async def test_a_forged_broadcast_pill_reaches_slack_as_text(world: World) -> None:
    tag = unique("f")
    for native in ("=21channel", "=21everyone", "=21here", "=21subteam=5e_s0_o_p_s"):
        ghost = f"@_sb_slack_{native}:{world.synapse.server_name}"
        await world.alice.send(
            world.room_id,
            f"{tag} {native} hey all",
            html=f'{tag} {native} hey <a href="https://matrix.to/#/{ghost}">all</a>',
            **{"m.mentions": {"user_ids": [ghost]}},
        )
        post = await world.on_slack(lambda p, n=native: f"{tag} {n}" in p.text, f"the {native} pill")
        assert post.text == f"{tag} {native} hey all"
        assert "<!" not in post.text
    # Alice created the room, so her own room mention is one: it still reaches Slack as a broadcast.
    await world.alice.send(world.room_id, f"@room {tag} lunch", **{"m.mentions": {"room": True}})
    post = await world.on_slack(lambda p: f"{tag} lunch" in p.text, "the room mention")
    assert post.text == f"<!channel> {tag} lunch"
    [record] = world.messages(f"{tag} =21channel")
    assert record["employee_id"] == "E1001"


async def test_markup_that_broke_the_parser_is_relayed_and_inbound_keeps_flowing(world: World) -> None:
    tag = unique("c")
    await world.alice.send(
        world.room_id, f"{tag} bold after", html=f"<b>{tag} bold</b> <![CDATA[x]]> after <!["
    )
    post = await world.on_slack(lambda p: tag in p.text, "the CDATA message")
    assert post.text == f"*{tag} bold* after"
    line = await world.on_irc(lambda t: tag in t, "the CDATA message on IRC")
    assert line == f"<Alice Smith> \x02{tag} bold\x02 after"
    after = unique("n")
    await world.alice.send(world.room_id, f"{after} business as usual")
    await world.on_slack(lambda p: after in p.text, "the next message")
    [record] = world.messages(tag)
    assert record["flags"] == "[]"
