"""Fuzz the guard boundary: it may deny, but only with GuardDenied, and what it lets through is
exactly one plain SELECT (per Postgres's own parser) over allowed relations within the cap."""

from __future__ import annotations

from guard_support import ANALYST, DEMO_CATALOG, FIXTURES, blocks, queries
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pglast import parser as pgparser

from pgwarden.proxy.guard import GuardDenied, enforce, parse_statement
from pgwarden.proxy.guard.pgcheck import inspect

SEEDS = queries(FIXTURES / "analytics.sql") + [
    "\n".join(b[1:]) for p in sorted(FIXTURES.glob("reject_*.sql")) for b in blocks(p)
    if b[0].startswith("-- expect:")
]

TOKENS = [
    ";", "'", '"', "$$", "$a$", "--", "/*", "*/", "(", ")", ",", ".", "::", "U&", "E'", "\\",
    "SELECT", "FROM", "WHERE", "UNION", "WITH", "AS", "LIMIT", "ALL", "OFFSET", "FOR UPDATE",
    "INTO", "DELETE", "INSERT", "SET", "COMMIT", "secrets", "pg_class", "pg_temp.orders",
    "customers", "orders c", "pg_sleep(1)", "query_to_xml('x',true,false,'')", "::regclass",
    "LATERAL", "RECURSIVE", "FETCH FIRST 5 ROWS ONLY", "row_to_json(c)", "*", "\x00", "\n",
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    sql = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(sql)))
        action = draw(st.sampled_from(["insert", "delete", "token"]))
        if action == "insert":
            sql = sql[:pos] + draw(st.text(max_size=3)) + sql[pos:]
        elif action == "delete":
            sql = sql[:pos] + sql[pos + draw(st.integers(1, 8)):]
        else:
            sql = sql[:pos] + " " + draw(st.sampled_from(TOKENS)) + " " + sql[pos:]
    return sql


generated = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12).map(" ".join)


def check(sql: str) -> None:
    try:
        rewrite = enforce(parse_statement(sql), ANALYST, DEMO_CATALOG)
    except GuardDenied:
        return
    stmts = pgparser.parse_sql(rewrite.sql)
    assert len(stmts) == 1
    assert type(stmts[0].stmt).__name__ == "SelectStmt"
    facts = inspect(rewrite.sql, ("public",))  # raises on INTO, locking, DML, unknown nodes
    assert facts.relations <= ANALYST.allowed_relations
    assert not facts.unpinned
    assert facts.root_limit is not None and facts.root_limit <= 100


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_sql_never_crashes_open(sql: str) -> None:
    check(sql)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated)
def test_generated_sql_never_crashes_open(sql: str) -> None:
    check(sql)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_never_crashes_open(sql: str) -> None:
    check(sql)
