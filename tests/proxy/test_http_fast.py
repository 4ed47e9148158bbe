"""The HTTP front on its fast settings — uvloop event loop, httptools parser — in both answer
modes (SSE streams, the default; JSON bodies, `PGWARDEN_HTTP_RESPONSES=json`), over real HTTP on
loopback with real MCP client sessions:

- the proxy as shipped (`run_proxy` with the shipped policies, API keys, pgwarden's server and
  the demo database): credentials, Host and Origin refusals, sessions bound to their credential,
  and rows that match what the database holds for each principal;
- the relay with a test gate in front of a test upstream: what each mode carries while a call
  is in flight (progress, sampling) and what it carries outside calls (upstream log messages).

This file also runs itself as those processes (`python test_http_fast.py proxy|relay|upstream`).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psycopg
import pytest
import yaml
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from proxy_helpers import TEST_UPSTREAM, child_env, free_port, stop_process, wait_for_port
from proxy_helpers import rpc_answer as _answer

from pgwarden.proxy.auth.api_keys import hash_api_key
from pgwarden.proxy.relay.serve import (
    HTTP_RESPONSES_ENV,
    http_responses,
    loop_options,
    uvicorn_config,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()
PGWARDEN = str(Path(sys.executable).parent / "pgwarden")
MODES = ["sse", "json"]
BOB_KEY = "pgw_bob-fast-0123456789abcdefghijklmnopqrstuvwx"  # tenant 2, tenant-agent
CAROL_KEY = "pgw_carol-fast-0123456789abcdefghijklmnopqrstu"  # analyst, every tenant
CONSOLE_ORIGIN = "http://localhost:5173"
SAME_QUERY = "SELECT tenant_id, count(*) AS n FROM orders GROUP BY tenant_id ORDER BY tenant_id"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PROTOCOL = "2025-06-18"
LOOP_LINE = "event loop: "


# -- the processes this file runs ------------------------------------------------------------------


async def _report_loop_then(main: Any) -> None:
    print(LOOP_LINE + type(asyncio.get_running_loop()).__module__, file=sys.stderr, flush=True)
    await main()


def _run_proxy(config_path: str) -> None:
    """The shipped composition (`pgwarden proxy --config`), on the loop `loop_options` picks."""
    from pgwarden.proxy.cli import run_proxy
    from pgwarden.proxy.config import load_config, read_config_file

    config = load_config(read_config_file(Path(config_path)), source=config_path)
    anyio.run(_report_loop_then, lambda: run_proxy(config), backend_options=loop_options("http"))


def _run_relay(port: int, responses: str, upstream: list[str]) -> None:
    """The relay with the allow-all test gate, no authentication (the SDK checks Host/Origin)."""
    from gates import AllowAllGate

    from pgwarden.proxy.relay.serve import serve_http
    from pgwarden.proxy.relay.upstream import UpstreamSpec

    spec = UpstreamSpec(command=tuple(upstream), protocol="legacy", restart_initial_s=0.1)

    async def main() -> None:
        await serve_http(
            spec,
            AllowAllGate(),  # type: ignore[arg-type]
            lambda _ctx: {"id": "test"},
            port=port,
            responses=http_responses(responses),
        )

    anyio.run(_report_loop_then, main, backend_options=loop_options("http"))


def _run_logging_upstream() -> None:
    """An upstream whose `note` tool sends a log message to the client before it answers."""
    server = MCPServer("logging-upstream")

    @server.tool()
    async def note(text: str, ctx: Context) -> str:
        """Log `text` to the client, then return it."""
        await ctx.info(text)
        return text

    server.run()


# -- process management ----------------------------------------------------------------------------


@dataclass
class Running:
    url: str
    log: Path

    def loop_module(self) -> str:
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith(LOOP_LINE):
                return line.removeprefix(LOOP_LINE)
        return ""


def _env() -> dict[str, str]:
    return {k: v for k, v in child_env().items() if k != HTTP_RESPONSES_ENV}


@contextmanager
def _started(args: list[str], *, port: int, log: Path, env: dict[str, str]) -> Iterator[Running]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_port(port, process, log, timeout=60)
            yield Running(f"http://127.0.0.1:{port}/mcp", log)
        finally:
            stop_process(process)


@pytest.fixture(scope="module", params=MODES)
def proxy(
    request: pytest.FixtureRequest, reader_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Running]]:
    """`pgwarden proxy` over HTTP with API keys; JSON answers chosen by the environment variable."""
    mode: str = request.param
    work = tmp_path_factory.mktemp(f"fast-proxy-{mode}")
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    config = {
        "upstream": {"command": [PGWARDEN, "server", "--dsn", reader_dsn]},
        "policy": [str(ROOT / "policies" / "tenant_isolated.yaml"), str(ROOT / "policies" / "analyst.yaml")],
        "catalog_dsn": reader_dsn,
        "listen": url,
        "audit": {"path": str(work / "audit.jsonl")},
        "auth": {
            "resource": url,
            "origins": {"allowed_origins": [CONSOLE_ORIGIN]},
            "api_keys": [
                {
                    "name": "bob",
                    "hash": hash_api_key(BOB_KEY),
                    "principal": {"id": "bob", "roles": ["tenant-agent"], "tenant": 2},
                },
                {
                    "name": "carol",
                    "hash": hash_api_key(CAROL_KEY),
                    "principal": {"id": "carol", "roles": ["analyst"]},
                },
            ],
        },
    }
    config_path = work / "pgwarden.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = _env()
    if mode == "json":
        env[HTTP_RESPONSES_ENV] = "json"
    args = [sys.executable, str(THIS), "proxy", str(config_path)]
    with _started(args, port=port, log=work / "proxy.log", env=env) as running:
        yield mode, running


@pytest.fixture(scope="module", params=MODES)
def relay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Running]]:
    """The relay (test gate, no auth) in front of the relay tests' upstream."""
    mode: str = request.param
    work = tmp_path_factory.mktemp(f"fast-relay-{mode}")
    port = free_port()
    args = [sys.executable, str(THIS), "relay", str(port), mode, "--", sys.executable, str(TEST_UPSTREAM)]
    with _started(args, port=port, log=work / "relay.log", env=_env()) as running:
        yield mode, running


