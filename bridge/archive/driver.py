"""The archive's hot statements, compiled once for the engine's driver and run on its own cursor.

Relaying one message runs about a dozen small statements (record, content, id
map, outbox row, then the delivery). Through SQLAlchemy each costs some 40 µs of
Python before the database sees it, several times what SQLite takes to run
it, and together they were most of the bridge's CPU per message. Compiled
once by SQLAlchemy for the engine's dialect, they run on the DBAPI cursor of
the same connection, in the same transaction; everything else keeps using
SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

CURSOR = "switchboard_archive_cursor"  # conn.info key of the transaction's cursor


@dataclass(frozen=True)
class DriverStatement:
    sql: str
    positions: tuple[str, ...] | None  # parameter names in placeholder order; None: the driver takes a dict
    constants: Mapping[str, Any]  # values the statement itself binds (`status == "pending"`)

    @classmethod
    def compile(
        cls, statement: ClauseElement, dialect: Dialect, keys: Sequence[str] | None = None
    ) -> DriverStatement:
        """`keys`: the columns an INSERT sets (default: all of them)."""
        compiled = cast(
            SQLCompiler, statement.compile(dialect=dialect, column_keys=list(keys) if keys else None)
        )
        positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        used = set(positions) if positions is not None else set(compiled.bind_names.values())
        constants = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if name in used and not bind.required and bind.value is not None
        }
        return cls(str(compiled), positions, constants)

    def run(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Execute in `conn`'s transaction; returns the DBAPI cursor (fetchone, rowcount)."""
        cursor = conn.info.get(CURSOR)
        if cursor is None:
            cursor = conn.info[CURSOR] = conn.connection.cursor()
        if self.constants:
            params = {**self.constants, **params}
        values = params if self.positions is None else tuple(params[name] for name in self.positions)
        cursor.execute(self.sql, values)
        return cursor

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        row = self.run(conn, params).fetchone()
        return row[0] if row else None


def release(conn: Connection) -> None:
    """Close the transaction's cursor (the connection goes back to the pool)."""
    cursor = conn.info.pop(CURSOR, None)
    if cursor is not None:
        cursor.close()
