"""Where the rows are in a tool result, for the result formats pgwarden knows.

- `pgwarden` (pgwarden's server): `structuredContent.rows` (lists) under `.columns`;
- `json_rows` (reference server-postgres, DBHub): one text item holding a JSON array of
  objects, or an object with the array at `rows_path` (DBHub: `data.rows`);
- `json_items` (MCP Toolbox): one JSON object per text item;
- `json_embedded` (Supabase): a JSON array inside the text, between untrusted-data markers;
- `opaque` (Postgres MCP Pro, whose rows are Python reprs): unknown; only the SQL-side
  enforcement applies.

`read_rows` returns a `Table`: the rows as dicts, plus a function that writes (possibly
filtered) rows back into a copy of the result. A result that does not have the expected shape
is returned as `None` (the caller decides; pgwarden withholds it when it must enforce).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

ResultFormat = Literal["pgwarden", "json_rows", "json_items", "json_embedded", "opaque"]
RESULT_FORMATS: tuple[str, ...] = ("pgwarden", "json_rows", "json_items", "json_embedded", "opaque")

Row = dict[str, Any]
_EMBEDDED = re.compile(r"(?s)(<untrusted-data-[0-9a-f-]+>\s*)(\[.*\])(\s*</untrusted-data-[0-9a-f-]+>)")


@dataclass
class Table:
    """Rows read from a result, and how to write rows back."""

    rows: list[Row]
    write: Callable[[list[Row]], dict[str, Any]]


def _text_items(result: dict[str, Any]) -> list[dict[str, Any]] | None:
    content = result.get("content")
    if not isinstance(content, list):
        return None
    return [
        c
        for c in content
        if isinstance(c, dict) and c.get("type") == "text" and isinstance(c.get("text"), str)
    ]


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _set(value: Any, path: tuple[str, ...], new: Any) -> None:
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = new


def read_rows(result: dict[str, Any], fmt: ResultFormat, *, rows_path: tuple[str, ...] = ()) -> Table | None:
    """The rows of `result` in format `fmt`, or None when it does not have that shape."""
    if fmt == "pgwarden":
        return _read_pgwarden(result)
    if fmt == "json_rows":
        return _read_json_text(result, rows_path)
    if fmt == "json_items":
        return _read_json_items(result)
    if fmt == "json_embedded":
        return _read_embedded(result)
    return None


def _pgwarden_parts(result: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[list[Any]]] | None:
    """pgwarden's structured content, its column names and its rows (lists), or None when the
    result does not have that shape."""
    sc = result.get("structuredContent")
    if not isinstance(sc, dict):
        return None
    columns, rows = sc.get("columns"), sc.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list):
        return None
    names: list[str] = [c["name"] for c in columns if isinstance(c, dict) and isinstance(c.get("name"), str)]
    if len(names) != len(columns) or not all(isinstance(r, list) for r in rows):
        return None
    return sc, names, rows


def count_rows(result: dict[str, Any], fmt: ResultFormat) -> int | None:
    """How many rows `read_rows(result, fmt)` would read, without building them, for the
    formats that need no parsing to tell (`pgwarden`); None otherwise, or when `result` does
    not have the format's shape (as `read_rows` would say)."""
    if fmt == "pgwarden":
        parts = _pgwarden_parts(result)
        return None if parts is None else len(parts[2])
    return None


def _read_pgwarden(result: dict[str, Any]) -> Table | None:
    parts = _pgwarden_parts(result)
    if parts is None:
        return None
    sc, names, rows = parts
    as_dicts = [dict(zip(names, r, strict=False)) for r in rows]

    def write(new_rows: list[Row]) -> dict[str, Any]:
        out = copy.copy(result)
        new_sc = dict(sc)
        new_sc["rows"] = [[row.get(n) for n in names] for row in new_rows]
        new_sc["row_count"] = len(new_rows)
        out["structuredContent"] = new_sc
        # The text items render the same rows for clients that ignore structured content:
        # rewrite them from the filtered rows so they can never show what was removed.
        text = markdown_table(names, new_sc["rows"])
        content = [
            c for c in result.get("content") or [] if not (isinstance(c, dict) and c.get("type") == "text")
        ]
        out["content"] = [{"type": "text", "text": text}, *content]
        return out

    return Table(as_dicts, write)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("|", "\\|").replace("\r", "\\r").replace("\n", "\\n")


def markdown_table(names: list[str], rows: list[list[Any]]) -> str:
    """Rows as a Markdown table with a row count (the shape of pgwarden's own text rendering)."""
    lines = ["| " + " | ".join(_cell(n) for n in names) + " |", "|" + "|".join(" --- " for _ in names) + "|"]
    lines.extend("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows)
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def _read_json_text(result: dict[str, Any], rows_path: tuple[str, ...]) -> Table | None:
    items = _text_items(result)
    if not items or len(items) != 1:
        return None
    try:
        body = json.loads(items[0]["text"])
    except ValueError:
        return None
    rows = _dig(body, rows_path) if rows_path else body
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return None
    item = items[0]
    indent = 2 if "\n" in item["text"] else None

    def write(new_rows: list[Row]) -> dict[str, Any]:
        new_body = copy.deepcopy(body) if rows_path else new_rows
        if rows_path:
            _set(new_body, rows_path, new_rows)
            count_path = (*rows_path[:-1], "count")
            if isinstance(_dig(new_body, count_path), int):
                _set(new_body, count_path, len(new_rows))
        out = copy.copy(result)
        out["content"] = [
            {**c, "text": json.dumps(new_body, indent=indent, default=str)} if c is item else c
            for c in result.get("content") or []
        ]
        return out

    return Table(rows, write)


def _read_json_items(result: dict[str, Any]) -> Table | None:
    items = _text_items(result)
    if items is None:
        return None
    rows: list[Row] = []
    for item in items:
        try:
            row = json.loads(item["text"])
        except ValueError:
            return None
        if not isinstance(row, dict):
            return None
        rows.append(row)
    others = [c for c in result.get("content") or [] if not (isinstance(c, dict) and c.get("type") == "text")]

    def write(new_rows: list[Row]) -> dict[str, Any]:
        out = copy.copy(result)
        out["content"] = [{"type": "text", "text": json.dumps(r, default=str)} for r in new_rows] + others
        return out

    return Table(rows, write)


def _read_embedded(result: dict[str, Any]) -> Table | None:
    items = _text_items(result)
    if not items or len(items) != 1:
        return None
    item = items[0]
    match = _EMBEDDED.search(item["text"])
    if match is None:
        return None
    try:
        rows = json.loads(match.group(2))
    except ValueError:
        return None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return None

    def write(new_rows: list[Row]) -> dict[str, Any]:
        text = item["text"]
        new_text = text[: match.start(2)] + json.dumps(new_rows, default=str) + text[match.end(2) :]
        out = copy.copy(result)
        out["content"] = [{**c, "text": new_text} if c is item else c for c in result.get("content") or []]
        return out

    return Table(rows, write)
