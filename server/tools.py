"""The server's tools: `query`, `list_tables`, `describe_table`, `explain_query`.

All are read-only (annotated so) and return structuredContent plus a text rendering. Any
failure — a refused statement, a Postgres error (with its SQLSTATE), a bad argument — is a
tool result with `isError: true` and a short message, never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as types

from pgwarden.server import catalog, render
from pgwarden.server.database import Database, QueryError

logger = logging.getLogger(__name__)

READ_ONLY = types.ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False,
)

_COLUMNS_SCHEMA = {
    "type": "array",
    "description": "Result columns in order, with Postgres type names.",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "type": {"type": "string"}},
        "required": ["name", "type"],
    },
}

QUERY_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "columns": _COLUMNS_SCHEMA,
        "rows": {
            "type": "array",
            "description": "Rows as arrays of JSON values in column order. numeric as exact strings, "
                           "timestamps ISO 8601 (UTC), bytea as \\x-prefixed hex, json/jsonb as JSON.",
            "items": {"type": "array"},
        },
        "row_count": {"type": "integer", "description": "Number of rows returned."},
        "truncated": {"type": "boolean",
                      "description": "True when more rows existed than were returned (row or size cap)."},
    },
    "required": ["columns", "rows", "row_count", "truncated"],
}

TABLE_SCHEMA_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "schema": {"type": "string"},
        "table": {"type": "string"},
        "kind": {"type": "string"},
        "comment": {"type": ["string", "null"]},
        "row_estimate": {"type": ["integer", "null"]},
        "columns": {"type": "array", "items": {"type": "object"}},
        "primary_key": {"type": ["array", "null"], "items": {"type": "string"}},
        "foreign_keys": {"type": "array", "items": {"type": "object"}},
        "indexes": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["schema", "table", "columns", "primary_key", "foreign_keys", "indexes", "row_estimate"],
}


def tool_definitions(max_rows: int) -> list[types.Tool]:
    return [
        types.Tool(
            name="query",
            title="Run a read-only SQL query",
            description=(
                "Run exactly one read-only SQL SELECT (also WITH … SELECT, VALUES, TABLE) against the "
                "PostgreSQL database and return its rows. Statements that change data or settings "
                "(INSERT, UPDATE, DELETE, DDL, SET, COPY, transaction control, SELECT … FOR UPDATE, "
                f"data-modifying CTEs) are refused. At most {max_rows} rows are returned; "
                "`truncated` says when more existed — aggregate or filter instead of paging."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "sql": {"type": "string",
                            "description": "One PostgreSQL SELECT statement. Qualify tables with their "
                                           "schema (e.g. public.orders)."},
                    "max_rows": {"type": "integer", "minimum": 1, "maximum": max_rows,
                                 "description": f"Return at most this many rows (1–{max_rows}, "
                                                f"default {max_rows})."},
                },
                "required": ["sql"],
                "additionalProperties": False,
            },
            output_schema=QUERY_OUTPUT_SCHEMA,
            annotations=READ_ONLY,
        ),
        types.Tool(
            name="list_tables",
            title="List tables",
            description=("List the tables and views this connection can read, with kind, the planner's "
                         "row estimate and comment. Optionally only those of one schema."),
            input_schema={
                "type": "object",
                "properties": {
                    "schema": {"type": "string",
                               "description": "Only list tables of this schema (e.g. public)."},
                },
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {"tables": {"type": "array", "items": {"type": "object"}}},
                "required": ["tables"],
            },
            annotations=READ_ONLY,
        ),
        types.Tool(
            name="describe_table",
            title="Describe a table",
            description=("Describe one table or view: columns (name, type, nullable, default, comment), "
                         "primary key, foreign keys, indexes and the planner's row estimate."),
            input_schema={
                "type": "object",
                "properties": {
                    "table": {"type": "string",
                              "description": "Table name, optionally schema-qualified "
                                             "(orders, public.orders, hr.employees)."},
                },
                "required": ["table"],
                "additionalProperties": False,
            },
            output_schema=TABLE_SCHEMA_OUTPUT,
            annotations=READ_ONLY,
        ),
        types.Tool(
            name="explain_query",
            title="Explain a query's plan",
            description=("Show PostgreSQL's execution plan for one read-only SELECT without running it "
                         "(EXPLAIN without ANALYZE; the same checks as `query`). Use it to check cost "
                         "and index use before running an expensive query."),
            input_schema={
                "type": "object",
                "properties": {
                    "sql": {"type": "string", "description": "One PostgreSQL SELECT statement to plan."},
                },
                "required": ["sql"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {"plan": {"description": "EXPLAIN (FORMAT JSON) output."}},
                "required": ["plan"],
            },
            annotations=READ_ONLY,
        ),
    ]


class ToolArgumentError(Exception):
    """A tool was called with arguments it cannot use; the message is safe to return."""


def error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def _ok(text: str, structured: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                structured_content=structured)


def _string_arg(args: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = args.get(name)
    if value is None:
        if required:
            raise ToolArgumentError(f"missing required argument {name!r}")
        return None
    if not isinstance(value, str):
        raise ToolArgumentError(f"argument {name!r} must be a string")
    return value


def _check_names(args: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ToolArgumentError(f"unknown argument(s): {', '.join(unknown)}")


async def _query(db: Database, args: Mapping[str, Any]) -> types.CallToolResult:
    _check_names(args, {"sql", "max_rows"})
    sql = _string_arg(args, "sql", required=True)
    max_rows = args.get("max_rows")
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise ToolArgumentError("argument 'max_rows' must be a positive integer")
    assert sql is not None
    result = await db.query(sql, max_rows)
    return _ok(render.query_text(result), result.structured())


async def _list_tables(db: Database, args: Mapping[str, Any]) -> types.CallToolResult:
    _check_names(args, {"schema"})
    tables = await catalog.list_tables(db, _string_arg(args, "schema", required=False))
    lines = [
        f"- {t['schema']}.{t['name']} ({t['kind']}"
        + (f", ~{t['row_estimate']} rows" if t["row_estimate"] is not None else "") + ")"
        + (f": {t['comment']}" if t["comment"] else "")
        for t in tables
    ]
    return _ok("\n".join(lines) or "(no readable tables)", {"tables": tables})


async def _describe_table(db: Database, args: Mapping[str, Any]) -> types.CallToolResult:
    _check_names(args, {"table"})
    ident = _string_arg(args, "table", required=True)
    assert ident is not None
    doc = await catalog.describe_table(db, await catalog.resolve_table(db, ident))
    return _ok(json.dumps(doc, indent=2, ensure_ascii=False), doc)


async def _explain_query(db: Database, args: Mapping[str, Any]) -> types.CallToolResult:
    _check_names(args, {"sql"})
    sql = _string_arg(args, "sql", required=True)
    assert sql is not None
    plan = await db.explain(sql)
    return _ok(render.plan_text(plan), {"plan": plan})


HANDLERS: dict[str, Callable[[Database, Mapping[str, Any]], Awaitable[types.CallToolResult]]] = {
    "query": _query,
    "list_tables": _list_tables,
    "describe_table": _describe_table,
    "explain_query": _explain_query,
}


async def call_tool(db: Database, name: str, arguments: Mapping[str, Any] | None) -> types.CallToolResult:
    """Run tool `name`; every failure becomes an `isError` result with a safe message."""
    handler = HANDLERS.get(name)
    if handler is None:
        return error_result(f"unknown tool {name!r}")
    try:
        return await handler(db, arguments or {})
    except ToolArgumentError as exc:
        return error_result(f"invalid arguments: {exc}")
    except catalog.TableNotFound as exc:
        return error_result(str(exc))
    except QueryError as exc:
        if exc.sqlstate:
            return error_result(f"ERROR {exc.sqlstate}: {exc.message}")
        return error_result(exc.message)
    except Exception:
        logger.exception("tool %s failed", name)
        return error_result(f"internal error in tool {name!r}")
