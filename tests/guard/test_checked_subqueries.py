"""Re-validation takes the facts of a secure view it has checked before instead of walking the
view's subtree again, but only for a subtree that is the very same parse (locations aside)."""

from __future__ import annotations

import pytest
from guard_support import DEMO_CATALOG, POLICIES

from pgwarden.proxy.guard import GuardDenied, enforce, parse_statement
from pgwarden.proxy.guard.enforce import allowed_functions, revalidate
from pgwarden.proxy.guard.pgcheck import checked_subquery, inspect, parse_tree, subquery_signature

VIEW = "(SELECT id, ('***@' || SPLIT_PART(email, '@', 2)) AS email FROM public.customers WHERE tenant_id = 1)"


def _subquery(sql: str) -> dict:
    select = parse_tree(sql)[0]["stmt"]["SelectStmt"]
    return select["fromClause"][0]["RangeSubselect"]["subquery"]


def test_the_same_subquery_anywhere_in_a_statement_has_the_same_signature() -> None:
    alone = _subquery(f"SELECT * FROM {VIEW} AS c")
    later = _subquery(f"SELECT count(*), max(id)   FROM {VIEW} AS customers WHERE true")
    assert alone != later  # the locations differ
    assert subquery_signature(alone) == subquery_signature(later)


@pytest.mark.parametrize("other", [
    VIEW.replace("tenant_id = 1", "tenant_id = 2"),
    VIEW.replace("public.customers", "public.secrets"),
    VIEW.replace("SPLIT_PART", "pg_read_file"),
    VIEW.replace("'@', 2", "'@', 2, 3"),
    VIEW.replace("'***@'", "'location'"),
])
def test_any_other_subquery_has_another_signature(other: str) -> None:
    assert subquery_signature(_subquery(f"SELECT * FROM {VIEW} AS c")) != \
        subquery_signature(_subquery(f"SELECT * FROM {other} AS c"))


def test_text_that_looks_like_a_location_inside_a_string_is_kept() -> None:
    five, six = (VIEW.replace("'***@'", f"'\"location\":{n}'") for n in (5, 6))
    assert subquery_signature(_subquery(f"SELECT * FROM {five} AS c")) != \
        subquery_signature(_subquery(f"SELECT * FROM {six} AS c"))


def test_a_checked_subquery_records_what_a_full_walk_finds() -> None:
    checked = checked_subquery(VIEW)
    assert checked is not None
    full = inspect(f"SELECT * FROM {VIEW} AS c", ("public",))
    assert (checked.relations, checked.functions, checked.operators) == (
        full.relations, full.functions, full.operators)


@pytest.mark.parametrize("view", [
    "(SELECT id FROM customers)",  # unqualified: its meaning depends on the statement around it
    "(SELECT id FROM public.customers FOR UPDATE)",
    "(SELECT id FROM public.customers",
    "(DELETE FROM public.customers RETURNING id)",
])
def test_a_view_that_does_not_pass_every_check_on_its_own_is_never_trusted(view: str) -> None:
    assert checked_subquery(view) is None


def test_revalidation_uses_the_checked_facts_so_a_view_function_outside_the_allow_list_denies() -> None:
    stmt = parse_statement("SELECT id FROM customers")
    bad = VIEW.replace("SPLIT_PART", "pg_read_file")
    sql = f"SELECT id FROM {bad} AS customers LIMIT 10"
    with pytest.raises(GuardDenied) as denied:
        revalidate(sql, stmt, allowed_functions(POLICIES["analyst"]), 10, views={"p": bad})
    assert denied.value.detail["check"] == "function outside the allow-list: pg_read_file"


def test_revalidation_walks_a_subquery_that_is_not_one_of_the_views() -> None:
    stmt = parse_statement("SELECT id FROM customers")
    sql = f"SELECT id FROM {VIEW.replace('public.customers', 'public.secrets')} AS customers LIMIT 10"
    with pytest.raises(GuardDenied) as denied:
        revalidate(sql, stmt, allowed_functions(POLICIES["analyst"]), 10, views={"p": VIEW})
    assert denied.value.detail["check"] == "relations differ"


@pytest.mark.parametrize("sql", [
    "SELECT c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id",
    "SELECT * FROM customers a, customers b WHERE a.id = b.id",
    "SELECT * FROM ONLY customers",
    "SELECT (SELECT count(*) FROM payments) AS n FROM (SELECT * FROM customers) AS x",
])
def test_rewrites_with_secure_views_are_the_same_as_with_a_full_walk(sql: str) -> None:
    stmt = parse_statement(sql)
    rewrite = enforce(stmt, POLICIES["analyst"], DEMO_CATALOG)
    full = inspect(rewrite.sql, ("public",))
    assert full.relations == set(stmt.analysis.relations)
    assert not full.unpinned


def test_statements_whose_secure_view_was_checked_before_leak_nothing_on_the_database(
    admin_dsn: str, reader_dsn: str
) -> None:
    """The second and third statements reuse the customers view's checked facts; run as the
    read-only role, none of them returns a real e-mail address, and each returns its rows."""
    import psycopg

    with psycopg.connect(admin_dsn) as conn:
        emails = {str(r[0]) for r in conn.execute("SELECT email FROM public.customers").fetchall()}
    assert emails
    statements = [
        "SELECT id, email FROM customers ORDER BY id",
        "SELECT email FROM customers WHERE id < 50 ORDER BY email",
        "SELECT c.email, count(o.id) FROM customers c JOIN orders o ON o.customer_id = c.id "
        "GROUP BY c.email ORDER BY 1",
    ]
    with psycopg.connect(reader_dsn, autocommit=True) as reader:
        for sql in statements * 2:  # the second round: every view already checked
            rewrite = enforce(parse_statement(sql), POLICIES["analyst"], DEMO_CATALOG)
            rows = reader.execute(rewrite.sql).fetchall()
            assert rows, sql
            shown = {str(value) for row in rows for value in row}
            assert not shown & emails, sql
            assert any(value.startswith("***@") for value in shown), sql
