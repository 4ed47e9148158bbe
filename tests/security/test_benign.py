"""The benign suite: realistic work that must keep working through the proxy.

Each query goes end to end through the principal's proxy session, and its rows are compared with
the same question asked directly of the database (`direct`, default: the same SQL; for the
tenant-filtered principals, the SQL with the tenant filter written out). At least 95 % must be
allowed and return the same rows (compared as sorted lists, values normalised).
"""

from __future__ import annotations

from typing import Any

import pytest
from security_harness import reply_rows, rows_of
from security_sessions import ScratchDatabase, SessionPool

MIN_SUCCESS = 0.95

ANALYST = [
    "SELECT count(*) FROM orders",
    "SELECT status, count(*) AS n, sum(total) AS revenue FROM orders GROUP BY status ORDER BY status",
    "SELECT t.name, count(o.id) AS orders FROM tenants t LEFT JOIN orders o ON o.tenant_id = t.id "
    "GROUP BY t.name ORDER BY t.name",
    "SELECT date_trunc('month', ordered_at) AS month, sum(total) FROM orders GROUP BY 1 ORDER BY 1",
    "SELECT p.category, sum(oi.quantity * oi.unit_price) AS sales FROM order_items oi "
    "JOIN products p ON p.id = oi.product_id GROUP BY p.category ORDER BY sales DESC",
    "SELECT c.country, count(DISTINCT c.id) AS customers, round(avg(o.total), 2) AS avg_order "
    "FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.country ORDER BY c.country",
    "SELECT country, count(*) FROM customers GROUP BY country ORDER BY country",
    "SELECT id, total, rank() OVER (PARTITION BY tenant_id ORDER BY total DESC, id) AS r FROM orders "
    "ORDER BY tenant_id, r, id LIMIT 20",
    "WITH monthly AS (SELECT date_trunc('month', ordered_at) AS m, sum(total) AS revenue FROM orders "
    "GROUP BY 1) SELECT m, revenue, revenue - lag(revenue) OVER (ORDER BY m) AS delta FROM monthly "
    "ORDER BY m",
    "SELECT name, attributes ->> 'color' AS color, (attributes ->> 'weight_g')::int AS grams FROM products "
    "ORDER BY id LIMIT 15",
    "SELECT attributes ->> 'color' AS color, count(*) FROM products GROUP BY 1 ORDER BY 1",
    "SELECT jsonb_build_object('sku', sku, 'price', price) AS doc FROM products ORDER BY id LIMIT 5",
    "SELECT json_agg(json_build_object('id', id, 'name', name) ORDER BY id)::text FROM tenants",
    "SELECT extract(year FROM ordered_at) AS y, extract(quarter FROM ordered_at) AS q, count(*) FROM orders "
    "GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT id, ordered_at + interval '30 days' AS due FROM orders ORDER BY id LIMIT 10",
    "SELECT count(*) FROM orders WHERE ordered_at >= timestamptz '2024-06-01' "
    "AND ordered_at < timestamptz '2024-07-01'",
    "SELECT card_brand, count(*), sum(amount) FROM payments GROUP BY card_brand ORDER BY card_brand",
    "SELECT status, count(*) FROM payments GROUP BY status ORDER BY status",
    "SELECT p.status, o.status, count(*) FROM payments p JOIN orders o ON o.id = p.order_id "
    "GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT category, min(price), max(price), round(avg(price), 2) FROM products GROUP BY category "
    "ORDER BY 1",
    "SELECT sku, name, price FROM products WHERE price > 400 ORDER BY price DESC, id",
    "SELECT plan, count(*) FROM tenants GROUP BY plan ORDER BY plan",
    "SELECT o.tenant_id, count(*) FILTER (WHERE o.status = 'cancelled') AS cancelled, count(*) AS total "
    "FROM orders o GROUP BY o.tenant_id ORDER BY 1",
    "SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id HAVING count(*) > 15 "
    "ORDER BY n DESC, 1",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total) FROM orders",
    "SELECT width_bucket(total, 0, 5000, 10) AS bucket, count(*) FROM orders GROUP BY 1 ORDER BY 1",
    "SELECT date_part('dow', ordered_at) AS dow, count(*) FROM orders GROUP BY 1 ORDER BY 1",
    "SELECT o.id, sum(oi.quantity) AS items FROM orders o JOIN order_items oi ON oi.order_id = o.id "
    "WHERE o.id < 20 GROUP BY o.id ORDER BY o.id",
    "SELECT p.name, sum(oi.quantity) AS units FROM order_items oi JOIN products p ON p.id = oi.product_id "
    "GROUP BY p.name ORDER BY units DESC, p.name LIMIT 10",
    "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id)",
    "SELECT count(*) FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE country = 'DE')",
    "SELECT c.country, sum(o.total) AS revenue FROM orders o JOIN customers c ON c.id = o.customer_id "
    "GROUP BY ROLLUP (c.country) ORDER BY c.country NULLS LAST",
    "SELECT status FROM orders UNION SELECT status FROM payments ORDER BY 1",
    "SELECT id FROM orders WHERE total > 4000 INTERSECT SELECT order_id FROM payments ORDER BY 1",
    "WITH RECURSIVE d(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM d WHERE n < 12) "
    "SELECT d.n AS month, count(o.id) FROM d LEFT JOIN orders o "
    "ON extract(month FROM o.ordered_at) = d.n GROUP BY d.n ORDER BY d.n",
    "SELECT to_char(ordered_at, 'YYYY-MM') AS month, count(*) FROM orders GROUP BY 1 ORDER BY 1",
    "SELECT upper(category), length(name) FROM products ORDER BY id LIMIT 10",
    "SELECT coalesce(nullif(status, 'placed'), 'new') AS s, count(*) FROM orders GROUP BY 1 ORDER BY 1",
    "SELECT * FROM products ORDER BY id LIMIT 5",
    "SELECT o.* FROM orders o ORDER BY o.total DESC, o.id LIMIT 5",
    "SELECT split_part(email, '@', 2) AS domain, count(*) FROM customers GROUP BY 1 ORDER BY 1",
]

