"""Learned statement shapes: a filled template is exactly what the full guard would send.

Every test learns a shape from two statements that differ only in constants, then fills a
third. The filled SQL must equal the full guard's rewrite of that third statement, and on the
real database it must return the same rows; anything the shape must not cover (a row count, a
constant of another kind, another catalog, other obligations) must miss and take the full path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from guard_support import ANALYST, DEMO_CATALOG, FIXTURES, PERMISSIVE, queries
from shape_variants import value_variant

from pgwarden.proxy.guard import (
    Catalog,
    GuardDenied,
    Obligations,
    Reason,
    RowFilter,
    enforce,
    parse_statement,
)
from pgwarden.proxy.guard.enforce import allowed_functions, revalidate
from pgwarden.proxy.guard.shapes import ShapeCache, obligations_key
from pgwarden.proxy.guard.tokens import Scanned, scan_sql

CORPUS = queries(FIXTURES / "analytics.sql")
CONTEXT = (("public",), "test-catalog", 1)


def scanned(sql: str) -> Scanned:
    found = scan_sql(sql)
    assert found is not None
    return found


def variant(sql: str, k: int) -> str:
    return value_variant(sql, k)


def learn(cache: ShapeCache, sql: str, obligations: Obligations, catalog: Catalog = DEMO_CATALOG,
          context: object = CONTEXT) -> None:
    statement = parse_statement(sql)
    rewrite = enforce(statement, obligations, catalog)
    cache.learn(scanned(sql), context, statement, obligations, rewrite, catalog)


def filled(cache: ShapeCache, sql: str, obligations: Obligations, context: object = CONTEXT) -> str | None:
    """What the gate sends for `sql` from a learned shape (re-validated), or None on a miss."""
    scan = scanned(sql)
    shape = cache.find(scan, context)
    template = cache.template(shape, obligations) if shape is not None else None
    if shape is None or template is None:
        return None
    sql_out = template.checked_fill(scan.constants)
    # The gate relies on checked_fill; the guard's full re-validation must agree with it.
    revalidate(sql_out, shape.statement, allowed_functions(obligations), obligations.row_cap)
    return sql_out


def learned_from_two(sql: str, obligations: Obligations) -> ShapeCache:
    cache = ShapeCache()
    learn(cache, variant(sql, 1), obligations)
    learn(cache, variant(sql, 2), obligations)
    return cache


@pytest.mark.parametrize("obligations", [PERMISSIVE, ANALYST], ids=["permissive", "analyst"])
def test_corpus_filled_templates_equal_the_full_rewrite(obligations: Obligations) -> None:
    hits = 0
    for sql in CORPUS:
        try:
            cache = learned_from_two(sql, obligations)
        except GuardDenied:
            continue  # the analyst may not read every table of the corpus
        third = variant(sql, 3)
        out = filled(cache, third, obligations)
        if out is None:
            continue
        hits += 1
        assert out == enforce(parse_statement(third), obligations, DEMO_CATALOG).sql, third
    # Most of the corpus has a shape (those with a constant the guard rewrites, such as
    # date_trunc's unit, are pinned and this test's variants change them on purpose).
    assert hits >= 50


@pytest.fixture(scope="module")
def reader(reader_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(reader_dsn, autocommit=True) as conn:
        yield conn


def rows(conn: psycopg.Connection, sql: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(sql)
        found = cur.fetchall()
    return sorted(repr(tuple(float(v) if isinstance(v, Decimal) else v for v in r)) for r in found)


WITH_CONSTANTS = [q for q in CORPUS if any(not c.pinned for c in scanned(q).constants)]


@pytest.mark.parametrize("sql", WITH_CONSTANTS, ids=[f"q{i:02d}" for i in range(len(WITH_CONSTANTS))])
def test_filled_template_returns_the_full_guards_rows_on_the_database(reader: psycopg.Connection,
                                                                      sql: str) -> None:
    """Under the analyst's masks, row filter and cap: learned from two variants (never run), filled
    with the corpus query's own constants. Where a variant changed a constant the shape pins (a
    `date_trunc` unit), the shape is learned from the query's own text instead."""
    try:
        full = enforce(parse_statement(sql), ANALYST, DEMO_CATALOG).sql
    except GuardDenied:
        with pytest.raises(GuardDenied):  # the analyst may not read a table: learning refuses too
            learned_from_two(sql, ANALYST)
        return
    out = filled(learned_from_two(sql, ANALYST), sql, ANALYST)
    if out is None:
        cache = ShapeCache()
        learn(cache, sql, ANALYST)
        learn(cache, sql, ANALYST)
        out = filled(cache, sql, ANALYST)
    assert out == full
    assert rows(reader, out) == rows(reader, full)


