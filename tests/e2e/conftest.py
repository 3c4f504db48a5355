"""End-to-end tests share the session's Synapse."""

from tests.servers.synapse import synapse  # noqa: F401 - the session fixture