@pytest.fixture(scope="module", params=MODES)
def logging_relay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Running]]:
    """The relay in front of an upstream that logs to the client (this file's `upstream`)."""
    mode: str = request.param
    work = tmp_path_factory.mktemp(f"fast-logging-{mode}")
    port = free_port()
    args = [sys.executable, str(THIS), "relay", str(port), mode, "--", sys.executable, str(THIS), "upstream"]
    with _started(args, port=port, log=work / "relay.log", env=_env()) as running:
        yield mode, running


# -- raw HTTP helpers (what any client sends) ------------------------------------------------------


def _message(method: str, params: dict[str, Any] | None = None, id_: int | None = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if id_ is not None:
        message["id"] = id_
    return message


INITIALIZE = _message(
    "initialize",
    {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "fast-test", "version": "0"}},
)


async def _open_session(http: httpx2.AsyncClient, url: str, key: str) -> str:
    response = await http.post(url, json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    assert "result" in _answer(response)
    session = response.headers["mcp-session-id"]
    ack = await http.post(
        url,
        json=_message("notifications/initialized", id_=None),
        headers=_session_headers(key, session),
    )
    assert ack.status_code == 202
    return session


def _session_headers(key: str, session: str) -> dict[str, str]:
    return {
        **ACCEPT,
        "Authorization": f"Bearer {key}",
        "mcp-session-id": session,
        "mcp-protocol-version": PROTOCOL,
    }


def _rows(answer: dict[str, Any]) -> list[tuple[int, int]]:
    result = answer["result"]
    assert not result.get("isError"), result
    structured = result.get("structuredContent") or json.loads(result["content"][0]["text"])
    out = []
    for row in structured["rows"]:
        tenant, n = (row["tenant_id"], row["n"]) if isinstance(row, dict) else (row[0], row[1])
        out.append((int(tenant), int(n)))
    return out


def _database_counts(admin_dsn: str) -> dict[int, int]:
    with psycopg.connect(admin_dsn) as conn:
        return dict(
            conn.execute("SELECT tenant_id, count(*) FROM public.orders GROUP BY tenant_id").fetchall()
        )


# -- unit: the settings themselves -----------------------------------------------------------------


def test_answers_are_sse_unless_json_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HTTP_RESPONSES_ENV, raising=False)
    assert http_responses() == "sse"
    monkeypatch.setenv(HTTP_RESPONSES_ENV, " JSON ")
    assert http_responses() == "json"
    assert http_responses("sse") == "sse"  # an explicit choice wins over the environment
    monkeypatch.setenv(HTTP_RESPONSES_ENV, "")
    assert http_responses() == "sse"


@pytest.mark.parametrize("value", ["ndjson", "true", "1", "stream"])
def test_an_unknown_answer_mode_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HTTP_RESPONSES_ENV, value)
    with pytest.raises(ValueError, match="sse or json"):
        http_responses()


