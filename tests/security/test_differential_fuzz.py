"""Differential fuzzing of the two SQL parsers the guard relies on.

Hypothesis generates statements (from a token grammar) and mutates real ones (the attack and
benign corpora, the guard's reject fixtures). Each is parsed independently here, by sqlglot
(postgres dialect, scope analysis) and by pglast (Postgres's own grammar). Where the two disagree
about the statement — how many there are, whether it is a plain SELECT, which physical relations it
reads — the guard under a real policy (the analyst's) must deny. Whatever it allows must be one
plain SELECT (per pglast) over relations the policy grants.

A smaller budget goes end to end through the analyst's proxy session: no input crashes it, none
returns a secret, and it keeps answering afterwards.

Budgets: `FUZZ_EXAMPLES` per in-process property, `E2E_EXAMPLES` end to end; both multiplied
under `PGWARDEN_SOAK=1` (`make soak`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from attack_cases import CASES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pglast import parser as pgparser
from security_harness import POLICIES, Secrets, find_leaks
from security_sessions import SessionPool
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.scope import traverse_scope
from test_benign import benign_items

from pgwarden.proxy.guard import GuardDenied, enforce, parse_statement
from pgwarden.proxy.policy import RequestInfo, load_policy


def _guard_support() -> Any:
    """The guard tests' shared data (demo catalog, fixture readers), imported from tests/guard."""
    path = Path(__file__).resolve().parent.parent / "guard" / "guard_support.py"
    spec = importlib.util.spec_from_file_location("pgwarden_test_guard_support", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GUARD = _guard_support()
SOAK = os.environ.get("PGWARDEN_SOAK") == "1"
FUZZ_EXAMPLES = 2000 if SOAK else 250
E2E_EXAMPLES = 600 if SOAK else 60

POLICY = load_policy([POLICIES / "analyst.yaml"], catalog=GUARD.DEMO_CATALOG)
ANALYST = {"id": "ann", "roles": ["analyst"]}
GRANTED = frozenset({"public.orders", "public.order_items", "public.products", "public.tenants",
                     "public.customers", "public.payments"})

SEEDS: list[str] = sorted(
    {c.sql for c in CASES if c.sql and len(c.sql) < 2000 and "{" not in c.sql}
    | {sql for _, sql, _ in benign_items()}
    | {"\n".join(b[1:]) for p in sorted(GUARD.FIXTURES.glob("reject_*.sql")) for b in GUARD.blocks(p)
       if b and b[0].startswith("-- expect:")}
)

TOKENS = [
    ";", "'", '"', "$$", "$q$", "--", "/*", "*/", "(", ")", ",", ".", "::", "U&", "E'", "\\", "*",
    "SELECT", "FROM", "WHERE", "UNION", "UNION ALL", "WITH", "RECURSIVE", "AS", "LIMIT", "ALL", "OFFSET",
    "FOR UPDATE", "INTO", "DELETE FROM", "INSERT INTO", "UPDATE", "SET", "COMMIT", "BEGIN", "VALUES",
    "TABLE", "ONLY", "LATERAL", "JOIN", "LEFT JOIN", "ON true", "GROUP BY 1", "ORDER BY 1", "RETURNING *",
    "orders", "customers", "secrets", "hr.salaries", "pg_class", "pg_catalog.pg_authid", "pg_temp.orders",
    "public.orders", "\"orders\"", "\"Orders\"", "x", "t", "1", "'a'", "count(*)", "email", "national_id",
    "pg_sleep(1)", "query_to_xml('SELECT 1', true, false, '')", "::regclass", "row_to_json(c)",
    "FETCH FIRST 5 ROWS ONLY", "\n", "\t", "\u00a0", "\u200b",
]


@dataclass(frozen=True)
class View:
    """What one parser says a text is."""

    statements: int
    select: bool  # exactly one statement and it is a query (SELECT / set operation / VALUES)
    relations: frozenset[str]


def _qualify(schema: str | None, name: str) -> str:
    if schema:
        return f"{schema}.{name}"
    return f"pg_catalog.{name}" if name.startswith("pg_") else f"public.{name}"


def pglast_view(sql: str) -> View | None:
    try:
        tree = json.loads(pgparser.parse_sql_json(sql))
    except Exception:
        return None
    stmts = tree.get("stmts", [])
    relations: set[str] = set()
    writes: list[str] = []  # statement nodes other than SELECT anywhere in the tree

    def walk(node: Any, ctes: frozenset[str]) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, ctes)
            return
        if not isinstance(node, dict):
            return
        if "SelectStmt" in node and isinstance(node["SelectStmt"], dict):
            body = node["SelectStmt"]
            with_clause = body.get("withClause") or {}
            entries = [c.get("CommonTableExpr", {}) for c in with_clause.get("ctes", [])]
            names = [e.get("ctename", "") for e in entries]
            inner = ctes
            for index, entry in enumerate(entries):
                visible = names if with_clause.get("recursive") else names[:index]
                walk(entry.get("ctequery"), ctes | frozenset(visible))
            inner = ctes | frozenset(names)
            walk({k: v for k, v in body.items() if k != "withClause"}, inner)
            return
        if any(key.endswith("Stmt") and key != "SelectStmt" for key in node):
            writes.append(next(k for k in node if k.endswith("Stmt")))
        rv = node.get("RangeVar") if isinstance(node.get("RangeVar"), dict) else None
        if rv is None and "relname" in node:
            rv = node
        if rv is not None:
            schema, name = rv.get("schemaname"), rv.get("relname", "")
            if schema is None and name in ctes:
                return
            relations.add(_qualify(schema, name))
            return
        for value in node.values():
            walk(value, ctes)

    walk(stmts, frozenset())
    kinds = [next(iter(s.get("stmt", {})), "") for s in stmts]
    select = len(stmts) == 1 and kinds[0] == "SelectStmt" and not writes
    return View(len(stmts), select, frozenset(relations))


