"""Both protocol generations over both transports, against real server processes."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from server_helpers import LEGACY, MODERN, run, session, stdio_params, text_of

CONSOLE_SCRIPT = str(Path(sys.executable).with_name("pgwarden"))


async def _one_query(client) -> tuple[str, dict]:
    result = await client.call_tool("query", {"sql": "SELECT count(*) AS n FROM public.tenants"})
    assert not result.is_error, text_of(result)
    return client.protocol_version, result.structured_content


@pytest.mark.parametrize(("mode", "version"), [(LEGACY, "2025-11-25"), (MODERN, "2026-07-28")])
def test_stdio_speaks_both_generations(reader_dsn: str, mode: str, version: str) -> None:
    async def go():
        async with session(stdio_params(reader_dsn), mode) as client:
            return await _one_query(client)

    negotiated, content = run(go)
    assert negotiated == version
    assert content["rows"] == [[5]]


@pytest.mark.parametrize(("mode", "version"), [(LEGACY, "2025-11-25"), (MODERN, "2026-07-28")])
def test_http_speaks_both_generations(reader_http, mode: str, version: str) -> None:
    async def go():
        async with session(reader_http.url, mode) as client:
            return await _one_query(client)

    negotiated, content = run(go)
    assert negotiated == version
    assert content["columns"] == [{"name": "n", "type": "bigint"}]


def test_auto_mode_discovers_the_modern_protocol_on_the_console_script(reader_dsn: str) -> None:
    async def go():
        params = stdio_params(reader_dsn, "server", command=CONSOLE_SCRIPT)
        async with session(params, "auto") as client:
            return await _one_query(client)

    negotiated, content = run(go)
    assert negotiated == "2026-07-28"
    assert content["rows"] == [[5]]


def test_low_level_session_over_http_with_explicit_client(reader_http) -> None:
    async def go():
        async with (httpx2.AsyncClient(timeout=30) as http,
                    streamable_http_client(reader_http.url, http_client=http) as (read, write),
                    ClientSession(read, write) as client):
            init = await client.initialize()
            tools = await client.list_tools()
            result = await client.call_tool("query", {"sql": "SELECT 'ok' AS status"})
            return init, tools, result

    init, tools, result = run(go)
    assert init.server_info.name == "pgwarden-server"
    assert {t.name for t in tools.tools} == {"query", "list_tables", "describe_table", "explain_query"}
    assert result.structured_content["rows"] == [["ok"]]


def test_http_refuses_a_foreign_host_header(reader_http) -> None:
    """DNS-rebinding protection: a browser tricked into calling the loopback port is refused."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Host": "evil.example", "Accept": "application/json, text/event-stream"}
    response = httpx2.post(reader_http.url, json=body, headers=headers, timeout=10)
    assert response.status_code in (400, 403, 421)
    assert "pgwarden" not in response.text
