"""The server's own light check of SQL before it reaches Postgres.

Postgres's grammar (libpg_query, through pglast) decides what the text is. Accepted: exactly
one statement, a plain `SelectStmt` (SELECT, VALUES, TABLE, set operations), with no
`INTO`, no locking clause (`FOR UPDATE` / `FOR SHARE` …) and no data-modifying statement
anywhere in the tree (`WITH d AS (DELETE …) SELECT …`). Everything else — `SET`,
transaction control, DDL, `COPY`, `DO`, `CALL`, `EXPLAIN`, unparsable text — is refused.

This is not the only layer: every statement also runs in a read-only transaction, through a
named cursor (extended protocol, so Postgres refuses stacked statements), and is rolled
back. Which tables and functions a query may use is the proxy's business, not this module's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pglast import parser

# Keys in libpg_query's JSON tree that make a SELECT unacceptable.
FORBIDDEN_NODES: dict[str, str] = {
    "InsertStmt": "a data-modifying statement (INSERT) is not allowed",
    "UpdateStmt": "a data-modifying statement (UPDATE) is not allowed",
    "DeleteStmt": "a data-modifying statement (DELETE) is not allowed",
    "MergeStmt": "a data-modifying statement (MERGE) is not allowed",
    "intoClause": "SELECT … INTO creates a table and is not allowed",
    "lockingClause": "locking clauses (FOR UPDATE / FOR SHARE …) are not allowed",
}


class StatementRefused(Exception):
    """The SQL is not one plain read-only SELECT; `reason` says why (safe to show)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _walk_keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _walk_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_keys(item)


def _statement_kind(stmt: dict[str, Any]) -> str:
    return next(iter(stmt), "unknown")


def _parse_one(sql: str) -> dict[str, Any]:
    """Parse `sql` and return its only statement node, or refuse."""
    if not isinstance(sql, str) or not sql.strip():
        raise StatementRefused("the SQL text is empty")
    if "\x00" in sql:
        raise StatementRefused("the SQL text contains a NUL byte")
    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except parser.ParseError as exc:
        raise StatementRefused(f"the SQL does not parse: {exc}") from None
    stmts = tree.get("stmts") or []
    if len(stmts) != 1:
        count = len(stmts)
        raise StatementRefused(f"exactly one statement is allowed, got {count}")
    stmt: dict[str, Any] = stmts[0]["stmt"]
    return stmt


def check_select(sql: str) -> None:
    """Accept `sql` only if it is exactly one read-only SELECT; raise StatementRefused otherwise.

    >>> check_select("SELECT 1")
    >>> check_select("SET statement_timeout = 0")
    Traceback (most recent call last):
    ...
    pgwarden.server.statement_check.StatementRefused: only SELECT queries are allowed, got VariableSetStmt
    """
    stmt = _parse_one(sql)
    kind = _statement_kind(stmt)
    if kind != "SelectStmt":
        raise StatementRefused(f"only SELECT queries are allowed, got {kind}")
    for key in _walk_keys(stmt):
        reason = FORBIDDEN_NODES.get(key)
        if reason is not None:
            raise StatementRefused(reason)


def explain_statement(sql: str) -> str:
    """The `EXPLAIN (FORMAT JSON)` statement for a checked SELECT (never ANALYZE).

    The combined text is parsed again and must be exactly one ExplainStmt whose only option
    is the JSON format, so no text in `sql` can turn it into something else.
    """
    check_select(sql)
    statement = "EXPLAIN (FORMAT JSON)\n" + sql
    stmt = _parse_one(statement)
    explain = stmt.get("ExplainStmt")
    if explain is None:
        raise StatementRefused("the query cannot be explained")
    options = [opt.get("DefElem", {}) for opt in explain.get("options") or []]
    if [(o.get("defname"), o.get("arg", {}).get("String", {}).get("sval")) for o in options] != [
        ("format", "json")
    ]:
        raise StatementRefused("the query cannot be explained")
    return statement
