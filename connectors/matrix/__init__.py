"""Matrix: an application service (pushed transactions, ghost users) with matrix-nio as HTTP client."""

from __future__ import annotations

from connectors.matrix.connector import MatrixConnector

__all__ = ["MatrixConnector"]
