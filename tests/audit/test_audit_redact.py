"""Redaction of SQL for audit records and spans: no constant survives, unparseable text is not stored."""

from __future__ import annotations

import pytest

from pgwarden.proxy.audit import redact_sql
from pgwarden.proxy.audit.redact import redact_scanned
from pgwarden.proxy.guard.tokens import scan_sql

# (sql, secret that must not survive)
CASES = [
    ("SELECT * FROM customers WHERE email = 'ada@example.com'", "ada@example.com"),
    ("SELECT * FROM customers WHERE id = 982451653", "982451653"),
    ("SELECT * FROM t WHERE x = E'esc\\'aped-secret'", "aped-secret"),
    ("SELECT * FROM t WHERE x = $$dollar-secret$$", "dollar-secret"),
    ("SELECT * FROM t WHERE x = $tag$tagged-secret$tag$", "tagged-secret"),
    ("SELECT * FROM t WHERE x = U&'unicode-secret'", "unicode-secret"),
    ("SELECT * FROM t WHERE x = X'DEADBEEF'", "DEADBEEF"),
    ("SELECT * FROM t WHERE x = B'1011001'", "1011001"),
    ("SELECT * FROM t WHERE created > DATE '1815-12-10'", "1815"),
    ("SELECT * FROM t WHERE d > now() - INTERVAL '31337 days'", "31337"),
    ("SELECT '{\"ssn\":\"078-05-1120\"}'::jsonb @> data FROM t", "078-05-1120"),
    ("SELECT data->>'private-key-name' FROM t", "private-key-name"),
    ("SELECT data #>> '{a,deep-secret}' FROM t", "deep-secret"),
    ("SELECT * FROM t WHERE x IN ('one-secret', 'two-secret')", "one-secret"),
    ("SELECT ARRAY['arr-secret'] FROM t", "arr-secret"),
    ("SELECT 1 /* comment-secret */ FROM t -- line-secret", "secret"),
    ("SELECT * FROM t LIMIT 777 OFFSET 888", "777"),
    ("SELECT 'a'; SELECT 'multi-secret'", "multi-secret"),
    ("DO $$ BEGIN PERFORM 'command-secret'; END $$", "command-secret"),
    ("SELEC 'broken-secret' FRM", "broken-secret"),
    # sqlglot turns these constants into identifiers (unit nodes), not literals:
    ("SELECT date_trunc('ada@example.com', ordered_at) FROM orders", "ada@example.com"),
    ("SELECT date_part('tok_secret_123', ordered_at) FROM orders", "tok_secret_123"),
    ("SELECT extract('unit-secret' FROM ordered_at) FROM orders", "unit-secret"),
    ("SELECT * FROM payments WHERE card_number = 4111111111111111", "4111111111111111"),
]


@pytest.mark.parametrize(("sql", "secret"), CASES)
def test_redact_sql_leaves_no_constant(sql: str, secret: str) -> None:
    red = redact_sql(sql)
    assert red.length == len(sql)
    stored = repr(red.to_json()).casefold()
    assert secret.casefold() not in stored


@pytest.mark.parametrize(("sql", "secret"), [c for c in CASES if scan_sql(c[0]) is not None])
def test_redaction_from_the_gates_scan_leaves_no_constant(sql: str, secret: str) -> None:
    """The gate redacts from its own scan of a statement the guard accepted (no grammar check)."""
    scanned = scan_sql(sql)
    assert scanned is not None
    stored = repr(redact_scanned(scanned).to_json()).casefold()
    assert secret.casefold() not in stored


def test_date_units_stay_readable() -> None:
    red = redact_sql("SELECT date_trunc('month', ordered_at), count(*) FROM orders GROUP BY 1")
    assert red.text == "SELECT date_trunc('month', ordered_at), count(*) FROM orders GROUP BY ?"


def test_comments_and_layout_go_constants_stay_in_place() -> None:
    sql = "SELECT  a,\n  b -- ada@example.com\nFROM t /* x */ WHERE c='d' AND e = 1e5"
    assert redact_sql(sql).text == "SELECT a, b FROM t WHERE c=? AND e = ?"


def test_a_constant_equal_to_a_name_in_the_statement_stores_nothing_of_it() -> None:
    """The positive check: a constant's value still visible in the text (here as a column name)
    means the redaction cannot be told apart from a leak, so only length and hash are kept."""
    red = redact_sql("SELECT secret_column FROM t WHERE x = 'secret_column'")
    assert red.text is None and red.sha256 is not None


def test_redact_sql_keeps_the_shape_and_a_stable_fingerprint() -> None:
    a = redact_sql("SELECT name FROM customers WHERE email = 'ada@example.com' LIMIT 5")
    b = redact_sql("select name from customers where email = 'bob@example.org' limit 50")
    assert a.text == "SELECT name FROM customers WHERE email = ? LIMIT ?"
    assert a.sha256 is None
    assert a.fingerprint == b.fingerprint


def test_redact_sql_keeps_bind_parameters() -> None:
    assert redact_sql("SELECT * FROM t WHERE a = $1").text == "SELECT * FROM t WHERE a = $1"


def test_unparseable_sql_is_stored_as_length_and_hash_only() -> None:
    red = redact_sql("SELEC 'broken-secret' FRM")
    assert red.text is None
    assert red.fingerprint is None
    assert red.sha256 is not None and len(red.sha256) == 64
    assert set(red.to_json()) == {"text", "length", "sha256"}


def test_very_long_sql_is_not_parsed_only_hashed() -> None:
    sql = "SELECT * FROM t WHERE x IN (" + ", ".join(f"'secret-{i}'" for i in range(20_000)) + ")"
    red = redact_sql(sql)
    assert red.text is None and red.length == len(sql) and red.sha256 is not None


def test_deeply_nested_sql_does_not_crash() -> None:
    sql = "SELECT " + "(" * 5000 + "'nested-secret'" + ")" * 5000
    assert "nested-secret" not in repr(redact_sql(sql).to_json())
