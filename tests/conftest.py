"""Fixtures shared by every tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.servers import postgres

# CI draws every property test's examples the same way each run, so whether a change lands
# depends on the change; run by hand, the draws are random and keep finding new cases (add
# each one as an @example).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(params=["sqlite", "postgres"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty archive database on each engine the bridge supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'archive.db'}"
        return
    problem = postgres.available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with postgres.database() as url:
        yield url
