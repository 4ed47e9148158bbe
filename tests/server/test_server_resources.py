"""Table-schema resources, their template and the schema overview."""

from __future__ import annotations

import json

import pytest
from mcp import MCPError
from server_helpers import MODERN, call_tool, run, session

DB = "pgwarden_demo"
DEMO_TABLES = ["hr.employees", "hr.salaries", "public.customers", "public.order_items", "public.orders",
               "public.payments", "public.products", "public.secrets", "public.support_tickets",
               "public.tenants"]


def _list(url: str, mode: str = "legacy"):
    async def go():
        async with session(url, mode) as client:
            return (await client.list_resources()).resources, (await client.list_resource_templates())
    return run(go)


def _read(url: str, uri: str, mode: str = "legacy"):
    async def go():
        async with session(url, mode) as client:
            try:
                return await client.read_resource(uri)
            except MCPError as exc:  # raised out of the session it would come in an ExceptionGroup
                return exc
    return run(go)


@pytest.mark.parametrize("mode", ["legacy", MODERN])
def test_one_resource_per_readable_table_plus_overview(reader_http, mode: str) -> None:
    resources, templates = _list(reader_http.url, mode)
    uris = [str(r.uri) for r in resources]
    assert uris[0] == f"postgres://{DB}/schemas"
    expected = [f"postgres://{DB}/{t.replace('.', '/')}/schema" for t in DEMO_TABLES]
    assert uris[1:] == expected
    assert all(r.mime_type == "application/json" for r in resources)
    secrets = next(r for r in resources if r.name == "public.secrets")
    assert "Never expose" in secrets.description
    [template] = templates.resource_templates
    assert template.uri_template == f"postgres://{DB}/{{schema}}/{{table}}/schema"


@pytest.mark.parametrize("table", DEMO_TABLES)
def test_table_resource_equals_describe_table(reader_http, table: str) -> None:
    schema, name = table.split(".")
    uri = f"postgres://{DB}/{schema}/{name}/schema"
    result = _read(reader_http.url, uri)
    [contents] = result.contents
    assert str(contents.uri) == uri and contents.mime_type == "application/json"
    document = json.loads(contents.text)
    assert set(document) >= {"columns", "primary_key", "foreign_keys", "indexes", "row_estimate"}
    for column in document["columns"]:
        assert set(column) == {"name", "type", "nullable", "default", "comment"}
    described = call_tool(reader_http.url, "describe_table", {"table": table}).structured_content
    assert document == described


def test_foreign_keys_in_the_resource(reader_http) -> None:
    document = json.loads(_read(reader_http.url, f"postgres://{DB}/public/order_items/schema").contents[0].text)
    references = {fk["columns"][0]: fk["references"] for fk in document["foreign_keys"]}
    assert references == {"order_id": {"schema": "public", "table": "orders", "columns": ["id"]},
                          "product_id": {"schema": "public", "table": "products", "columns": ["id"]}}


def test_overview_lists_schemas_and_their_tables(reader_http) -> None:
    overview = json.loads(_read(reader_http.url, f"postgres://{DB}/schemas", MODERN).contents[0].text)
    assert overview["database"] == DB
    schemas = {s["name"]: s for s in overview["schemas"]}
    assert set(schemas) == {"hr", "public"}
    assert [t["name"] for t in schemas["hr"]["tables"]] == ["employees", "salaries"]
    assert schemas["hr"]["tables"][0]["uri"] == f"postgres://{DB}/hr/employees/schema"


@pytest.mark.parametrize("uri", [
    f"postgres://{DB}/public/no_such_table/schema",
    f"postgres://{DB}/public/_pgwarden_demo/schema",  # exists, but the reader cannot read it
    "postgres://other_db/public/orders/schema",
    f"postgres://{DB}/public/orders",
    "file:///etc/passwd",
])
def test_unknown_resources_are_not_found(reader_http, uri: str) -> None:
    error = _read(reader_http.url, uri)
    assert isinstance(error, MCPError)
    assert error.code == -32002
