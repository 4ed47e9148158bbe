"""Every tool over a real HTTP session, checked against what Postgres itself says."""

from __future__ import annotations

import psycopg
import pytest
from server_helpers import call_tool, query, run, session, text_of


def test_tools_are_read_only_and_described(reader_http) -> None:
    async def go():
        async with session(reader_http.url) as client:
            return (await client.list_tools()).tools

    tools = {t.name: t for t in run(go)}
    assert set(tools) == {"query", "list_tables", "describe_table", "explain_query"}
    for tool in tools.values():
        assert tool.annotations.read_only_hint is True
        assert tool.annotations.destructive_hint is False
        assert tool.description and len(tool.description) > 40
        for prop in tool.input_schema.get("properties", {}).values():
            assert prop["description"]
    assert tools["query"].input_schema["required"] == ["sql"]
    assert tools["query"].input_schema["properties"]["max_rows"]["maximum"] == 1000
    assert set(tools["query"].output_schema["required"]) == {"columns", "rows", "row_count", "truncated"}


def test_query_returns_the_rows_postgres_returns(reader_http, admin_dsn: str) -> None:
    sql = "SELECT id, name, plan FROM public.tenants ORDER BY id"
    result = query(reader_http.url, sql)
    assert not result.is_error
    with psycopg.connect(admin_dsn) as conn:
        expected = [list(r) for r in conn.execute(sql).fetchall()]
    content = result.structured_content
    assert content["rows"] == expected
    assert content["row_count"] == len(expected)
    assert content["truncated"] is False
    assert content["columns"] == [{"name": "id", "type": "integer"}, {"name": "name", "type": "text"},
                                  {"name": "plan", "type": "text"}]
    text = text_of(result)
    assert "| id | name | plan |" in text
    assert expected[0][1] in text and "(5 rows)" in text


