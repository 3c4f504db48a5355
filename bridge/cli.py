"""The `switchboard` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import yaml

from bridge.config import Config, ConfigError, load_config
from bridge.yamlsource import SourceError

DEFAULT_CONFIG = "switchboard.yaml"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit 2."""


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="switchboard",
        formatter_class=fmt,
        description="Compliance-grade chat bridge: Matrix, Slack and IRC, with a tamper-evident archive.",
        epilog="examples:\n  switchboard demo\n  switchboard check -c switchboard.yaml\n"
        "  switchboard run -c switchboard.yaml\n  switchboard archive search --employee E1001 --format json",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, help: str, example: str, handler: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        cmd = sub.add_parser(
            name, help=help, description=help, epilog=f"example:\n  {example}", formatter_class=fmt
        )
        cmd.add_argument(
            "-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default ./{DEFAULT_CONFIG})"
        )
        cmd.set_defaults(handler=handler)
        return cmd

    command("run", "run the bridge until Ctrl-C or SIGTERM", "switchboard run -c switchboard.yaml", _run)
    command(
        "check",
        "validate a config offline and report every problem",
        "switchboard check -c switchboard.yaml",
        _check,
    )
    command(
        "registration",
        "print the Matrix appservice registration for the homeserver",
        "switchboard registration -c switchboard.yaml > registration.yaml",
        _registration,
    )
    demo = command(
        "demo",
        "start a local sandbox: Synapse, an IRC server, a directory and the bridge",
        "switchboard demo --dir /tmp/switchboard-demo",
        _demo,
    )
    demo.add_argument("--dir", type=Path, help="where the sandbox keeps its files (default: a new temp dir)")

    archive = sub.add_parser("archive", help="search and manage the archive", formatter_class=fmt)
    archive_sub = archive.add_subparsers(dest="archive_command", metavar="ACTION", required=True)
    search = archive_sub.add_parser(
        "search",
        help="find archived records",
        description="Find archived records; filters combine with AND.",
        epilog="examples:\n  switchboard archive search --text invoice --since 2026-01-01\n"
        "  switchboard archive search --employee E1001 --network irc --format json",
        formatter_class=fmt,
    )
    search.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default ./{DEFAULT_CONFIG})"
    )
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
    return p


def _load(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except SourceError as exc:
        raise UsageError(str(exc)) from None


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run(args: argparse.Namespace) -> int:
    from bridge.app import run_bridge

    config = _load(args)
    _setup_logging(config.log_level)
    asyncio.run(run_bridge(config))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from bridge.directory.yaml import load_people

    config = _load(args)
    people = 0
    if config.directory.type == "yaml":
        try:
            people = len(load_people(config.directory.options["path"]))
        except SourceError as exc:
            raise UsageError(str(exc)) from None
    others = ", ".join(n for n in config.networks if n != "matrix") or "none"
    print(
        f"{config.file}: ok — {len(config.rooms)} rooms, networks: matrix, {others}; directory: {people} people"
    )
    return EXIT_OK


def _registration(args: argparse.Namespace) -> int:
    from bridge.connector import load_connector

    config = _load(args)
    cls = load_connector(config.matrix.type)
    registration = getattr(cls, "registration", None)
    if registration is None:
        raise UsageError(f"connector {config.matrix.type} cannot make a registration")
    sys.stdout.write(yaml.safe_dump(registration(config.matrix.options), sort_keys=False))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo

    return run_demo(args.dir)


def _when(text: str | None, flag: str) -> str | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{flag}: '{text}' is not an ISO date or time, e.g. 2026-11-01 or 2026-11-01T09:30"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    from bridge.codec import timestamp

    return timestamp(moment)


def _archive_search(args: argparse.Namespace) -> int:
    from bridge.archive.search import Filters, search
    from bridge.archive.store import ArchiveStore

    config = _load(args)
    filters = Filters(
        text=args.text,
        employee=args.employee,
        network=args.network,
        portal=args.portal,
        since=_when(args.since, "--since"),
        until=_when(args.until, "--until"),
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"switchboard: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