def test_uvicorn_parses_with_httptools_and_logs_no_access_lines() -> None:
    pytest.importorskip("httptools")
    config = uvicorn_config(lambda *_: None, host="127.0.0.1", port=0)  # type: ignore[arg-type]
    config.load()
    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"
    assert config.access_log is False and config.server_header is False


def test_uvloop_only_for_the_http_front() -> None:
    pytest.importorskip("uvloop")
    assert loop_options("http") == {"use_uvloop": True}
    assert loop_options("stdio") == {}


# -- the proxy as shipped, on uvloop + httptools, both answer modes --------------------------------


async def test_the_proxy_runs_on_uvloop(proxy: tuple[str, Running]) -> None:
    pytest.importorskip("uvloop")
    _, running = proxy
    assert running.loop_module().startswith("uvloop"), running.log.read_text()[-2000:]


async def test_each_principal_gets_its_own_rows(proxy: tuple[str, Running], admin_dsn: str) -> None:
    mode, running = proxy
    truth = _database_counts(admin_dsn)
    assert len(truth) >= 3
    call = _message("tools/call", {"name": "query", "arguments": {"sql": SAME_QUERY}}, id_=2)
    async with httpx2.AsyncClient(timeout=30) as http:
        seen = {}
        for name, key in (("bob", BOB_KEY), ("carol", CAROL_KEY)):
            session = await _open_session(http, running.url, key)
            response = await http.post(running.url, json=call, headers=_session_headers(key, session))
            assert response.status_code == 200
            expected = "application/json" if mode == "json" else "text/event-stream"
            assert response.headers["content-type"].startswith(expected)
            seen[name] = _rows(_answer(response))
    assert seen["bob"] == [(2, truth[2])]  # tenant 2 only, counted by Postgres itself
    assert seen["carol"] == sorted(truth.items())


async def test_the_mcp_client_works_in_both_modes(proxy: tuple[str, Running], admin_dsn: str) -> None:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    _, running = proxy
    truth = _database_counts(admin_dsn)
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {BOB_KEY}"}, timeout=30) as http,
        Client(streamable_http_client(running.url, http_client=http), mode="legacy") as client,  # type: ignore[arg-type]
    ):
        for _ in range(3):  # several calls on one session (and, in JSON mode, one connection)
            result = await client.call_tool("query", {"sql": SAME_QUERY})
            answer = {"result": result.model_dump(by_alias=True, mode="json", exclude_none=True)}
            assert _rows(answer) == [(2, truth[2])]
        secret = await client.call_tool("query", {"sql": "SELECT * FROM secrets"})
        assert secret.is_error


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),  # no credential
        ({"Authorization": "Bearer pgw_not-a-key-0123456789abcdefghijklmnopqr"}, 401),
        ({"Authorization": f"Bearer {BOB_KEY}", "Origin": "http://evil.example"}, 403),
        ({"Authorization": f"Bearer {BOB_KEY}", "Host": "evil.example"}, 421),
    ],
    ids=["no-credential", "unknown-key", "foreign-origin", "foreign-host"],
)
async def test_refusals_come_before_the_mcp_app(
    proxy: tuple[str, Running], headers: dict[str, str], status: int
) -> None:
    _, running = proxy
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(running.url, json=INITIALIZE, headers={**ACCEPT, **headers})
    assert response.status_code == status
    assert "mcp-session-id" not in response.headers
    assert "serverInfo" not in response.text


async def test_allowed_origin_gets_in(proxy: tuple[str, Running]) -> None:
    _, running = proxy
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(
            running.url,
            json=INITIALIZE,
            headers={**ACCEPT, "Authorization": f"Bearer {BOB_KEY}", "Origin": CONSOLE_ORIGIN},
        )
    assert response.status_code == 200
    assert _answer(response)["result"]["serverInfo"]["name"] == "pgwarden-proxy"


async def test_a_session_belongs_to_its_credential(proxy: tuple[str, Running]) -> None:
    _, running = proxy
    call = _message("tools/call", {"name": "query", "arguments": {"sql": SAME_QUERY}}, id_=3)
    async with httpx2.AsyncClient(timeout=30) as http:
        bobs = await _open_session(http, running.url, BOB_KEY)
        # carol, authenticated, cannot ride bob's session: it does not exist for her
        stolen = await http.post(running.url, json=call, headers=_session_headers(CAROL_KEY, bobs))
        assert stolen.status_code == 404 and "tenant_id" not in stolen.text
        unknown = await http.post(running.url, json=call, headers=_session_headers(BOB_KEY, "f" * 32))
        assert unknown.status_code == 404
        ended = await http.delete(running.url, headers=_session_headers(BOB_KEY, bobs))
        assert ended.status_code == 200
        after = await http.post(running.url, json=call, headers=_session_headers(BOB_KEY, bobs))
        assert after.status_code == 404


