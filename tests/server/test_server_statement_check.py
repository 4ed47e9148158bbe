"""The server's pglast check: one plain SELECT, nothing else (pure functions, no database)."""

from __future__ import annotations

import pytest

from pgwarden.server.statement_check import StatementRefused, check_select, explain_statement
from pgwarden.server.values import converter

ACCEPTED = [
    "SELECT 1",
    "select * from public.orders where id = 1;",
    "VALUES (1), (2)",
    "TABLE public.orders",
    "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    "SELECT 1 UNION SELECT 2 EXCEPT SELECT 3",
    "(SELECT 1) -- trailing comment",
    "SELECT 'DELETE FROM x; COMMIT' AS text_that_looks_bad",
    "SELECT $$ FOR UPDATE $$",
    "SELECT set_config('search_path', 'hr', true)",  # a function call: the proxy's allow-list decides
]

REFUSED = [
    ("", "empty"),
    ("   ", "empty"),
    ("-- nothing", "exactly one statement"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("COMMIT; SELECT 1", "exactly one statement"),
    ("SET statement_timeout = 0", "VariableSetStmt"),
    ("SET TRANSACTION READ WRITE", "VariableSetStmt"),
    ("BEGIN", "TransactionStmt"),
    ("SHOW search_path", "VariableShowStmt"),
    ("INSERT INTO t VALUES (1)", "InsertStmt"),
    ("EXPLAIN SELECT 1", "ExplainStmt"),
    ("COPY t TO STDOUT", "CopyStmt"),
    ("DO $$ BEGIN END $$", "DoStmt"),
    ("CALL p()", "CallStmt"),
    ("DECLARE c CURSOR FOR SELECT 1", "DeclareCursorStmt"),
    ("SELECT * INTO new_table FROM t", "INTO"),
    ("SELECT * FROM t FOR UPDATE", "locking"),
    ("SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", "locking"),
    ("SELECT * FROM (SELECT * FROM t FOR SHARE) s", "locking"),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE"),
    ("WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT 1", "UPDATE"),
    ("WITH a AS (SELECT 1), i AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT 1", "INSERT"),
    ("SELECT * FROM (WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d) s", "DELETE"),
    ("SELEC 1", "does not parse"),
    ("SELECT 1\x00; DELETE FROM t", "NUL"),
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_plain_selects_are_accepted(sql: str) -> None:
    check_select(sql)


@pytest.mark.parametrize(("sql", "reason"), REFUSED)
def test_everything_else_is_refused(sql: str, reason: str) -> None:
    with pytest.raises(StatementRefused) as caught:
        check_select(sql)
    assert reason in caught.value.reason


def test_explain_wraps_only_a_checked_select() -> None:
    assert explain_statement("SELECT 1") == "EXPLAIN (FORMAT JSON)\nSELECT 1"
    with pytest.raises(StatementRefused):
        explain_statement("SELECT 1; DELETE FROM t")


@pytest.mark.parametrize(("type_name", "value", "expected"), [
    ("timestamptz", "2024-01-01 10:00:00+00", "2024-01-01T10:00:00+00:00"),
    ("timestamptz", "2024-01-01 10:00:00.5+05:30", "2024-01-01T10:00:00.5+05:30"),
    ("timestamptz", "-infinity", "-infinity"),
    ("timestamptz", "0044-03-15 12:00:00+00 BC", "0044-03-15 12:00:00+00 BC"),
    ("timestamp", "2024-01-01 10:00:00", "2024-01-01T10:00:00"),
    ("timetz", "10:00:00-03", "10:00:00-03:00"),
    ("float8", float("inf"), "Infinity"),
    ("bytea", b"\x00\xff", "\\x00ff"),
    ("bytea[]", [b"\x01", None], ["\\x01", None]),
    ("jsonb", [1, {"a": None}], [1, {"a": None}]),
    ("numeric", "1.10", "1.10"),
    ("some_enum", "value", "value"),
])
def test_value_conversion(type_name: str, value, expected) -> None:
    assert converter(type_name)(value) == expected
