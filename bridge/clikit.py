"""What every `switchboard` subcommand shares: the config option, errors, time arguments."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from bridge.codec import timestamp
from bridge.config import Config, load_config
from bridge.secrets import install_redaction, secret_values
from bridge.yamlsource import SourceError

DEFAULT_CONFIG = "switchboard.yaml"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit 2."""


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default ./{DEFAULT_CONFIG})"
    )


def load_or_fail(args: argparse.Namespace) -> Config:
    """The config named by -c; a problem becomes a UsageError (ConfigError passes through).

    From here on the config's secrets are masked in every log line (bridge/secrets.py)."""
    try:
        config = load_config(args.config)
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    install_redaction(secret_values(config))
    return config


def parse_when(text: str | None, flag: str) -> str | None:
    """An ISO date or time from the command line, as the archive stores times (UTC)."""
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
    return timestamp(moment)