def sqlglot_view(sql: str) -> View | None:
    try:
        parsed = [e for e in sqlglot.parse(sql, read="postgres") if e is not None]
    except Exception:
        return None
    if len(parsed) == 1 and isinstance(parsed[0], exp.Block):
        parsed = list(parsed[0].expressions)
    root = parsed[0] if len(parsed) == 1 else None
    while isinstance(root, exp.Subquery):
        root = root.this
    select = isinstance(root, exp.Select | exp.SetOperation | exp.Values) and not any(
        isinstance(n, exp.Command | exp.Insert | exp.Update | exp.Delete | exp.Merge) for n in root.walk()
    )
    relations: set[str] = set()
    try:
        if root is not None:  # fold unquoted names as Postgres does (`R` is the CTE `r`)
            root = normalize_identifiers(root, dialect="postgres")
        for scope in traverse_scope(root) if root is not None else []:
            for source in scope.sources.values():
                if isinstance(source, exp.Table) and source.name:
                    schema = source.args.get("db")
                    relations.add(_qualify(_ident(schema) if schema else None, _ident(source.this)))
    except Exception:
        return View(len(parsed), select, frozenset({"<unresolved>"}))
    return View(len(parsed), select, frozenset(relations))


def _ident(node: Any) -> str:
    if isinstance(node, exp.Identifier):
        return str(node.this)
    return str(node.name if isinstance(node, exp.Expression) else node).lower()


def guard_allows(sql: str) -> str | None:
    """The SQL the analyst's proxy would send upstream, or None when it denies."""
    try:
        statement = parse_statement(sql)
    except GuardDenied:
        return None
    decision = POLICY.decide(ANALYST, RequestInfo("tools/call", "query", {"sql": sql}), statement.analysis)
    if not decision.allowed:
        return None
    try:
        return enforce(statement, decision.obligations, GUARD.DEMO_CATALOG).sql
    except GuardDenied:
        return None


def check(sql: str) -> None:
    sent = guard_allows(sql)
    if sent is None:
        return
    pg, glot = pglast_view(sql), sqlglot_view(sql)
    assert pg is not None and glot is not None, "allowed although a parser rejects it"
    assert pg.select and glot.select, f"allowed although not one plain SELECT: pglast={pg} sqlglot={glot}"
    assert pg.relations == glot.relations, f"allowed although the parsers disagree: {pg} vs {glot}"
    out = pglast_view(sent)
    assert out is not None and out.select, "the rewritten SQL is not one SELECT"
    assert out.relations <= GRANTED, f"the rewritten SQL reads {out.relations - GRANTED}"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    sql = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, len(sql)))
        action = draw(st.sampled_from(["insert", "delete", "token", "swap-case", "duplicate"]))
        if action == "insert":
            sql = sql[:pos] + draw(st.text(max_size=3)) + sql[pos:]
        elif action == "delete":
            sql = sql[:pos] + sql[pos + draw(st.integers(1, 10)):]
        elif action == "token":
            sql = sql[:pos] + " " + draw(st.sampled_from(TOKENS)) + " " + sql[pos:]
        elif action == "swap-case":
            sql = sql[:pos] + sql[pos:].swapcase()
        else:
            end = min(len(sql), pos + draw(st.integers(1, 30)))
            sql = sql[:end] + sql[pos:end] + sql[end:]
    return sql


generated = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=14).map(" ".join)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_sql_parser_disagreement_ends_in_a_deny(sql: str) -> None:
    check(sql)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated)
def test_generated_sql_parser_disagreement_ends_in_a_deny(sql: str) -> None:
    check(sql)


@pytest.mark.parametrize("sql", SEEDS[:: max(1, len(SEEDS) // 150)])
def test_seed_statements_hold_the_property(sql: str) -> None:
    check(sql)


@settings(max_examples=E2E_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(mutated(), generated))
def test_fuzzed_sql_end_to_end_never_crashes_or_leaks(
    proxy_pool: SessionPool, db_secrets: Secrets, sql: str
) -> None:
    session = proxy_pool.get("analyst")
    reply = session.query(sql)
    proxy_pool.calls["analyst"] = proxy_pool.calls.get("analyst", 0) + 1
    internal_error = reply.error is not None and reply.error.get("code") == -32603
    assert not internal_error or "pgwarden" in reply.text, reply.summary()
    assert not find_leaks(reply, db_secrets.for_principal("analyst"))
    if guard_allows(sql) is None:
        assert reply.is_error, f"the in-process gate denies but the proxy answered: {reply.summary()}"
    alive = session.query("SELECT count(*) FROM products")
    assert not alive.is_error, alive.summary()
