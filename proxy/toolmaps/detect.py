"""Detection: which preset an upstream is, and which of its tools look like they run SQL.

Detection only suggests. A tool whose input schema has a string (or list-of-strings) property
named like `sql`/`query`/`statement` and that the configured tool map does not cover is a
`Suggestion`: the operator confirms it in the configuration (`tool_map.tools`); until then the
relay denies calls to it (see `ToolMap` and `looks_like_sql_arguments`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pgwarden.proxy.toolmaps.model import SQL_ARGUMENT_NAMES, ToolMap
from pgwarden.proxy.toolmaps.presets import PRESETS, SERVER_NAMES


@dataclass(frozen=True, slots=True)
class Suggestion:
    tool: str
    argument: str
    kind: str  # "string" | "list"

    def as_config(self) -> str:
        kind = "" if self.kind == "string" else f", kind: {self.kind}"
        return f"{self.tool}: {{sql: {{name: {self.argument}{kind}}}}}"


def preset_for(server_name: str | None, tool_names: Iterable[str] = ()) -> str | None:
    """The preset matching an upstream's `serverInfo.name`, else its tool names, else None."""
    if server_name:
        lowered = server_name.lower()
        for prefix, preset in SERVER_NAMES.items():
            if lowered.startswith(prefix):
                return preset
    names = set(tool_names)
    for preset, tool_map in PRESETS.items():
        sql_tools = {t for t, s in tool_map.tools.items() if s.sql is not None}
        if sql_tools and sql_tools <= names and set(tool_map.tools) >= names:
            return preset
    return None


def _sql_property(schema: Mapping[str, Any]) -> tuple[str, str] | None:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return None
    for name, prop in properties.items():
        if str(name).lower() not in SQL_ARGUMENT_NAMES or not isinstance(prop, Mapping):
            continue
        kind = prop.get("type")
        if kind == "string":
            return str(name), "string"
        items = prop.get("items")
        if kind == "array" and isinstance(items, Mapping) and items.get("type") == "string":
            return str(name), "list"
    return None


def suggest(tools: Iterable[Mapping[str, Any]], tool_map: ToolMap) -> list[Suggestion]:
    """SQL-looking tools (from a `tools/list` result, wire form) the tool map does not cover."""
    out: list[Suggestion] = []
    for tool in tools:
        name = tool.get("name")
        schema = tool.get("inputSchema")
        if not isinstance(name, str) or not isinstance(schema, Mapping) or tool_map.spec(name) is not None:
            continue
        found = _sql_property(schema)
        if found is not None:
            out.append(Suggestion(name, *found))
    return out
