"""Per-test PostgreSQL databases on the local server (created, then dropped)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

ADMIN_DSN = os.environ.get("SWITCHBOARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def available() -> str | None:
    """None when the server answers, else why not."""
    try:
        with psycopg.connect(ADMIN_DSN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"no PostgreSQL at {ADMIN_DSN}: {exc}"


@contextmanager
def database() -> Iterator[str]:
    """A fresh database; yields its SQLAlchemy URL and drops it afterwards."""
    name = f"sb_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