TENANT_FILTERED = [
    ("SELECT count(*) FROM orders", "SELECT count(*) FROM orders WHERE tenant_id = 1"),
    ("SELECT status, count(*) FROM orders GROUP BY status ORDER BY status",
     "SELECT status, count(*) FROM orders WHERE tenant_id = 1 GROUP BY status ORDER BY status"),
    ("SELECT id, status, total FROM orders ORDER BY ordered_at DESC, id LIMIT 20",
     "SELECT id, status, total FROM orders WHERE tenant_id = 1 ORDER BY ordered_at DESC, id LIMIT 20"),
    ("SELECT name, plan FROM tenants", "SELECT name, plan FROM tenants WHERE id = 1"),
    ("SELECT priority, count(*) FROM support_tickets WHERE status = 'open' GROUP BY 1 ORDER BY 1",
     "SELECT priority, count(*) FROM support_tickets WHERE status = 'open' AND tenant_id = 1 "
     "GROUP BY 1 ORDER BY 1"),
    ("SELECT s.id, s.subject, c.country FROM support_tickets s JOIN customers c ON c.id = s.customer_id "
     "WHERE s.priority = 'urgent' ORDER BY s.id",
     "SELECT s.id, s.subject, c.country FROM support_tickets s JOIN customers c ON c.id = s.customer_id "
     "WHERE s.priority = 'urgent' AND s.tenant_id = 1 AND c.tenant_id = 1 ORDER BY s.id"),
    ("SELECT c.country, count(*) FROM customers c GROUP BY 1 ORDER BY 1",
     "SELECT c.country, count(*) FROM customers c WHERE tenant_id = 1 GROUP BY 1 ORDER BY 1"),
    ("SELECT card_brand, count(*), sum(amount) FROM payments GROUP BY 1 ORDER BY 1",
     "SELECT card_brand, count(*), sum(amount) FROM payments WHERE tenant_id = 1 GROUP BY 1 ORDER BY 1"),
    ("SELECT o.id, p.status FROM orders o JOIN payments p ON p.order_id = o.id ORDER BY o.id LIMIT 30",
     "SELECT o.id, p.status FROM orders o JOIN payments p ON p.order_id = o.id "
     "WHERE o.tenant_id = 1 AND p.tenant_id = 1 ORDER BY o.id LIMIT 30"),
    ("SELECT date_trunc('month', opened_at) AS m, count(*) FROM support_tickets GROUP BY 1 ORDER BY 1",
     "SELECT date_trunc('month', opened_at) AS m, count(*) FROM support_tickets WHERE tenant_id = 1 "
     "GROUP BY 1 ORDER BY 1"),
    ("SELECT c.id, count(o.id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id "
     "ORDER BY 2 DESC, 1 LIMIT 10",
     "SELECT c.id, count(o.id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id "
     "AND o.tenant_id = 1 WHERE c.tenant_id = 1 GROUP BY c.id ORDER BY 2 DESC, 1 LIMIT 10"),
    ("SELECT name, category, price FROM products ORDER BY price DESC, id LIMIT 10", None),
    ("SELECT count(*) FROM support_tickets WHERE closed_at IS NULL",
     "SELECT count(*) FROM support_tickets WHERE closed_at IS NULL AND tenant_id = 1"),
    ("SELECT right(card_number, 4) AS last4 FROM payments ORDER BY id LIMIT 10",
     "SELECT right(card_number, 4) FROM payments WHERE tenant_id = 1 ORDER BY id LIMIT 10"),
]

