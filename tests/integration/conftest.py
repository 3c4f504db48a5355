"""Servers shared by the integration tests of a session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.sandbox.ircd import Ngircd
from tests.servers.inspircd import ServicesNetwork


@pytest.fixture(scope="session")
def ngircd() -> Iterator[Ngircd]:
    """One ngircd for the session, penalties off; tests use unique channels and nicks."""
    with Ngircd() as server:
        yield server


@pytest.fixture(scope="session")
def services() -> Iterator[ServicesNetwork]:
    """InspIRCd with Anope services: an IRC network whose accounts prove who is speaking."""
    with ServicesNetwork() as network:
        yield network
