"""YAML loading that remembers where every key was written.

Errors about a user's file must name the file, the line and the key, so the
loader keeps a `path -> line` map next to the plain Python data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Resolves scalars exactly as yaml.safe_load would (ints, bools, nulls, dates).
_SCALARS = yaml.SafeLoader("")


class SourceError(Exception):
    """One problem in a user's file, printable as a single line."""

    def __init__(self, file: str, line: int | None, key: str, problem: str) -> None:
        self.file, self.line, self.key, self.problem = file, line, key, problem
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


@dataclass
class Located:
    """Parsed YAML data plus the line of each key path (`rooms[0].irc`)."""

    file: str
    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = _parent(path)
        return None

    def error(self, path: str, problem: str) -> SourceError:
        return SourceError(self.file, self.line(path), path, problem)


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def join_path(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else str(key)


def load_located(path: str | Path) -> Located:
    """Parse a YAML file; a syntax error becomes a SourceError with its line."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourceError(name, None, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(name, None, "", f"cannot read: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SourceError(name, line, "", f"invalid YAML: {problem}") from None
    located = Located(name, None)
    located.data = _convert(node, "", located) if node is not None else {}
    return located


def _convert(node: yaml.Node, path: str, located: Located) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _SCALARS.construct_object(key_node, deep=True)
            child = join_path(path, str(key))
            located.lines[child] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, child, located)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = join_path(path, i)
            located.lines[child] = item.start_mark.line + 1
            items.append(_convert(item, child, located))
        return items
    return _SCALARS.construct_object(node, deep=True)
