"""The analytics corpus on the real demo database: allowed, and the same rows after rewriting."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from guard_support import DEMO_CATALOG, FIXTURES, PERMISSIVE, queries

from pgwarden.proxy.guard import enforce, parse_statement

CORPUS = queries(FIXTURES / "analytics.sql")


def test_corpus_has_at_least_50_queries() -> None:
    assert len(CORPUS) >= 50


@pytest.fixture(scope="module")
def reader(reader_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(reader_dsn, autocommit=True) as conn:
        yield conn


def _rows(conn: psycopg.Connection, sql: str) -> list[tuple[object, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return [tuple(float(v) if isinstance(v, Decimal) else v for v in row) for row in cur.fetchall()]


@pytest.mark.parametrize("sql", CORPUS, ids=[f"q{i:02d}" for i in range(len(CORPUS))])
def test_corpus_query_returns_the_same_rows_after_rewriting(reader: psycopg.Connection, sql: str) -> None:
    rewrite = enforce(parse_statement(sql), PERMISSIVE, DEMO_CATALOG)
    original = _rows(reader, sql)
    rewritten = _rows(reader, rewrite.sql)
    assert original, "corpus queries should return rows"
    assert sorted(map(repr, rewritten)) == sorted(map(repr, original))
    if " ORDER BY " in sql.rsplit(")", 1)[-1]:
        assert rewritten == original