# (SQL expression, type name, JSON value expected in structuredContent)
VALUES = [
    ("1.10::numeric", "numeric", "1.10"),
    ("123456789012345678901234567890.000000000000000001::numeric", "numeric",
     "123456789012345678901234567890.000000000000000001"),
    ("'NaN'::numeric", "numeric", "NaN"),
    ("9007199254740993::bigint", "bigint", 9007199254740993),
    ("0.1::float8", "double precision", 0.1),
    ("'NaN'::float8", "double precision", "NaN"),
    ("'-Infinity'::float8", "double precision", "-Infinity"),
    ("true", "boolean", True),
    ("NULL::int", "integer", None),
    ("timestamptz '2024-03-01 12:34:56.789+02'", "timestamp with time zone", "2024-03-01T10:34:56.789+00:00"),
    ("timestamp '2024-03-01 12:34:56'", "timestamp without time zone", "2024-03-01T12:34:56"),
    ("'infinity'::timestamptz", "timestamp with time zone", "infinity"),
    ("date '2024-02-29'", "date", "2024-02-29"),
    ("'0044-03-15 BC'::date", "date", "0044-03-15 BC"),
    ("time '23:59:59.5'", "time without time zone", "23:59:59.5"),
    ("'12:00+05:30'::timetz", "time with time zone", "12:00:00+05:30"),
    ("interval '1 year 2 months 3 days 04:05:06'", "interval", "P1Y2M3DT4H5M6S"),
    ("'\\x00ff10'::bytea", "bytea", "\\x00ff10"),
    ("'{\"a\": [1, 2.5, null], \"b\": \"x\"}'::jsonb", "jsonb", {"a": [1, 2.5, None], "b": "x"}),
    ("'\"just a string\"'::json", "json", "just a string"),
    ("ARRAY[1.50, 2]::numeric[]", "numeric[]", ["1.50", "2"]),
    ("ARRAY[timestamptz '2024-01-01 00:00+00', NULL]", "timestamp with time zone[]",
     ["2024-01-01T00:00:00+00:00", None]),
    ("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("'192.168.0.1/24'::inet", "inet", "192.168.0.1/24"),
    ("'[1,5)'::int4range", "int4range", "[1,5)"),
    ("'ünïcödé | pipe'::text", "text", "ünïcödé | pipe"),
]


@pytest.mark.parametrize(("expression", "type_name", "expected"), VALUES, ids=[v[0][:40] for v in VALUES])
def test_values_are_serialized_faithfully(reader_http, expression: str, type_name: str, expected) -> None:
    result = query(reader_http.url, f"SELECT {expression} AS v")
    assert not result.is_error, text_of(result)
    assert result.structured_content["columns"] == [{"name": "v", "type": type_name}]
    assert result.structured_content["rows"] == [[expected]]


def test_numeric_values_match_postgres_text_exactly(reader_http, admin_dsn: str) -> None:
    sql = "SELECT total FROM public.orders ORDER BY id LIMIT 50"
    result = query(reader_http.url, sql)
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute("SELECT total::text FROM public.orders ORDER BY id LIMIT 50").fetchall()
    expected = [[r[0]] for r in rows]
    assert result.structured_content["rows"] == expected


def test_percent_signs_and_comments_reach_postgres_untouched(reader_http) -> None:
    result = query(reader_http.url, "SELECT 'a%b%%c' AS v -- trailing comment")
    assert result.structured_content["rows"] == [["a%b%%c"]]


def test_max_rows_caps_and_marks_truncation(reader_http) -> None:
    result = query(reader_http.url, "SELECT id FROM public.orders ORDER BY id", max_rows=7)
    content = result.structured_content
    assert content["rows"] == [[i] for i in range(1, 8)]
    assert content["row_count"] == 7 and content["truncated"] is True
    assert "truncated" in text_of(result)


def test_exactly_the_cap_is_not_truncated(reader_http) -> None:
    result = query(reader_http.url, "SELECT g FROM generate_series(1, 7) g", max_rows=7)
    assert result.structured_content["row_count"] == 7
    assert result.structured_content["truncated"] is False


def test_max_rows_above_the_server_cap_is_clamped(reader_http) -> None:
    result = query(reader_http.url, "SELECT id FROM public.orders", max_rows=1_000_000)
    assert result.structured_content["row_count"] == 1000
    assert result.structured_content["truncated"] is True


@pytest.mark.parametrize(("arguments", "message"), [
    ({}, "missing required argument 'sql'"),
    ({"sql": 42}, "must be a string"),
    ({"sql": "SELECT 1", "max_rows": "ten"}, "positive integer"),
    ({"sql": "SELECT 1", "max_rows": 0}, "positive integer"),
    ({"sql": "SELECT 1", "limit": 3}, "unknown argument"),
])
def test_bad_query_arguments_are_tool_errors(reader_http, arguments, message: str) -> None:
    result = call_tool(reader_http.url, "query", arguments)
    assert result.is_error
    assert message in text_of(result)


@pytest.mark.parametrize(("sql", "sqlstate", "message"), [
    ("SELECT 1/(id - id) FROM public.orders", "22012", "division by zero"),
    ("SELECT * FROM public.no_such_table", "42P01", 'relation "public.no_such_table" does not exist'),
    ("SELECT nope FROM public.orders", "42703", 'column "nope" does not exist'),
])
def test_postgres_errors_come_back_with_sqlstate(reader_http, sql: str, sqlstate: str, message: str) -> None:
    result = query(reader_http.url, sql)
    assert result.is_error
    text = text_of(result)
    assert text.startswith(f"ERROR {sqlstate}: ")
    assert message in text
    assert "Traceback" not in text and "psycopg" not in text


def test_unknown_tool_is_a_tool_error(reader_http) -> None:
    result = call_tool(reader_http.url, "drop_everything", {})
    assert result.is_error and "unknown tool" in text_of(result)


def test_list_tables_lists_every_readable_table_with_estimates(reader_http, admin_dsn: str) -> None:
    result = call_tool(reader_http.url, "list_tables", {})
    tables = {f"{t['schema']}.{t['name']}": t for t in result.structured_content["tables"]}
    with psycopg.connect(admin_dsn) as conn:
        expected = dict(conn.execute(
            "SELECT n.nspname || '.' || c.relname, c.reltuples::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
            "AND n.nspname IN ('public', 'hr') AND has_table_privilege('pgwarden_reader', c.oid, 'SELECT')"
        ).fetchall())
    assert set(tables) == set(expected)
    assert len(tables) == 10
    assert "public._pgwarden_demo" not in tables  # created after the reader's grants: not readable
    for name, estimate in expected.items():
        assert tables[name]["row_estimate"] == estimate
        assert tables[name]["kind"] == "table"
    assert tables["public.secrets"]["comment"] == "Third-party API keys per tenant. Never expose."
    assert "public.orders" in text_of(result)


def test_list_tables_filters_by_schema(reader_http) -> None:
    result = call_tool(reader_http.url, "list_tables", {"schema": "hr"})
    assert [t["name"] for t in result.structured_content["tables"]] == ["employees", "salaries"]


def test_describe_table_matches_the_catalog(reader_http, admin_dsn: str) -> None:
    result = call_tool(reader_http.url, "describe_table", {"table": "customers"})
    assert not result.is_error, text_of(result)
    doc = result.structured_content
    with psycopg.connect(admin_dsn) as conn:
        columns = conn.execute(
            "SELECT column_name, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'customers' ORDER BY ordinal_position").fetchall()
    assert [(c["name"], c["nullable"]) for c in doc["columns"]] == [tuple(c) for c in columns]
    assert (doc["schema"], doc["table"], doc["kind"]) == ("public", "customers", "table")
    assert doc["primary_key"] == ["id"]
    tenants = {"schema": "public", "table": "tenants", "columns": ["id"]}
    assert doc["foreign_keys"] == [{"name": "customers_tenant_id_fkey", "columns": ["tenant_id"],
                                    "references": tenants}]
    national_id = next(c for c in doc["columns"] if c["name"] == "national_id")
    assert national_id["comment"] == "SSN-like national identifier (PII)."
    assert {i["name"] for i in doc["indexes"]} == {"customers_pkey", "customers_tenant_idx"}
    assert doc["row_estimate"] == 500


def test_describe_table_composite_key_defaults_and_types(reader_http) -> None:
    salaries = call_tool(reader_http.url, "describe_table", {"table": "hr.salaries"}).structured_content
    assert salaries["primary_key"] == ["employee_id", "effective_from"]
    products = call_tool(reader_http.url, "describe_table", {"table": "public.products"}).structured_content
    attributes = next(c for c in products["columns"] if c["name"] == "attributes")
    assert attributes["default"] == "'{}'::jsonb"
    price = next(c for c in products["columns"] if c["name"] == "price")
    assert price["type"] == "numeric(10,2)" and price["nullable"] is False


@pytest.mark.parametrize("table", ["no_such_table", "public.nope", "a.b.c", "'; DROP TABLE x; --"])
def test_describe_unknown_table_is_a_tool_error(reader_http, table: str) -> None:
    result = call_tool(reader_http.url, "describe_table", {"table": table})
    assert result.is_error
    assert "Traceback" not in text_of(result)


def test_explain_query_plans_without_executing(reader_http) -> None:
    # Executing this divides by zero; planning it does not.
    sql = "SELECT 1/(id - id) FROM public.orders WHERE customer_id = 5"
    assert query(reader_http.url, sql).is_error
    result = call_tool(reader_http.url, "explain_query", {"sql": sql})
    assert not result.is_error, text_of(result)
    plan = result.structured_content["plan"]
    assert isinstance(plan, list) and "Plan" in plan[0]
    assert "Actual Rows" not in str(plan)  # no ANALYZE
    assert "orders" in text_of(result) and "cost=" in text_of(result)


@pytest.mark.parametrize("sql", [
    "DELETE FROM public.secrets",
    "EXPLAIN ANALYZE SELECT 1",
    "SELECT 1; SELECT 2",
    "SELECT 1) ; DELETE FROM public.secrets; SELECT (1",
    "SELECT * FROM public.secrets FOR UPDATE",
])
def test_explain_query_refuses_what_query_refuses(reader_http, sql: str) -> None:
    result = call_tool(reader_http.url, "explain_query", {"sql": sql})
    assert result.is_error