async def test_a_call_without_a_session_is_refused(proxy: tuple[str, Running]) -> None:
    _, running = proxy
    call = _message("tools/call", {"name": "query", "arguments": {"sql": SAME_QUERY}}, id_=4)
    headers = {**ACCEPT, "Authorization": f"Bearer {BOB_KEY}", "mcp-protocol-version": PROTOCOL}
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(running.url, json=call, headers=headers)
    assert response.status_code == 400
    assert "tenant_id" not in response.text


# -- the relay: what each mode carries -------------------------------------------------------------


async def test_relay_host_and_origin_are_checked_without_auth(relay: tuple[str, Running]) -> None:
    _, running = relay
    async with httpx2.AsyncClient(timeout=30) as http:
        foreign_host = await http.post(
            running.url, json=INITIALIZE, headers={**ACCEPT, "Host": "evil.example"}
        )
        foreign_origin = await http.post(
            running.url, json=INITIALIZE, headers={**ACCEPT, "Origin": "http://evil.example"}
        )
        loopback = await http.post(
            running.url, json=INITIALIZE, headers={**ACCEPT, "Origin": "http://127.0.0.1:1"}
        )
    assert foreign_host.status_code == 421 and "mcp-session-id" not in foreign_host.headers
    assert foreign_origin.status_code == 403 and "mcp-session-id" not in foreign_origin.headers
    assert loopback.status_code == 200
    assert running.loop_module().startswith("uvloop") or not loop_options("http")


async def test_progress_reaches_the_client_only_on_sse(relay: tuple[str, Running]) -> None:
    from mcp import Client

    mode, running = relay
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(running.url, mode="legacy") as client:
        result = await client.call_tool("slow", {"steps": 3, "delay": 0.05}, progress_callback=on_progress)
    assert result.content[0].text == "done after 3 steps"  # type: ignore[union-attr]
    # JSON bodies carry only the answer: the upstream's progress for the call is dropped.
    assert seen == ([1.0, 2.0, 3.0] if mode == "sse" else [])


async def test_sampling_is_relayed_only_on_sse(relay: tuple[str, Running]) -> None:
    from mcp import Client
    from mcp_types import CreateMessageResult, TextContent

    mode, running = relay
    asked: list[object] = []

    async def sampling(context: object, params: object) -> CreateMessageResult:
        asked.append(params)
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text="hi from the client"), model="test"
        )

    async with Client(running.url, mode="legacy", sampling_callback=sampling) as client:
        if mode == "sse":
            result = await client.call_tool("ask", {})
            assert result.content[0].text == "hi from the client"  # type: ignore[union-attr]
            assert len(asked) == 1
        else:
            # The relay cannot ask this client during the call: the upstream gets an error, which
            # reaches the client as the call's error; the client is never asked.
            with pytest.raises(MCPError, match="cannot carry sampling/createMessage"):
                await client.call_tool("ask", {})
            assert asked == []
        still = await client.call_tool("echo", {"text": "after"})
        assert still.content[0].text == "after"  # type: ignore[union-attr]


async def test_upstream_log_messages_reach_the_client_in_both_modes(
    logging_relay: tuple[str, Running],
) -> None:
    from mcp import Client

    mode, running = logging_relay
    logged: list[Any] = []

    async def on_log(params: Any) -> None:
        logged.append(params.data)

    text = f"logged in {mode} mode"
    async with Client(running.url, mode="legacy", logging_callback=on_log) as client:
        # Log lines travel on the client's GET stream, which the client opens on its own once
        # the session starts: call until one arrives (a line sent before it opened is lost).
        with anyio.move_on_after(15):
            while not logged:
                result = await client.call_tool("note", {"text": text})
                assert result.content[0].text == text  # type: ignore[union-attr]
                await anyio.sleep(0.1)
    assert logged and set(logged) == {text}


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "proxy":
        _run_proxy(sys.argv[2])
    elif command == "relay":
        rest = sys.argv[2:]
        split = rest.index("--")
        _run_relay(int(rest[0]), rest[1], rest[split + 1 :])
    elif command == "upstream":
        _run_logging_upstream()
    else:
        raise SystemExit(f"unknown command {command!r}")
