"""Analysis, catalog, masks and enforcement details of the guard as pure functions (plus one DSN)."""

from __future__ import annotations

import pytest
from guard_support import ANALYST, DEMO_CATALOG, DEMO_COLUMNS, PERMISSIVE

from pgwarden.proxy.guard import (
    DEFAULT_ALLOWED_FUNCTIONS,
    Catalog,
    GuardDenied,
    Mask,
    Obligations,
    Reason,
    RowFilter,
    analyse,
    enforce,
    fingerprint,
    parse_statement,
    redact_literals,
    validate_mask,
)
from pgwarden.proxy.guard.pgcheck import parse_tree


@pytest.mark.parametrize(("sql", "field", "expected"), [
    ("SELECT * FROM orders", "relations", ("public.orders",)),
    ("SELECT * FROM orders", "star_relations", ("public.orders",)),
    ("SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id", "columns",
     {"public.customers": ("email", "id"), "public.orders": ("customer_id", "id")}),
    ("WITH orders AS (SELECT * FROM orders) SELECT * FROM orders", "relations", ("public.orders",)),
    ("WITH x AS (SELECT 1) SELECT * FROM x", "relations", ()),
    ("SELECT * FROM pg_class", "relations", ("pg_catalog.pg_class",)),
    ("SELECT * FROM generate_series(1, 2) g", "relations", ()),
    ("SELECT * FROM generate_series(1, 2) g", "functions", ("generate_series",)),
    ("SELECT count(*) FROM orders", "has_aggregate", True),
    ("SELECT rank() OVER (ORDER BY id) FROM orders", "has_window", True),
    ("SELECT * FROM orders WHERE id IN (SELECT order_id FROM payments)", "has_subquery", True),
    ("SELECT * FROM orders", "has_subquery", False),
    ("WITH RECURSIVE r AS (SELECT 1) SELECT * FROM r", "has_recursive_cte", True),
    ("SELECT * FROM orders o, LATERAL (SELECT 1) x", "has_lateral", True),
    ("SELECT 1 UNION SELECT 2 EXCEPT SELECT 3", "set_operations", ("except", "union")),
    ("SELECT 1 UNION SELECT 2", "kind", "union"),
    ("VALUES (1)", "kind", "values"),
    ("SELECT * FROM orders LIMIT 7", "limit", 7),
    ("SELECT * FROM orders LIMIT ALL", "limit", None),
    ("SELECT * FROM orders LIMIT ALL", "has_limit", True),
    ("SELECT row_to_json(c) FROM customers c", "star_relations", ("public.customers",)),
    ("SELECT now(), strpos(name, 'a') FROM tenants", "functions", ("now", "strpos")),
    ("SELECT * FROM orders AS o", "tables_aliased", {"public.orders": ("o",)}),
])
def test_analysis_field(sql: str, field: str, expected: object) -> None:
    assert getattr(analyse(sql), field) == expected


def test_analysis_to_cel_is_plain_data() -> None:
    cel = analyse("SELECT id FROM orders LIMIT 3").to_cel()
    assert cel["relations"] == ["public.orders"] and cel["limit"] == 3 and cel["kind"] == "select"


def test_search_path_with_catalog_picks_the_first_schema_that_has_the_table() -> None:
    stmt = parse_statement("SELECT * FROM employees", search_path=("public", "hr"), catalog=DEMO_CATALOG)
    assert stmt.analysis.relations == ("hr.employees",)
    assert parse_statement("SELECT * FROM employees").analysis.relations == ("public.employees",)


