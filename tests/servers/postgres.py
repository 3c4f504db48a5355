"""Per-test PostgreSQL databases on the local server (created, then dropped), and private
clusters for tests that restart their database server."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bridge.sandbox.ports import free_port

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


def _server_binaries() -> Path:
    """Debian's PostgreSQL server programs, the newest installed version's."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = _server_binaries()
INITDB, PG_CTL = BIN / "initdb", BIN / "pg_ctl"


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of the test's own, on a free port, that a test may restart or stop
    without disturbing the shared server. Run as the `postgres` user when we are root (initdb
    refuses root); trust authentication on loopback only."""

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the `archive` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/archive"

    def _run(self, *argv: str | Path) -> None:
        command = [str(a) for a in argv]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(INITDB, "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        self.start()
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "archive"')

    def _dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run(
            PG_CTL, "-D", self.data, "-l", self.directory / "postgres.log", "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash as the clients see it: no shutdown checkpoint, every connection cut."""
        if (self.data / "postmaster.pid").exists():
            self._run(PG_CTL, "-D", self.data, "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop("immediate")
        self.start()


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A fresh cluster in a temp dir, stopped and removed afterwards (also when the test failed)."""
    cluster = PrivateCluster(Path(tempfile.mkdtemp(prefix="sb-pg-")))
    try:
        cluster.init()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):
            cluster.stop("immediate")
        shutil.rmtree(cluster.directory, ignore_errors=True)
