"""`switchboard archive …`: the compliance side of the command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bridge.archive.search import Filters, search
from bridge.archive.store import ArchiveStore
from bridge.clikit import EXIT_OK, UsageError, add_config_arg, load_or_fail, parse_when


def add_archive_commands(sub: Any) -> None:
    """Register `archive` and its actions on the top-level subparsers."""
    archive = sub.add_parser(
        "archive", help="search and manage the archive", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    archive_sub = archive.add_subparsers(dest="archive_command", metavar="ACTION", required=True)
    search = archive_sub.add_parser(
        "search",
        help="find archived records",
        description="Find archived records; filters combine with AND.",
        epilog="examples:\n  switchboard archive search --text invoice --since 2026-01-01\n"
        "  switchboard archive search --employee E1001 --network irc --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arg(search)
    search.add_argument("--text", help="words in the message text (case-insensitive)")
    search.add_argument("--employee", help="employee id, e.g. E1001")
    search.add_argument("--network", help="network name from the config, e.g. irc")
    search.add_argument("--portal", help="bridged room id from the config, e.g. trading")
    search.add_argument("--since", help="from this time on (ISO date or time, UTC)")
    search.add_argument("--until", help="before this time (ISO date or time, UTC)")
    search.add_argument("--kind", action="append", default=[], help="record kind; repeat for several")
    search.add_argument("--flag", help="records flagged by this rule")
    search.add_argument("--limit", type=int, help="at most this many records")
    search.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    search.set_defaults(handler=_archive_search)


def _archive_search(args: argparse.Namespace) -> int:
    config = load_or_fail(args)
    filters = Filters(
        text=args.text,
        employee=args.employee,
        network=args.network,
        portal=args.portal,
        since=parse_when(args.since, "--since"),
        until=parse_when(args.until, "--until"),
        kinds=tuple(args.kind),
        flag=args.flag,
        limit=args.limit,
    )
    url = config.archive.url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        raise UsageError(f"archive {url} does not exist yet: run the bridge first, or check archive.url")
    store = ArchiveStore(url)
    try:
        for record in search(store.engine, filters):
            if args.format == "json":
                print(json.dumps(record, ensure_ascii=False))
            else:
                who = record["name"] or record["sender"]
                text = (record["text"] or "").replace("\n", " ")
                print(
                    f"{record['seq']:>7} {record['occurred_at'][:19]} {record['kind']:<12} "
                    f"{record['network']:<8} {record['portal']:<12} {who}: {text}"
                )
    finally:
        store.close()
    return EXIT_OK
