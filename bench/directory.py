"""LDAP directory benchmark: a 10,000-person OpenLDAP, warm resolve and cold lookup.

Run from the repository root:

    .venv/bin/python -m bench.directory [--people 10000] [--cold 200]

It builds a private slapd (slapadd -q), starts LdapDirectory against it as the
service account, and prints:
- load: the full directory load at start, and a reload (check()) afterwards, with
  how late a 10 ms timer on the event loop fires meanwhile;
- resolve: µs per call from memory, over every network and in mixed case;
- lookup: ms per cold lookup of a person added on the server after start
  (one search for the handle, one for disabled, one for groups), and of an
  unknown handle (a miss) and a remembered miss.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time

from bridge.directory.ldap import LdapDirectory
from tests.servers.slapd import Person, Slapd, generated_people


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(samples_s: list[float]) -> str:
    ms = [s * 1000 for s in samples_s]
    return f"p50 {percentile(ms, 50):.2f} ms, p99 {percentile(ms, 99):.2f} ms, max {max(ms):.2f} ms (n={len(ms)})"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench(people_count: int, cold: int, iterations: int) -> None:
    people, groups = generated_people(people_count)
    began = time.perf_counter()
    with Slapd(people=people, groups=groups) as server:
        print(
            f"slapd with {people_count} people, {len(groups)} groups ready in {time.perf_counter() - began:.2f} s"
        )
        directory = LdapDirectory(server.options(refresh_seconds=3600))
        rss_before = rss_mb()
        began = time.perf_counter()
        await directory.start()
        print(
            f"load at start: {time.perf_counter() - began:.2f} s for {len(directory.people())} people "
            f"(process max RSS {rss_before:.0f} -> {rss_mb():.0f} MB)"
        )
        lags: list[float] = []
        ticking = asyncio.create_task(_tick(lags))
        began = time.perf_counter()
        report = await directory.check()
        elapsed = time.perf_counter() - began
        ticking.cancel()
        print(f"full reload (check): {elapsed:.2f} s, {report.people} people, {report.groups} groups")
        print(
            f"event loop during the reload: a 10 ms timer fired late by p50 {percentile(lags, 50) * 1000:.2f} ms, "
            f"max {max(lags) * 1000:.2f} ms"
        )

        handles = [(net, h.upper() if i % 2 else h) for i, p in enumerate(people) for net, h in _handles(p)]
        assert all(directory.resolve(net, h) is not None for net, h in handles[:1000])
        rounds = max(1, iterations // len(handles))
        resolve = directory.resolve
        began = time.perf_counter()
        for _ in range(rounds):
            for net, h in handles:
                resolve(net, h)
        per_call = (time.perf_counter() - began) / (rounds * len(handles)) * 1e6
        print(
            f"resolve (warm, {rounds * len(handles)} calls over {len(handles)} handles): {per_call:.2f} µs/call"
        )

        found: list[float] = []
        for i in range(cold):
            nick = f"newcomer{i:04d}"
            server.add_person(
                Person(f"new{i:04d}", f"N{i:05d}", f"New Comer {i}", "Dept00", irc=(nick,)), groups=["dept00"]
            )
            began = time.perf_counter()
            person = await directory.lookup("irc", nick)
            found.append(time.perf_counter() - began)
            assert person is not None and person.groups == {"dept00"}, nick
        print(f"lookup, cold hit (person added after start): {summary(found)}")

        missed: list[float] = []
        for i in range(cold):
            began = time.perf_counter()
            assert await directory.lookup("irc", f"stranger{i:04d}") is None
            missed.append(time.perf_counter() - began)
        print(f"lookup, cold miss (unknown handle): {summary(missed)}")

        began = time.perf_counter()
        for i in range(cold):
            await directory.lookup("irc", f"stranger{i:04d}")
        cached = (time.perf_counter() - began) / cold * 1e6
        print(
            f"lookup, remembered miss: {cached:.1f} µs/call; server lookups in all: {directory.server_lookups}"
        )
        await directory.stop()


async def _tick(lags: list[float]) -> None:
    """How late a 10 ms timer fires: the reload runs in a thread but holds the GIL while parsing."""
    while True:
        began = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - began - 0.01)


def _handles(person: Person) -> list[tuple[str, str]]:
    return (
        [("matrix", h) for h in person.matrix]
        + [("slack", h) for h in person.slack]
        + [("irc", h) for h in person.irc]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--cold", type=int, default=200, help="cold lookups to time")
    parser.add_argument("--iterations", type=int, default=1_000_000, help="warm resolve calls to time")
    args = parser.parse_args()
    asyncio.run(bench(args.people, args.cold, args.iterations))


if __name__ == "__main__":
    main()
