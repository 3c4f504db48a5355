"""A real Synapse homeserver on a free loopback port (needs the `demo` extra).

Configured for a single machine: SQLite, one client listener, no federation,
every rate limit raised, cheap password hashing, quiet logs, and the bridge's
appservice registration(s).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bridge.sandbox.ports import free_port, wait_until

SERVER_NAME = "corp.test"
UNLIMITED = {"per_second": 10000, "burst_count": 100000}


def homeserver_config(
    directory: Path, *, server_name: str, port: int, shared_secret: str, appservice_files: Sequence[Path]
) -> dict[str, Any]:
    return {
        "server_name": server_name,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(directory / "homeserver.db")}},
        "log_config": str(directory / "log.yaml"),
        "media_store_path": str(directory / "media"),
        "signing_key_path": str(directory / "signing.key"),
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "url_preview_enabled": False,
        "presence": {"enabled": False},
        "enable_metrics": False,
        "enable_registration": False,
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": secrets.token_hex(16),
        "form_secret": secrets.token_hex(16),
        "bcrypt_rounds": 4,
        "app_service_config_files": [str(p) for p in appservice_files],
        "rc_message": UNLIMITED,
        "rc_registration": UNLIMITED,
        "rc_login": {"address": UNLIMITED, "account": UNLIMITED, "failed_attempts": UNLIMITED},
        "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
        "rc_joins_per_room": UNLIMITED,
        "rc_invites": {"per_room": UNLIMITED, "per_user": UNLIMITED, "per_issuer": UNLIMITED},
        "rc_room_creation": UNLIMITED,
        "rc_profile": UNLIMITED,
        "rc_presence": {"per_user": UNLIMITED},
        "rc_admin_redaction": UNLIMITED,
        "rc_media_create": UNLIMITED,
        "rc_user_directory": UNLIMITED,
        "rc_third_party_invite": UNLIMITED,
        "rc_delayed_event_mgmt": UNLIMITED,
        "rc_reports": UNLIMITED,
    }


def log_config(log_file: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain"},
        },
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


@dataclass
class Synapse:
    directory: Path
    server_name: str = SERVER_NAME
    appservice_files: Sequence[Path] = ()
    port: int = field(default_factory=free_port)
    shared_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.directory / "homeserver.log"

    def write_config(self) -> Path:
        from signedjson.key import generate_signing_key, write_signing_keys

        self.directory.mkdir(parents=True, exist_ok=True)
        # signedjson instead of `--generate-keys`, which costs a 2 s Synapse start.
        with open(self.directory / "signing.key", "w") as f:
            write_signing_keys(f, [generate_signing_key("test")])
        (self.directory / "log.yaml").write_text(yaml.safe_dump(log_config(self.log_file)))
        path = self.directory / "homeserver.yaml"
        config = homeserver_config(
            self.directory,
            server_name=self.server_name,
            port=self.port,
            shared_secret=self.shared_secret,
            appservice_files=self.appservice_files,
        )
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, timeout: float = 60.0) -> None:
        config = self.write_config()
        with open(self.directory / "stdio.log", "wb") as stdio:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config)],
                cwd=self.directory,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(self._ready, timeout, f"Synapse on port {self.port}")
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}\n--- log tail ---\n{self.log_tail()}") from None

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"Synapse exited with {self.process.returncode}\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in (self.log_file, self.directory / "stdio.log"):
            if path.exists():
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)

    def register_user(self, name: str, password: str, admin: bool = False) -> tuple[str, str]:
        """Create a user through the shared-secret admin API; (user_id, access_token)."""
        url = f"{self.url}/_synapse/admin/v1/register"
        with urllib.request.urlopen(url, timeout=10) as reply:
            nonce = json.load(reply)["nonce"]
        # HMAC-SHA1 over the NUL-separated fields, with no NUL after the last one.
        fields = (nonce, name, password, "admin" if admin else "notadmin")
        mac = hmac.new(self.shared_secret.encode(), b"\x00".join(f.encode() for f in fields), hashlib.sha1)
        body = {
            "nonce": nonce,
            "username": name,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                result = json.load(reply)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"registering {name}: {exc.code} {exc.read().decode(errors='replace')}"
            ) from None
        return result["user_id"], result["access_token"]