@pytest.mark.parametrize("path", [("pg_temp",), ("$user", "public"), (), ("Public",)])
def test_unsafe_search_paths_are_refused(path: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        parse_statement("SELECT 1", search_path=path)


def test_relation_denial_names_the_relation() -> None:
    with pytest.raises(GuardDenied) as denied:
        enforce(parse_statement("SELECT * FROM secrets"), ANALYST, DEMO_CATALOG)
    assert denied.value.code is Reason.RELATION_NOT_ALLOWED
    assert denied.value.detail == {"relation": "public.secrets"}


def test_extra_functions_extend_the_allow_list() -> None:
    stmt = parse_statement("SELECT pg_backend_pid()")
    with pytest.raises(GuardDenied) as denied:
        enforce(stmt, PERMISSIVE, DEMO_CATALOG)
    assert denied.value.detail == {"function": "pg_backend_pid"}
    extended = Obligations(allowed_relations=PERMISSIVE.allowed_relations,
                           extra_functions=frozenset({"pg_backend_pid"}))
    assert "PG_BACKEND_PID()" in enforce(stmt, extended, DEMO_CATALOG).sql


def test_default_allow_list_has_no_dangerous_names() -> None:
    for name in ("pg_read_file", "dblink", "query_to_xml", "set_config", "current_setting", "pg_sleep",
                 "lo_import", "nextval", "txid_current", "pg_advisory_lock", "xpath", "version"):
        assert name not in DEFAULT_ALLOWED_FUNCTIONS


def test_masked_table_without_catalog_is_denied() -> None:
    stmt = parse_statement("SELECT * FROM customers")
    with pytest.raises(GuardDenied) as denied:
        enforce(stmt, ANALYST, Catalog.from_mapping({}))
    assert denied.value.code is Reason.UNKNOWN_COLUMNS
    assert "public.customers" in denied.value.message


def test_mask_on_a_column_the_catalog_does_not_know_is_denied() -> None:
    obligations = Obligations(allowed_relations=frozenset({"public.tenants"}),
                              masks={"public.tenants": {"nope": Mask("null")}})
    with pytest.raises(GuardDenied) as denied:
        enforce(parse_statement("SELECT 1 FROM tenants"), obligations, DEMO_CATALOG)
    assert denied.value.code is Reason.UNKNOWN_COLUMNS


def test_unmasked_tables_need_no_catalog() -> None:
    assert enforce(parse_statement("SELECT * FROM orders"), Obligations(
        allowed_relations=frozenset({"public.orders"})), Catalog.from_mapping({})).sql == \
        "SELECT * FROM public.orders"


def test_row_filter_values_are_literals_never_sql() -> None:
    hostile = "1' OR '1'='1"
    obligations = Obligations(allowed_relations=frozenset({"public.tenants"}),
                              row_filters={"public.tenants": (RowFilter("name", (hostile, "x\\")),)})
    sql = enforce(parse_statement("SELECT id FROM tenants"), obligations, DEMO_CATALOG).sql
    assert "WHERE name IN ('1'' OR ''1''=''1', 'x\\')" in sql


@pytest.mark.parametrize("mask", [
    Mask("nope"), Mask("partial", (("keep_last", -1),)), Mask("sql", (("expression", "pg_sleep(1)"),)),
    Mask("sql", (("expression", "(SELECT api_key FROM secrets)"),)), Mask("sql", (("expression", "other"),)),
    Mask("sql", (("expression", "value; DROP TABLE x"),)),
])
def test_invalid_masks_are_refused_at_load(mask: Mask) -> None:
    with pytest.raises(ValueError):
        validate_mask(mask, DEFAULT_ALLOWED_FUNCTIONS)


def test_custom_sql_mask_and_typed_null() -> None:
    obligations = Obligations(allowed_relations=frozenset({"public.orders"}), masks={"public.orders": {
        "status": Mask("sql", (("expression", "upper(left(value, 1))"),)), "total": Mask("null")}})
    sql = enforce(parse_statement("SELECT status, total FROM orders"), obligations, DEMO_CATALOG).sql
    assert "(UPPER(LEFT(status, 1))) AS status" in sql
    assert "CAST(NULL AS DECIMAL(12, 2)) AS total" in sql


def test_redaction_and_fingerprint_hide_literals() -> None:
    rewrite = enforce(parse_statement("SELECT * FROM customers WHERE email = 'ada@example.com'"), ANALYST,
                      DEMO_CATALOG)
    other = enforce(parse_statement("SELECT * FROM customers WHERE email = 'bob@example.org'"), ANALYST,
                    DEMO_CATALOG)
    assert "ada@example.com" not in redact_literals(rewrite.sql)
    assert "ada@" not in rewrite.normalized and "@" not in rewrite.normalized
    assert rewrite.fingerprint == other.fingerprint and rewrite.normalized == other.normalized
    assert fingerprint(rewrite.sql) == fingerprint(other.sql)
    assert rewrite.masked_columns == ("public.customers.email", "public.customers.national_id",
                                      "public.customers.phone")
    assert rewrite.row_filters_applied == ("public.customers.tenant_id",)
    assert redact_literals("SELECT 'x'") == "SELECT $1"


def test_statement_tree_is_not_mutated_by_enforce() -> None:
    stmt = parse_statement("SELECT * FROM customers LIMIT ALL")
    before = stmt.tree.sql("postgres")
    enforce(stmt, ANALYST, DEMO_CATALOG)
    assert stmt.tree.sql("postgres") == before


def test_catalog_from_dsn_reads_columns_in_table_order(admin_dsn: str) -> None:
    catalog = Catalog.from_dsn(admin_dsn, schemas=("public", "hr"))
    assert catalog.columns("public.customers") == tuple(DEMO_COLUMNS["public.customers"])
    expected = {**DEMO_COLUMNS["public.orders"], "total": "numeric(12,2)"}
    assert catalog.column_types("public.orders") == expected
    assert "hr.salaries" in set(catalog.relations())
    assert catalog.columns("pg_catalog.pg_class") is None
    catalog.refresh()
    assert catalog.columns("public.nope") is None


@pytest.mark.parametrize("depth", [400, 2000])
def test_deeply_nested_statements_are_denied_as_too_large(depth: int) -> None:
    """Postgres's parse tree nested beyond the JSON decoder's limit: a denial, never a crash."""
    sql = "SELECT " + "abs(" * depth + "1" + ")" * depth
    for check in (parse_tree, parse_statement):
        with pytest.raises(GuardDenied) as denied:
            check(sql)
        assert denied.value.code == Reason.TOO_LARGE
