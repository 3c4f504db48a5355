"""`switchboard directory …`: ask the directory what the bridge would see."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from bridge.clikit import EXIT_FAIL, EXIT_OK, UsageError, add_config_arg, load_or_fail
from bridge.directory.factory import make_directory
from bridge.directory.ldap import DirectoryReport, LdapConfigError, LdapDirectory, index_handles
from bridge.model import Identity


def add_directory_commands(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    directory = sub.add_parser(
        "directory", help="look people up in the corporate directory", formatter_class=fmt
    )
    actions = directory.add_subparsers(dest="directory_command", metavar="ACTION", required=True)
    lookup = actions.add_parser(
        "lookup",
        help="who is behind a handle on a network",
        description="Resolve a handle exactly as the bridge does for a sender (exit 1 when nobody has it).",
        epilog="examples:\n  switchboard directory lookup irc alice\n"
        "  switchboard directory lookup matrix @alice:corp.test --format json",
        formatter_class=fmt,
    )
    add_config_arg(lookup)
    lookup.add_argument("network", help="network name from the config, e.g. irc")
    lookup.add_argument("handle", help="the person's id on that network")
    lookup.add_argument("--format", choices=("text", "json"), default="text")
    lookup.set_defaults(handler=_lookup)
    check = actions.add_parser(
        "check",
        help="load the directory and report what to fix",
        description="Connect, count people and groups, list people no network can resolve and handles "
        "claimed by two people (exit 1 when there are such conflicts).",
        epilog="example:\n  switchboard directory check -c switchboard.yaml",
        formatter_class=fmt,
    )
    add_config_arg(check)
    check.set_defaults(handler=_check)


def _identity_json(person: Identity) -> dict[str, Any]:
    return {
        "employee_id": person.employee_id,
        "name": person.name,
        "department": person.department,
        "groups": sorted(person.groups),
        "enabled": person.enabled,
        "handles": dict(person.handles),
    }


def _lookup(args: argparse.Namespace) -> int:
    config = load_or_fail(args)
    if args.network not in config.networks:
        raise UsageError(f"unknown network '{args.network}' (networks: {', '.join(sorted(config.networks))})")

    async def run() -> Identity | None:
        directory = _directory(config)
        await directory.start()
        try:
            return await directory.lookup(args.network, args.handle)
        finally:
            await directory.stop()

    person = asyncio.run(run())
    if person is None:
        print(f"{args.handle} on {args.network}: not in the directory (unmapped)")
        return EXIT_FAIL
    if args.format == "json":
        print(json.dumps(_identity_json(person), ensure_ascii=False))
    else:
        state = "enabled" if person.enabled else "DISABLED"
        groups = ", ".join(sorted(person.groups)) or "no groups"
        print(f"{person.employee_id}  {person.name}  {person.department or '-'}  ({groups}; {state})")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    config = load_or_fail(args)
    directory = _directory(config)

    async def run() -> DirectoryReport:
        if isinstance(directory, LdapDirectory):
            try:
                return await directory.check()
            finally:
                await directory.stop()
        await directory.start()
        people = directory.people()
        await directory.stop()
        _, conflicts = index_handles(people)
        return DirectoryReport(
            people=len(people),
            disabled=sum(not p.enabled for p in people),
            groups=len(set().union(*(p.groups for p in people))),
            without_handles=[p.employee_id for p in people if not p.handles],
            conflicts={f"{net}:{handle}": ids for (net, handle), ids in conflicts.items()},
            skipped=[],
        )

    report = asyncio.run(run())
    print(f"{report.people} people ({report.disabled} disabled), {report.groups} groups")
    if report.without_handles:
        print(f"no chat handles (cannot be resolved on any network): {', '.join(report.without_handles)}")
    for handle, ids in sorted(report.conflicts.items()):
        print(f"handle {handle} is claimed by {', '.join(ids)}: it resolves to nobody until one is fixed")
    for dn in report.skipped:
        print(f"skipped {dn}: it has no employee id attribute")
    return EXIT_FAIL if report.conflicts or report.skipped else EXIT_OK


def _directory(config: Any) -> Any:
    try:
        return make_directory(config)
    except LdapConfigError as exc:
        raise UsageError(f"{config.file}: directory: {exc}") from None
