"""The `switchboard` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from bridge.archive.commands import add_archive_commands
from bridge.archive.private import UMASK
from bridge.clikit import EXIT_FAIL, EXIT_OK, EXIT_USAGE, UsageError, add_config_arg, load_or_fail
from bridge.config import ConfigError
from bridge.directory.commands import add_directory_commands
from bridge.secrets import install_redaction, redact
from bridge.yamlsource import SourceError

log = logging.getLogger("switchboard")


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
        add_config_arg(cmd)
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

    add_archive_commands(sub)
    add_directory_commands(sub)
    return p


def _setup_logging() -> None:
    """stderr, warnings and worse until `run` sets the config's level; URL passwords masked from
    the first line on, the config's secrets from when it is loaded."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter on every start
    install_redaction()


def _run(args: argparse.Namespace) -> int:
    from bridge.app import StartupError, run_bridge

    config = load_or_fail(args)
    logging.getLogger().setLevel(getattr(logging, config.log_level, logging.INFO))
    log.info("archive: %s", config.archive.url)  # where the records go; its password is masked
    try:
        asyncio.run(run_bridge(config))
    except StartupError as exc:
        print(redact(f"switchboard: cannot start: {exc}"), file=sys.stderr)
        return EXIT_FAIL
    except Exception:
        # Through the log, not Python's own traceback printer, so its secrets are masked too.
        log.critical("the bridge stopped on an unexpected error", exc_info=True)
        return EXIT_FAIL
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from bridge.directory.yaml import load_people

    config = load_or_fail(args)
    if config.directory.type == "yaml":
        try:
            everyone = load_people(config.directory.options["path"])
        except SourceError as exc:
            raise UsageError(str(exc)) from None
        people = len(everyone)
        known = set().union(*(p.groups for p in everyone))
        unknown = [
            config.source.error(
                path,
                f"unknown group '{group}' (groups in the directory: {', '.join(sorted(known)) or 'none'})",
            )
            for path, group in config.group_refs
            if group not in known and config.source
        ]
        if unknown:
            raise ConfigError(unknown)
        source = f"directory: {people} people"
    else:
        from bridge.directory.ldap import LdapConfigError, parse_options

        try:  # offline: the settings only; `switchboard directory check` connects
            parse_options(config.directory.options)
        except LdapConfigError as exc:
            key, _, problem = str(exc).partition(" ")
            key = key.removesuffix(":")
            if key.startswith("directory.") and config.source:  # name the line too
                raise ConfigError([config.source.error(key, problem)]) from None
            raise UsageError(f"{config.file}: directory: {exc}") from None
        source = f"directory: LDAP at {config.directory.options['url']} (not contacted)"
    others = ", ".join(n for n in config.networks if n != "matrix") or "none"
    print(f"{config.file}: ok — {len(config.rooms)} rooms, networks: matrix, {others}; {source}")
    return EXIT_OK


def _registration(args: argparse.Namespace) -> int:
    from bridge.connector import load_connector

    config = load_or_fail(args)
    cls = load_connector(config.matrix.type)
    registration = getattr(cls, "registration", None)
    if registration is None:
        raise UsageError(f"connector {config.matrix.type} cannot make a registration")
    sys.stdout.write(yaml.safe_dump(registration(config.matrix.options), sort_keys=False))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo

    return run_demo(args.dir)


def main(argv: Sequence[str] | None = None) -> int:
    # Whatever the caller's umask: the archive, keys, checkpoint log and exports are the user's alone.
    umask = os.umask(UMASK)
    try:
        return _main(argv)
    finally:
        os.umask(umask)  # for a caller that runs the command in its own process


def _main(argv: Sequence[str] | None) -> int:
    _setup_logging()
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:  # a problem may quote a value, such as a URL with its password
        for problem in exc.problems:
            print(redact(f"switchboard: {problem}"), file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(redact(f"switchboard: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