def test_the_first_sighting_only_remembers_and_the_second_learns() -> None:
    cache = ShapeCache()
    learn(cache, "SELECT id FROM orders WHERE id = 1", PERMISSIVE)
    assert cache.find(scanned("SELECT id FROM orders WHERE id = 3"), CONTEXT) is None
    learn(cache, "SELECT id FROM orders WHERE id = 2", PERMISSIVE)
    assert cache.learned == 1
    out = filled(cache, "SELECT id FROM orders WHERE id = 3", PERMISSIVE)
    assert out is not None and "id = 3" in out and "= 1" not in out and "= 2" not in out


CAP_10 = Obligations(allowed_relations=PERMISSIVE.allowed_relations, row_cap=10)


@pytest.mark.parametrize(
    ("learned", "other"),
    [
        # a row count is part of the shape: LIMIT 5 says nothing about LIMIT 5000 under a cap of 10
        ("SELECT id FROM orders WHERE id > {k} LIMIT 5", "SELECT id FROM orders WHERE id > 7 LIMIT 5000"),
        ("SELECT id FROM orders WHERE id > {k} OFFSET 5", "SELECT id FROM orders WHERE id > 7 OFFSET 9"),
        ("SELECT id FROM orders WHERE id > {k} FETCH FIRST 5 ROWS ONLY",
         "SELECT id FROM orders WHERE id > 7 FETCH FIRST 50 ROWS ONLY"),
        # a constant of another kind is another shape
        ("SELECT id FROM orders WHERE id = {k}", "SELECT id FROM orders WHERE id = '7'"),
        ("SELECT id FROM orders WHERE id = {k}", "SELECT id FROM orders WHERE id = 7.5"),
        ("SELECT id FROM orders WHERE id = {k}", "SELECT id FROM orders WHERE id = 4111111111111111"),
        ("SELECT id FROM orders WHERE status = 'a{k}'", "SELECT id FROM orders WHERE status = E'a7'"),
        ("SELECT id FROM orders WHERE status = 'a{k}'", "SELECT id FROM orders WHERE status = $$a7$$"),
        ("SELECT id FROM orders WHERE status = 'a{k}'", "SELECT id FROM orders WHERE status = 'a\\'"),
        # an interval's text, a comment, other tokens
        ("SELECT id FROM orders WHERE id > {k} AND ordered_at > now() - interval '3 days'",
         "SELECT id FROM orders WHERE id > 7 AND ordered_at > now() - interval '7 hours'"),
        ("SELECT id FROM orders WHERE id = {k} -- note", "SELECT id FROM orders WHERE id = 7 -- other"),
        ("SELECT id FROM orders WHERE id = {k}", "SELECT id FROM orders WHERE id = -7"),
        ("SELECT id FROM orders WHERE id = {k}", "SELECT id FROM orders WHERE id IN (7)"),
    ],
)
def test_what_a_shape_does_not_cover_misses(learned: str, other: str) -> None:
    cache = ShapeCache()
    learn(cache, learned.format(k=1), CAP_10)
    learn(cache, learned.format(k=2), CAP_10)
    assert filled(cache, learned.format(k=3), CAP_10) is not None  # the shape itself was learned
    assert filled(cache, other, CAP_10) is None


def test_a_catalog_refresh_or_another_search_path_misses() -> None:
    cache = ShapeCache()
    for k in (1, 2):
        learn(cache, f"SELECT id FROM orders WHERE id = {k}", PERMISSIVE)
    third = "SELECT id FROM orders WHERE id = 3"
    assert filled(cache, third, PERMISSIVE) is not None
    assert filled(cache, third, PERMISSIVE, (("public",), "test-catalog", 2)) is None
    assert filled(cache, third, PERMISSIVE, (("hr",), "test-catalog", 1)) is None


