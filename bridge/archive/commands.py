"""`switchboard archive …`: the compliance side of the command."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.clikit import EXIT_FAIL, EXIT_OK, UsageError, add_config_arg, load_or_fail, parse_when
from bridge.codec import parse_timestamp
from bridge.config import Config, ConfigError
from bridge.terminal import visible

if TYPE_CHECKING:  # the archive is imported only by the actions that use it, so --help stays quick
    from bridge.archive.audit import Actor

ACTOR_ENV = "SWITCHBOARD_ACTOR"
FORMATS = ("jsonl", "csv", "eml", "rsmf")  # access.FORMATS, without importing the archive for --help
NO_KEY = (
    "archive verify needs the archive's public key from outside the database: set archive.public_key "
    "(the .pub file `archive keygen` wrote, kept off the database host) or pass --key FILE"
)


def _parser(sub: Any, name: str, help: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_archive_commands(sub: Any) -> None:
    """Register `archive` and its actions on the top-level subparsers."""
    archive = _parser(
        sub,
        "archive",
        "search and manage the archive",
        "Search, read, verify, hold, purge and export the compliance archive. Actions that read or "
        "change it take the acting reviewer from --as or $" + ACTOR_ENV + " and are archived too.",
        ["switchboard archive verify", "switchboard archive search --as E9001 --employee E1001"],
    )
    archive_sub = archive.add_subparsers(dest="archive_command", metavar="ACTION", required=True)

    search = _parser(
        archive_sub,
        "search",
        "find archived records",
        "Find archived records; filters combine with AND. The search itself is archived as a review.",
        [
            "switchboard archive search --as E9001 --text invoice --since 2026-01-01",
            "switchboard archive search --as E9001 --employee E1001 --network irc --format json",
        ],
    )
    _common(search, actor=True)
    _filters(search)
    search.add_argument("--limit", type=int, help="at most this many records")
    search.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    search.set_defaults(handler=_search)

    conv = _parser(
        archive_sub,
        "conversation",
        "read a room's conversation with its edit and delete history",
        "Print a bridged room's messages in order, each with its edits and deletion inline. "
        "Reading is archived as a review.",
        ["switchboard archive conversation --as E9001 --portal trading --around 1042"],
    )
    _common(conv, actor=True)
    conv.add_argument("--portal", required=True, help="bridged room id from the config, e.g. trading")
    conv.add_argument("--around", type=int, metavar="SEQ", help="only the messages around this seq")
    conv.add_argument("--context", type=int, default=20, help="messages either side of --around (default 20)")
    conv.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    conv.set_defaults(handler=_conversation)

    verify = _parser(
        archive_sub,
        "verify",
        "prove the archive (or an export bundle) is intact",
        "Recompute every record's hash, the Merkle tree and every signed checkpoint. Exit 0 when "
        "intact, 1 naming the first seq where the proof fails. Checkpoints must be signed by the "
        "public key in archive.public_key or --key, never one the database (or bundle) names itself. "
        "The log must also extend every checkpoint kept outside the database (archive.checkpoint_log, "
        "which must exist once anything is signed, and --against). --bundle checks an export offline.",
        [
            "switchboard archive verify -c switchboard.yaml",
            "switchboard archive verify -c switchboard.yaml --against /mnt/worm/checkpoints.jsonl",
            "switchboard archive verify --bundle ./export-2026-11 --key archive-signing.key.pub",
        ],
    )
    add_config_arg(verify)
    verify.add_argument("--bundle", type=Path, metavar="PATH", help="an export directory to check offline")
    verify.add_argument(
        "--key",
        metavar="FILE",
        help="the archive's public key to trust: a .pub file or 64 hex digits (default archive.public_key)",
    )
    verify.add_argument(
        "--against",
        type=Path,
        action="append",
        default=[],
        metavar="CHECKPOINT",
        help="a checkpoint.json, checkpoint log or export bundle kept elsewhere: the log must still "
        "extend it (archive.checkpoint_log is read without being named)",
    )
    verify.set_defaults(handler=_verify)

    keygen = _parser(
        archive_sub,
        "keygen",
        "create the archive's signing key",
        "Write a new Ed25519 key to the file archive.signing_key names (and its public half to "
        "FILE.pub). Never overwrites a key.",
        ["switchboard archive keygen -c switchboard.yaml"],
    )
    add_config_arg(keygen)
    keygen.set_defaults(handler=_keygen)

    hold = _parser(
        archive_sub,
        "hold",
        "legal holds: add, list, release",
        "Legal holds keep content from retention purges until released.",
        [
            'switchboard archive hold add --as E9001 --employee E1002 --reason "SEC 17"',
            "switchboard archive hold list",
        ],
    )
    hold_sub = hold.add_subparsers(dest="hold_command", metavar="ACTION", required=True)
    add = _parser(
        hold_sub,
        "add",
        "place a legal hold",
        "Keep the content of a person's or a room's records (optionally in a time span) from retention.",
        [
            'switchboard archive hold add --as E9001 --employee E1002 --reason "SEC inquiry 2026-17"',
            'switchboard archive hold add --as E9001 --portal trading --since 2026-01-01 --reason "audit"',
        ],
    )
    _common(add, actor=True)
    who = add.add_mutually_exclusive_group(required=True)
    who.add_argument("--employee", help="employee id, e.g. E1002")
    who.add_argument("--portal", help="bridged room id, e.g. trading")
    add.add_argument("--since", help="held from this time (ISO date or time, UTC)")
    add.add_argument("--until", help="held before this time (ISO date or time, UTC)")
    add.add_argument("--reason", required=True, help="why: a matter or case reference")
    add.set_defaults(handler=_hold_add)
    listing = _parser(
        hold_sub, "list", "list active holds", "List the holds in force.", ["switchboard archive hold list"]
    )
    add_config_arg(listing)
    listing.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    listing.set_defaults(handler=_hold_list)
    release = _parser(
        hold_sub,
        "release",
        "release a hold",
        "Release an active hold; the release is a record pointing at the hold.",
        ['switchboard archive hold release --as E9001 57 --reason "matter closed"'],
    )
    _common(release, actor=True)
    release.add_argument("id", type=int, help="the hold's id (its seq, from `hold list`)")
    release.add_argument("--reason", help="why it is released")
    release.set_defaults(handler=_hold_release)

    purge = _parser(
        archive_sub,
        "purge",
        "clear content whose retention has run out",
        "Clear the content (not the records) of everything captured before DATE whose retention "
        "(archive.retention) has run out and that no hold covers. The log still verifies; the purge "
        "is itself a record.",
        ["switchboard archive purge --as E9001 --before 2026-01-01 --dry-run"],
    )
    _common(purge, actor=True)
    purge.add_argument("--before", required=True, help="purge only what was captured before this (ISO date)")
    purge.add_argument("--dry-run", action="store_true", help="show what would be purged, change nothing")
    purge.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    purge.set_defaults(handler=_purge)

    export = _parser(
        archive_sub,
        "export",
        "export records with proof",
        "Write the matching records to a new directory in a standard format, with a signed "
        "checkpoint, an inclusion proof per record and a signed manifest (check it with "
        "`archive verify --bundle`).",
        [
            "switchboard archive export --as E9001 --format eml --out ./sec-2026-17 --employee E1002",
            "switchboard archive export --as E9001 --format rsmf --out ./trading-q3 --portal trading "
            "--since 2026-07-01 --until 2026-10-01",
        ],
    )
    _common(export, actor=True)
    _filters(export)
    export.add_argument("--format", choices=FORMATS, required=True, help="jsonl, csv, eml or rsmf")
    export.add_argument("--out", type=Path, required=True, help="a new (or empty) directory")
    export.set_defaults(handler=_export)


def _common(parser: argparse.ArgumentParser, actor: bool) -> None:
    add_config_arg(parser)
    if actor:
        parser.add_argument(
            "--as",
            dest="actor",
            metavar="ID",
            help=f"your employee id (default ${ACTOR_ENV}); it is archived",
        )


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", help="words in the message text (all of them, any case)")
    parser.add_argument("--employee", help="employee id, e.g. E1001: every handle on every network")
    parser.add_argument("--network", help="network name from the config, e.g. irc")
    parser.add_argument("--portal", help="bridged room id from the config, e.g. trading")
    parser.add_argument("--since", help="from this time on (ISO date or time, UTC)")
    parser.add_argument("--until", help="before this time (ISO date or time, UTC)")
    parser.add_argument("--kind", action="append", default=[], help="record kind; repeat for several")
    parser.add_argument("--flag", help="records flagged by this rule")


def _actor(args: argparse.Namespace) -> Actor:
    from bridge.archive.audit import Actor

    actor = args.actor or os.environ.get(ACTOR_ENV, "")
    if not actor:
        raise UsageError(f"who is acting? pass --as EMPLOYEE_ID or set {ACTOR_ENV}")
    try:
        return Actor(actor)
    except ValueError:
        raise UsageError(f"--as: '{actor}' is not an employee id") from None


def _filters_of(args: argparse.Namespace) -> Any:
    from bridge.archive.schema import RECORD_KINDS
    from bridge.archive.search import Filters

    for kind in args.kind:
        if kind not in RECORD_KINDS:
            raise UsageError(f"--kind: '{kind}' is not a record kind ({', '.join(RECORD_KINDS)})")
    if getattr(args, "limit", None) is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    return Filters(
        text=args.text,
        employee=args.employee,
        network=args.network,
        portal=args.portal,
        since=parse_when(args.since, "--since"),
        until=parse_when(args.until, "--until"),
        kinds=tuple(args.kind),
        flag=args.flag,
        limit=getattr(args, "limit", None),
    )


@contextmanager
def _opened(config: Config, need_signer: bool = False) -> Iterator[Any]:
    """The configured archive (see `access.open_store`), closed afterwards."""
    from bridge.archive.access import open_store

    try:
        store = open_store(config, need_signer)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


def _search(args: argparse.Namespace) -> int:
    from bridge.archive.access import search_records

    config = load_or_fail(args)
    actor = _actor(args)
    filters = _filters_of(args)
    with _opened(config) as store:
        for record in search_records(store, actor, filters):
            if args.format == "json":
                print(json.dumps(record, ensure_ascii=False))
            else:
                who = record["name"] or record["sender"]
                text = "[purged]" if record["purged"] else (record["text"] or "").replace("\n", " ")
                print(
                    visible(
                        f"{record['seq']:>7} {record['occurred_at'][:19]} {record['kind']:<12} "
                        f"{record['network']:<8} {record['portal']:<12} {who}: {text}"
                    )
                )
    return EXIT_OK


def _conversation(args: argparse.Namespace) -> int:
    from bridge.archive.access import read_conversation
    from bridge.archive.conversation import render

    config = load_or_fail(args)
    actor = _actor(args)
    if args.context < 0:
        raise UsageError("--context must be 0 or more")
    with _opened(config) as store:
        try:
            entries = read_conversation(store, actor, args.portal, args.around, args.context)
        except LookupError as exc:
            raise UsageError(str(exc)) from None
        if not entries:
            print(f"no messages in portal {args.portal}", file=sys.stderr)
        for entry in entries:
            if args.format == "json":
                print(json.dumps(entry.to_json(), ensure_ascii=False))
            else:
                for line in render(entry):
                    print(line)
    return EXIT_OK


def _trusted_key(text: str) -> str:
    """64 hex digits, given as such or in a file (a .pub); ValueError saying what it is not."""
    path = Path(text)
    try:
        value = path.read_text().strip() if path.is_file() else text.strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError(f"'{text}' is neither a 64-digit hex public key nor a file holding one")
    return value.lower()


def _pinned_key(args: argparse.Namespace, config: Config | None) -> str:
    """The key verify trusts: --key, else archive.public_key; never one the data names itself."""
    if args.key:
        try:
            return _trusted_key(args.key)
        except ValueError as exc:
            raise UsageError(f"--key: {exc}") from None
    if config is None or not config.archive.public_key:
        raise UsageError(NO_KEY)
    try:
        return _trusted_key(config.archive.public_key)
    except ValueError as exc:
        if config.source is None:
            raise UsageError(f"archive.public_key: {exc}") from None
        raise ConfigError([config.source.error("archive.public_key", str(exc))]) from None


def _witnessed(path: Path, where: str = "--against") -> list[Any]:
    """The checkpoints of an export bundle, a checkpoint.json or a checkpoint log."""
    from bridge.archive import witness
    from bridge.archive.signing import Checkpoint

    file = path / "checkpoint.json" if path.is_dir() else path
    try:
        if file.suffix == ".json":
            return [Checkpoint.from_json(json.loads(file.read_text()))]
        return witness.read(file)
    except OSError as exc:
        raise UsageError(f"{where}: cannot read {file}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{where}: {file} is not a checkpoint.json or checkpoint log ({exc})") from None


def _verify(args: argparse.Namespace) -> int:
    from bridge.archive.progress import ProgressBar

    bar = ProgressBar("verify")
    if args.bundle is not None:
        from bridge.archive.export.check import verify_bundle

        if not args.bundle.is_dir():
            raise UsageError(f"--bundle: {args.bundle} is not a directory")
        # A bundle names the key it was signed with; only a key from elsewhere makes it the archive's.
        config = load_or_fail(args) if args.key is None and Path(args.config).is_file() else None
        bundle = verify_bundle(args.bundle, _pinned_key(args, config), bar)
        bar.close()
        if bundle.failure:
            print(bundle.failure)
            return EXIT_FAIL
        print(
            f"bundle intact: {bundle.records} records, proven in the signed log of {bundle.tree_size} "
            f"records, key {bundle.public_key}"
        )
        return EXIT_OK

    from bridge.archive.checkpoints import signed_size
    from bridge.archive.verify import verify_archive

    config = load_or_fail(args)
    trusted = _pinned_key(args, config)
    key = config.archive.signing_key
    witnessed = [cp for path in args.against for cp in _witnessed(path)]
    log = config.archive.checkpoint_log
    if log is not None and log.exists():
        witnessed += _witnessed(log, "archive.checkpoint_log")
    with _opened(config) as store:
        if log is not None and not log.exists():
            with store.engine.connect() as conn:
                signed = signed_size(conn)
            if signed:
                # Every checkpoint is appended there as it is signed: a log that is gone was
                # removed, or its storage is not mounted; either way nothing witnesses the tail.
                print(
                    f"archive.checkpoint_log {log} is missing, though the archive has signed "
                    f"{signed} records: it was removed or its storage is not mounted"
                )
                return EXIT_FAIL
        try:
            report = verify_archive(
                store.engine,
                trusted,
                bar,
                witnessed=witnessed,
                max_unsigned=config.archive.checkpoint_every if key is not None else None,
            )
        finally:
            bar.close()
    if report.failure:
        print(report.failure)
        return EXIT_FAIL
    keys = ", ".join(sorted(report.keys)) or "none"
    print(
        f"archive intact: {report.records} records, {report.checkpoints} signed checkpoints "
        f"(up to seq {report.signed}), {report.purged} purged contents; key {keys}"
    )
    if report.signed < report.records:
        print(
            f"note: records {report.signed + 1}..{report.records} are not signed yet (next checkpoint)",
            file=sys.stderr,
        )
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    from bridge.archive.signing import Signer

    config = load_or_fail(args)
    key = config.archive.signing_key
    if key is None:
        raise UsageError(f"archive.signing_key is not set in {config.file}: name the key file there first")
    try:
        signer = Signer.generate(key)
    except FileExistsError as exc:
        raise UsageError(
            f"{exc.args[0] if exc.args else key} exists: keygen never overwrites a key"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot write {key}: {exc.strerror}") from None
    print(f"wrote {key} (keep it secret) and {key}.pub")
    print(f"public key: {signer.public_key}")
    if config.archive.public_key is None:
        print(
            f"set archive.public_key: {key}.pub (and keep a copy off the database host): verify trusts it",
            file=sys.stderr,
        )
    return EXIT_OK


def _hold_add(args: argparse.Namespace) -> int:
    from bridge.archive.access import HoldRequest, place_hold

    config = load_or_fail(args)
    actor = _actor(args)
    since, until = parse_when(args.since, "--since"), parse_when(args.until, "--until")
    if since and until and since >= until:
        raise UsageError("--since must be before --until")
    if not args.reason.strip():
        raise UsageError("--reason must say why")
    hold = HoldRequest(args.reason, args.employee, args.portal, since, until)
    with _opened(config) as store:
        hold_id = place_hold(store, actor, hold)
    print(f"hold {hold_id} placed")
    return EXIT_OK


def _hold_list(args: argparse.Namespace) -> int:
    from bridge.archive.access import list_holds

    config = load_or_fail(args)
    with _opened(config) as store:
        holds = list_holds(store)
    for hold in holds:
        if args.format == "json":
            print(json.dumps(hold.to_json(), ensure_ascii=False))
        else:
            scope = f"employee {hold.employee}" if hold.employee else f"portal {hold.portal}"
            span = f" {hold.since or '…'} to {hold.until or '…'}" if hold.since or hold.until else ""
            print(visible(f"{hold.id:>7} {hold.placed_at[:19]} {scope}{span} by {hold.actor}: {hold.reason}"))
    return EXIT_OK


def _hold_release(args: argparse.Namespace) -> int:
    from bridge.archive.access import release_hold

    config = load_or_fail(args)
    actor = _actor(args)
    with _opened(config) as store:
        try:
            seq = release_hold(store, actor, args.id, args.reason)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    print(f"hold {args.id} released (record {seq})")
    return EXIT_OK


def _purge(args: argparse.Namespace) -> int:
    from bridge.archive.retention import Retention, purge

    config = load_or_fail(args)
    actor = _actor(args)
    before = parse_timestamp(parse_when(args.before, "--before") or "")
    with _opened(config) as store:
        result = purge(
            store,
            actor,
            Retention.from_config(config.archive.retention),
            before,
            datetime.now(UTC),
            args.dry_run,
        )
    if args.format == "json":
        print(
            json.dumps(
                {
                    "dry_run": args.dry_run,
                    "purge_seq": result.purge_seq,
                    "purged": result.seqs,
                    "held": result.held,
                }
            )
        )
    else:
        verb = "would purge" if args.dry_run else "purged"
        span = f" (seq {result.seqs[0]}..{result.seqs[-1]})" if result.seqs else ""
        record = f"; recorded as seq {result.purge_seq}" if result.purge_seq else ""
        print(
            f"{verb} the content of {len(result.seqs)} records{span}; {len(result.held)} kept by holds{record}"
        )
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from bridge.archive.access import ExportRequest, export
    from bridge.archive.progress import ProgressBar

    config = load_or_fail(args)
    actor = _actor(args)
    filters = _filters_of(args)
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UsageError(f"--out: {args.out} exists and is not an empty directory")
    bar = ProgressBar("export")
    with _opened(config, need_signer=True) as store:
        try:
            result = export(store, actor, ExportRequest(args.format, args.out, filters), bar)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        finally:
            bar.close()
    print(
        f"exported {result.records} records to {args.out} ({args.format}); proven against the signed "
        f"log of {result.tree_size} records; recorded as seq {result.export_seq}"
    )
    return EXIT_OK
