"""End-to-end tests share the session's Synapse; each module gets its own IRC server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.sandbox.ircd import Ngircd
from tests.servers.synapse import synapse  # noqa: F401 - the session fixture


@pytest.fixture(scope="module")
def ircd() -> Iterator[Ngircd]:
    """This module's own ngircd, so a test may restart it without disturbing other modules."""
    with Ngircd() as server:
        yield server