def test_each_tenant_gets_its_own_template_and_only_its_rows(reader: psycopg.Connection) -> None:
    def tenant(n: int) -> Obligations:
        return dataclasses.replace(ANALYST, row_filters={"public.orders": (RowFilter("tenant_id", (n,)),)})

    cache = ShapeCache()
    sql = "SELECT tenant_id, id FROM orders WHERE total > {k} ORDER BY id LIMIT 50"
    for k in (1, 2):
        learn(cache, sql.format(k=k), tenant(1))
    assert filled(cache, sql.format(k=3), tenant(2)) is None  # other obligations: no template yet
    for k in (4, 5):
        learn(cache, sql.format(k=k), tenant(2))
    for n in (1, 2):
        out = filled(cache, sql.format(k=6), tenant(n))
        assert out is not None
        found = rows(reader, out)
        assert found and all(r.startswith(f"({n}, ") for r in found)
    assert obligations_key(tenant(1)) != obligations_key(tenant(2))


@pytest.mark.parametrize(
    "constant",
    [
        "'x'' OR true --'",
        "'x''); SELECT api_key FROM secrets; --'",
        "'*/ UNION SELECT api_key FROM secrets /*'",
    ],
)
def test_a_constant_that_looks_like_sql_stays_a_constant(reader: psycopg.Connection, constant: str) -> None:
    cache = ShapeCache()
    for k in (1, 2):
        learn(cache, f"SELECT id, status FROM orders WHERE status = 'paid{k}'", ANALYST)
    sql = f"SELECT id, status FROM orders WHERE status = {constant}"
    out = filled(cache, sql, ANALYST)
    assert out is not None
    assert out == enforce(parse_statement(sql), ANALYST, DEMO_CATALOG).sql
    assert rows(reader, out) == []  # no order has that status; nothing of secrets comes back


def test_a_fill_postgres_reads_differently_is_refused() -> None:
    """The last line of defence: a filled statement whose normalisation differs is denied."""
    cache = ShapeCache()
    for k in (1, 2):
        learn(cache, f"SELECT id FROM orders WHERE status = 'a{k}'", PERMISSIVE)
    scan = scanned("SELECT id FROM orders WHERE status = 'a3'")
    shape = cache.find(scan, CONTEXT)
    template = cache.template(shape, PERMISSIVE) if shape is not None else None
    assert template is not None
    forged = dataclasses.replace(scan.constants[0], text="'x' OR true")  # not one constant any more
    with pytest.raises(GuardDenied) as denied:
        template.checked_fill([forged])
    assert denied.value.code == Reason.PARSER_DISAGREEMENT


def test_a_statement_that_holds_a_sentinel_is_not_learned(monkeypatch: pytest.MonkeyPatch) -> None:
    import pgwarden.proxy.guard.shapes as shapes

    monkeypatch.setattr(shapes.secrets, "randbelow", lambda n: 1234567890)
    cache = ShapeCache()
    # With that nonce, the second constant's sentinel is 112345001: the statement already holds it.
    sql = "SELECT id FROM orders WHERE status = '{k}' AND customer_id <> 112345001"
    for k in ("a", "b"):
        learn(cache, sql.format(k=k), PERMISSIVE)
    assert cache.learned == 0 and cache.refused == 1
    assert filled(cache, sql.format(k="c"), PERMISSIVE) is None


def test_a_constant_the_guard_rewrites_is_pinned_and_the_rest_still_swaps() -> None:
    cache = ShapeCache()
    sql = "SELECT date_trunc('month', ordered_at) AS m, count(*) FROM orders WHERE total > {k} GROUP BY 1"
    for k in (1, 2):
        learn(cache, sql.format(k=k), PERMISSIVE)
    learn(cache, sql.format(k=3), PERMISSIVE)  # learned again with the unit pinned
    out = filled(cache, sql.format(k=4), PERMISSIVE)
    assert out == enforce(parse_statement(sql.format(k=4)), PERMISSIVE, DEMO_CATALOG).sql
    assert filled(cache, sql.format(k=4).replace("'month'", "'year'"), PERMISSIVE) is None
