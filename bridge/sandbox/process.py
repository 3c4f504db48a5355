"""What every local server of the sandbox shares: a foreground process in its own session,
its files in a temp dir, stopped by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from bridge.sandbox.ports import free_port, port_open, wait_until


@dataclass
class LocalServer:
    """Subclasses set `name` and implement `start()` with `launch()`."""

    name = "server"
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    startup_timeout: float = 10.0
    _dir: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def directory(self) -> Path:
        if self._dir is None:
            # Short prefix: unix socket paths (slapd's ldapi) must stay under 108 bytes.
            self._dir = tempfile.TemporaryDirectory(prefix=f"{self.name}-")
        return Path(self._dir.name)

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        raise NotImplementedError

    def launch(self, argv: Sequence[str], ready: Callable[[], bool], user: str | None = None) -> None:
        """Run `argv` (as `user`, when given) with its output in the log; return once `ready()` holds."""
        log = self.log_path.open("ab")
        try:
            # start_new_session: a Ctrl-C in the terminal must not race our own stop().
            self._proc = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, user=user
            )
        finally:
            log.close()

        def up() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode}:\n{self.log_tail()}")
            return ready()

        try:
            wait_until(up, self.startup_timeout, f"{self.name} ({self.log_path})")
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}\n--- {self.name} log ---\n{self.log_tail()}") from None

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM (or SIGKILL when not graceful), then SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def restart(self, graceful: bool = True) -> None:
        """Stop and start again on the same port, as a real server restart looks to its clients."""
        self.stop(graceful=graceful)
        wait_until(lambda: not port_open(self.port, self.host), 10, f"port {self.port} to close")
        self.start()

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
