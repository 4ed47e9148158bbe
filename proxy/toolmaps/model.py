"""A tool map: for one upstream server, which tools carry SQL, where, and how results look.

The guard can only police SQL it can find. A tool map says, per tool name:

- `sql`: the argument holding the statement, a string (`kind="string"`) or a list of
  strings (`kind="list"`, every statement checked and rewritten);
- `table`: an argument naming one table (e.g. `describe_table.table`): the call is allowed
  only when the principal may read that table;
- `lists_tables`: the result lists tables (`structuredContent.tables`, objects with `schema`
  and `name`): tables the principal may not read are removed from it;
- `deny`: the tool is refused whatever the policy says (e.g. Supabase's `apply_migration`);
- `result`: the result format (see `pgwarden.proxy.results.formats`) for result-side checks.

A tool absent from the map is decided by the policy as a tool without SQL, but a call whose
arguments look like SQL (a string argument named like `sql`, `query`, `statement`) is refused
unless its tool is mapped: an unmapped SQL tool would otherwise bypass the guard.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pgwarden.proxy.results.formats import ResultFormat

SQL_ARGUMENT_NAMES = frozenset({"sql", "query", "statement", "statements", "queries", "sql_query"})
"""Argument names that make a tool look like it runs SQL (detection and the unmapped-tool check)."""


@dataclass(frozen=True, slots=True)
class SqlArgument:
    name: str
    kind: Literal["string", "list"] = "string"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    sql: SqlArgument | None = None
    table: str | None = None
    lists_tables: bool = False
    deny: str | None = None  # the reason, when the tool is always refused
    result: ResultFormat = "opaque"
    rows_path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolMap:
    """The tool map of one upstream. `name` is the preset it came from (or "custom")."""

    name: str
    tools: Mapping[str, ToolSpec] = field(default_factory=dict)

    def spec(self, tool: str) -> ToolSpec | None:
        return self.tools.get(tool)

    def merged(self, overrides: Mapping[str, ToolSpec]) -> ToolMap:
        return ToolMap(self.name if not overrides else f"{self.name}+custom", {**self.tools, **overrides})


def looks_like_sql_arguments(arguments: Mapping[str, object]) -> str | None:
    """The name of an argument that looks like it carries SQL, if any."""
    for key, value in arguments.items():
        if key.lower() in SQL_ARGUMENT_NAMES and isinstance(value, str | list):
            return key
    return None
