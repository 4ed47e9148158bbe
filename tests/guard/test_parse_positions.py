"""The guard's parse tree carries no token positions (they only slow every copy down), and dropping
them changes neither the statement sent on nor anything decided about it."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot.dialects.postgres import Postgres

from pgwarden.proxy.guard import Catalog, Mask, Obligations, RowFilter, enforce, parse_statement

STATEMENTS = [
    "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.total > 10",
    "SELECT category, string_agg(name, ', ' ORDER BY name) AS names FROM products GROUP BY category",
    "WITH recent AS (SELECT * FROM orders WHERE ordered_at > '2024-01-01') SELECT count(*) FROM recent",
    "SELECT Upper(name) AS n, 'lit' AS l FROM customers ORDER BY 1 LIMIT 5 OFFSET 2",
]
POSITIONS = ("line", "col", "start", "end")
CATALOG = Catalog.from_mapping({
    "public.orders": ("id", "tenant_id", "customer_id", "status", "ordered_at", "total"),
    "public.customers": ("id", "tenant_id", "name", "email"),
    "public.products": ("id", "sku", "name", "category", "price"),
})


@pytest.mark.parametrize("sql", STATEMENTS)
def test_the_parse_tree_has_no_positions_and_generates_the_same_sql(sql: str) -> None:
    stmt = parse_statement(sql)
    for node in stmt.tree.walk():
        assert not set(POSITIONS) & set(node._meta or ()), node
    fresh = sqlglot.parse_one(sql, read="postgres")
    assert any(set(POSITIONS) & set(n._meta or ()) for n in fresh.walk())  # the parser does set them
    assert Postgres().generate(stmt.tree, copy=True) == Postgres().generate(fresh, copy=True)


@pytest.mark.parametrize("sql", STATEMENTS)
def test_the_rewrite_is_the_same_as_from_a_tree_with_positions(
    sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    obligations = Obligations(
        allowed_relations=frozenset({"public.orders", "public.customers", "public.products"}),
        masks={"public.customers": {"email": Mask("email")}},
        row_filters={"public.orders": (RowFilter("tenant_id", (7,)),)},
        row_cap=100,
    )
    stripped = enforce(parse_statement(sql), obligations, CATALOG)
    monkeypatch.setattr("pgwarden.proxy.guard.parse._drop_positions", lambda root: None)
    kept = enforce(parse_statement(sql), obligations, CATALOG)
    assert stripped == kept
    assert stripped.sql == kept.sql and "LIMIT" in stripped.sql
