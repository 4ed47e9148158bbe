"""The proxy end to end with its real gate (guard + policy + audit), over real stdio pipes and
real HTTP, for both protocol generations on the client side, in front of pgwarden's server and
the reference server-postgres. Security checks look at the data: the real secret values are
read with the admin DSN and must not appear in anything the client receives."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from mcp import Client
from proxy_helpers import (
    ANALYST,
    NOBODY,
    PGWARDEN,
    POLICY,
    SUPPORT,
    db_values,
    free_port,
    has_node,
    http_process,
    pgwarden_server_command,
    proxy_args,
    reference_command,
    result_text,
    rows,
    stdio_params,
)

pytestmark = pytest.mark.anyio

UPSTREAMS = [
    pytest.param("pgwarden", id="pgwarden"),
    pytest.param(
        "reference",
        id="reference",
        marks=[pytest.mark.node, pytest.mark.skipif(not has_node(), reason="needs node and tests/node")],
    ),
]
MODES = ["legacy", "2026-07-28"]


def upstream_command(kind: str, dsn: str) -> list[str]:
    return pgwarden_server_command(dsn) if kind == "pgwarden" else reference_command(dsn)


@asynccontextmanager
async def proxied(
    kind: str,
    transport: str,
    mode: str,
    principal: dict[str, Any],
    *,
    upstream_dsn: str,
    catalog_dsn: str,
    tmp_path: Path,
) -> AsyncIterator[Client]:
    audit = tmp_path / "audit.jsonl"
    args = proxy_args(upstream_command(kind, upstream_dsn), principal, audit=audit, catalog_dsn=catalog_dsn)
    if transport == "stdio":
        async with Client(stdio_params(args), mode=mode) as client:
            yield client
        return
    port = free_port()
    http_args = [PGWARDEN, *args[:1], "--listen", f"http://127.0.0.1:{port}/mcp", *args[1:]]
    with http_process(http_args, port=port, log=tmp_path / "proxy.log") as url:
        async with Client(url, mode=mode) as client:
            yield client


def audit_records(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("kind", UPSTREAMS)
async def test_analyst_sees_allowed_rows_masked_capped_and_nothing_denied(
    kind: str, transport: str, mode: str, reader_dsn: str, admin_dsn: str, tmp_path: Path
) -> None:
    async with proxied(
        kind, transport, mode, ANALYST, upstream_dsn=reader_dsn, catalog_dsn=reader_dsn, tmp_path=tmp_path
    ) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert "query" in tools

        # allowed: the same rows as the database gives
        sql = "SELECT id, name, price FROM products ORDER BY id LIMIT 5"
        got = [
            [str(r[k]) for k in ("id", "name", "price")]
            for r in rows(await client.call_tool("query", {"sql": sql}))
        ]
        with psycopg.connect(admin_dsn) as conn:
            want = [[str(v) for v in row] for row in conn.execute(sql).fetchall()]
        assert got == want

        # masked: no real e-mail or national id leaves, even renamed
        for sql in (
            "SELECT id, email, national_id, phone FROM customers ORDER BY id LIMIT 30",
            "SELECT email AS contact, national_id AS nid FROM customers ORDER BY id LIMIT 30",
        ):
            result = await client.call_tool("query", {"sql": sql})
            text = result_text(result)
            assert not result.is_error, text
            secrets = db_values(admin_dsn, "SELECT email, national_id FROM customers ORDER BY id LIMIT 30")
            assert secrets and not [s for s in secrets if s in text]
            assert "***@" in text

        # partially masked: the last four digits only
        result = await client.call_tool(
            "query", {"sql": "SELECT id, card_number FROM payments ORDER BY id LIMIT 10"}
        )
        cards = db_values(admin_dsn, "SELECT card_number FROM payments ORDER BY id LIMIT 10")
        text = result_text(result)
        assert not [c for c in cards if c in text]
        assert [r["card_number"][-4:] for r in rows(result)] == [c[-4:] for c in cards]

        # denied: secrets and HR never come back, the model is told why
        for sql in (
            "SELECT * FROM secrets",
            "SELECT s.salary FROM hr.salaries s",
            "SELECT api_key FROM public.secrets UNION SELECT email FROM customers",
        ):
            result = await client.call_tool("query", {"sql": sql})
            assert result.is_error
            text = result_text(result)
            assert "pgwarden denied" in text
            assert not [k for k in db_values(admin_dsn, "SELECT api_key FROM secrets") if k in text]

        # capped: at most 50 rows, and the result says it was cut
        result = await client.call_tool("query", {"sql": "SELECT id FROM orders ORDER BY id"})
        assert len(rows(result)) == 50
        assert "row cap" in result_text(result)

    records = audit_records(tmp_path)
    assert [r for r in records if r.get("decision") == "deny" and r.get("tool") == "query"]
    assert not [r for r in records if "sk_live" in json.dumps(r)]


@pytest.mark.parametrize("kind", UPSTREAMS)
async def test_support_sees_only_its_tenant(
    kind: str, reader_dsn: str, admin_dsn: str, tmp_path: Path
) -> None:
    async with proxied(
        kind, "stdio", "legacy", SUPPORT, upstream_dsn=reader_dsn, catalog_dsn=reader_dsn, tmp_path=tmp_path
    ) as client:
        got = rows(await client.call_tool("query", {"sql": "SELECT DISTINCT tenant_id FROM customers"}))
        assert [str(r["tenant_id"]) for r in got] == ["2"]
        count = rows(await client.call_tool("query", {"sql": "SELECT count(*) AS n FROM orders"}))
        with psycopg.connect(admin_dsn) as conn:
            row = conn.execute("SELECT count(*) FROM orders WHERE tenant_id = 2").fetchone()
        assert row is not None and str(count[0]["n"]) == str(row[0])
        result = await client.call_tool("query", {"sql": "SELECT email FROM customers ORDER BY id"})
        others = db_values(admin_dsn, "SELECT email FROM customers WHERE tenant_id <> 2")
        text = result_text(result)
        assert not [e for e in others if e in text]
        assert len(rows(result)) == 10  # the support row cap
        # payments are not granted to support at all
        assert (await client.call_tool("query", {"sql": "SELECT * FROM payments"})).is_error


@pytest.mark.parametrize("kind", UPSTREAMS)
async def test_lists_are_filtered_per_principal(kind: str, reader_dsn: str, tmp_path: Path) -> None:
    async with proxied(
        kind, "stdio", "legacy", ANALYST, upstream_dsn=reader_dsn, catalog_dsn=reader_dsn, tmp_path=tmp_path
    ) as client:
        uris = [str(r.uri) for r in (await client.list_resources()).resources]
        assert any(u.endswith("/products/schema") for u in uris)
        assert not [u for u in uris if "secrets" in u or "salaries" in u or "employees" in u]
        secret_uri = next((u for u in uris if u.endswith("/products/schema")), "").replace(
            "products", "secrets"
        )
        with pytest.raises(Exception, match="not allowed"):
            await client.read_resource(secret_uri)
        if kind == "pgwarden":
            listed = await client.call_tool("list_tables", {})
            assert "secrets" not in result_text(listed) and "products" in result_text(listed)
            assert (await client.call_tool("describe_table", {"table": "hr.salaries"})).is_error
    async with proxied(
        kind, "stdio", "legacy", NOBODY, upstream_dsn=reader_dsn, catalog_dsn=reader_dsn, tmp_path=tmp_path
    ) as client:
        assert (await client.list_tools()).tools == []
        assert (await client.list_resources()).resources == []
        assert (await client.call_tool("query", {"sql": "SELECT 1"})).is_error


@pytest.mark.node
@pytest.mark.skipif(not has_node(), reason="needs node and tests/node")
async def test_reference_server_write_bypass_is_blocked(
    admin_dsn: str, reader_dsn: str, tmp_path: Path
) -> None:
    """server-postgres runs `COMMIT; INSERT …` outside its read-only transaction; through the proxy
    (even with the ADMIN DSN upstream) it is refused and the data stays as it was."""
    check = (
        "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM secrets), "
        "(SELECT sum(length(name)) FROM tenants)"
    )
    with psycopg.connect(admin_dsn) as conn:
        before = conn.execute(check).fetchone()
    attacks = [
        "COMMIT; INSERT INTO public.tenants VALUES (999, 'pwned', 'free', now())",
        "COMMIT; DELETE FROM public.secrets",
        "COMMIT; UPDATE public.tenants SET name = 'pwned'",
        "WITH d AS (DELETE FROM public.secrets RETURNING *) SELECT count(*) FROM d",
        "SELECT 1; COMMIT; DROP TABLE public.secrets",
    ]
    async with proxied(
        "reference",
        "stdio",
        "legacy",
        ANALYST,
        upstream_dsn=admin_dsn,
        catalog_dsn=reader_dsn,
        tmp_path=tmp_path,
    ) as client:
        for sql in attacks:
            result = await client.call_tool("query", {"sql": sql})
            assert result.is_error, sql
            assert "pgwarden denied" in result_text(result)
    with psycopg.connect(admin_dsn) as conn:
        assert conn.execute(check).fetchone() == before


def test_policy_file_is_the_one_the_tests_expect() -> None:
    assert POLICY.exists()