DEFAULT = [
    "SELECT count(*) FROM products",
    "SELECT category, count(*) FROM products GROUP BY 1 ORDER BY 1",
    "SELECT status, count(*), sum(total) FROM orders GROUP BY 1 ORDER BY 1",
    "SELECT o.id, sum(i.quantity * i.unit_price) FROM orders o JOIN order_items i ON i.order_id = o.id "
    "GROUP BY o.id ORDER BY o.id LIMIT 25",
    "SELECT product_id, sum(quantity) FROM order_items GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
    "SELECT sku, price FROM products WHERE category = 'books' ORDER BY sku",
]


def benign_items() -> list[tuple[str, str, str]]:
    items = [("analyst", sql, sql) for sql in ANALYST]
    for who in ("support", "tenant"):
        items += [(who, sql, direct or sql) for sql, direct in TENANT_FILTERED]
    items += [("default", sql, sql) for sql in DEFAULT]
    return items


def _sorted(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=repr)


@pytest.mark.parametrize("principal", ["analyst", "support", "tenant", "default"])
def test_benign_work_keeps_working(
    principal: str, proxy_pool: SessionPool, scratch_db: ScratchDatabase, record_property: Any
) -> None:
    items = [(sql, direct) for who, sql, direct in benign_items() if who == principal]
    session = proxy_pool.get(principal)
    failures: list[str] = []
    for sql, direct in items:
        reply = session.query(sql)
        proxy_pool.calls[principal] = proxy_pool.calls.get(principal, 0) + 1
        if reply.is_error:
            failures.append(f"refused: {sql[:80]!r}: {reply.text[:160]!r}")
            continue
        expected = rows_of(scratch_db.reader_dsn, direct)
        if _sorted(reply_rows(reply)) != _sorted(expected):
            failures.append(f"different rows: {sql[:80]!r}")
    ok = len(items) - len(failures)
    record_property("benign_total", len(items))
    record_property("benign_ok", ok)
    assert ok / len(items) >= MIN_SUCCESS, f"{ok}/{len(items)} allowed and correct:\n" + "\n".join(failures)
    if failures:  # within tolerance, but say which
        print("\n".join(failures))
