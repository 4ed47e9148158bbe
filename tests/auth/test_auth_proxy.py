"""Authentication in front of the real relay (`serve_http`), with a real upstream MCP server over
Streamable HTTP that records the headers it receives.

The gate here is the relay tests' allow-all gate (it records the call contexts it opens): what is
tested is the principal each call reaches the gate with and the credential the upstream sees,
not policy decisions.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import pytest
from anyio.from_thread import start_blocking_portal
from auth_echo import BOB_KEY, ISSUER, SCOPE
from auth_relay_gates import AllowAllGate
from auth_servers import SigningKey, bound_socket, jwks_server, serve_asgi
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer

from pgwarden.proxy.auth import AuthConfig, AuthMiddleware, Principal, require_principal
from pgwarden.proxy.auth.api_keys import hash_api_key
from pgwarden.proxy.relay.serve import serve_http
from pgwarden.proxy.relay.upstream import UpstreamSpec

pytestmark = pytest.mark.anyio

UPSTREAM_CREDENTIAL = "Bearer upstream-own-credential-0123456789"
CONSOLE_ORIGIN = "https://console.example.com"


@dataclass
class HeaderRecorder:
    app: Any
    seen: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        await self.app(scope, receive, send)


def upstream_server() -> MCPServer:
    server = MCPServer("recording-upstream")

    @server.tool()
    def query(sql: str) -> str:
        """Echo the statement."""
        return json.dumps([{"sql": sql}])

    return server


@dataclass
class ProxyDeployment:
    url: str
    gate: AllowAllGate
    upstream: HeaderRecorder
    key: SigningKey

    def alice_token(self) -> str:
        now = int(time.time())
        return self.key.sign(
            {
                "iss": ISSUER,
                "aud": self.url,
                "sub": "alice",
                "iat": now,
                "exp": now + 300,
                "scope": SCOPE,
                "groups": ["analyst"],
                "tenant_id": 1,
            }
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def proxy(rsa_key: SigningKey) -> Iterator[ProxyDeployment]:
    recorder = HeaderRecorder(upstream_server().streamable_http_app(host="127.0.0.1"))
    with jwks_server(rsa_key) as jwks, serve_asgi(recorder, bound_socket()) as upstream_url:
        port = free_port()
        url = f"http://127.0.0.1:{port}/mcp"
        config = AuthConfig.model_validate(
            {
                "resource": url,
                "required_scopes": [SCOPE],
                "jwt": {"issuer": ISSUER, "jwks_url": jwks.url, "claims": {"tenant": "tenant_id"}},
                "origins": {"allowed_origins": [CONSOLE_ORIGIN]},
                "api_keys": [
                    {
                        "name": "bob",
                        "hash": hash_api_key(BOB_KEY),
                        "principal": {"id": "bob", "roles": ["support"], "tenant": 2, "scopes": [SCOPE]},
                    }
                ],
            }
        )
        spec = UpstreamSpec(url=upstream_url + "/mcp", headers={"Authorization": UPSTREAM_CREDENTIAL})
        gate = AllowAllGate()
        with start_blocking_portal() as portal:
            future = portal.start_task_soon(
                lambda: serve_http(
                    spec,
                    gate,  # type: ignore[arg-type]
                    require_principal,
                    host="127.0.0.1",
                    port=port,
                    wrap=lambda app: AuthMiddleware(app, config),
                )
            )
            deadline = time.monotonic() + 20
            while True:
                try:
                    metadata = httpx2.get(url.replace("/mcp", "/.well-known/oauth-protected-resource"))
                    if metadata.status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline or future.done():
                    raise RuntimeError("the proxy did not start")
                time.sleep(0.05)
            try:
                yield ProxyDeployment(url, gate, recorder, rsa_key)
            finally:
                future.cancel()


async def call_query(url: str, token: str, sql: str) -> str:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=20) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,  # type: ignore[arg-type]
    ):
        tools = await client.list_tools()
        assert [t.name for t in tools.tools] == ["query"]
        result = await client.call_tool("query", {"sql": sql})
        assert not result.is_error, result
        text: str = result.content[0].text  # type: ignore[union-attr]
        return text


async def test_principals_reach_the_gate_and_client_tokens_never_reach_the_upstream(
    proxy: ProxyDeployment,
) -> None:
    alice_token = proxy.alice_token()
    answers: dict[str, str] = {}

    async def run(name: str, token: str) -> None:
        answers[name] = await call_query(proxy.url, token, f"SELECT '{name}'")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "alice", alice_token)
        tg.start_soon(run, "bob", BOB_KEY)
    assert "alice" in answers["alice"] and "bob" in answers["bob"]

    calls = [c for c in proxy.gate.opened if c.method == "tools/call"]
    by_principal = {c.principal.id: c.principal for c in calls}
    assert set(by_principal) == {"alice", "bob"}
    assert all(isinstance(p, Principal) for p in by_principal.values())
    assert dict(by_principal["alice"])["tenant"] == 1 and by_principal["alice"].auth_method == "jwt"
    assert dict(by_principal["bob"])["tenant"] == 2 and by_principal["bob"].auth_method == "api_key"
    # Each tools/call carried its own principal's SQL (the gate recorded the arguments in order).
    assert sorted(sql for _tool, args in proxy.gate.calls for sql in [args.get("sql")]) == [
        "SELECT 'alice'",
        "SELECT 'bob'",
    ]

    seen = proxy.upstream.seen
    assert seen, "the upstream received nothing"
    assert {h.get("authorization") for h in seen} == {UPSTREAM_CREDENTIAL}
    everything = json.dumps(seen)
    assert alice_token not in everything and BOB_KEY not in everything


async def test_unauthenticated_requests_never_reach_the_relay(proxy: ProxyDeployment) -> None:
    opened, upstream_requests = len(proxy.gate.opened), len(proxy.upstream.seen)
    async with httpx2.AsyncClient(timeout=10) as client:
        response = await client.post(
            proxy.url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream", "Authorization": "Bearer forged.x.y"},
        )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert len(proxy.gate.opened) == opened and len(proxy.upstream.seen) == upstream_requests


@pytest.mark.parametrize(
    ("origin", "status"),
    [(CONSOLE_ORIGIN, 200), ("https://evil.example.com", 403), ("http://localhost:9999", 403)],
    ids=["configured-origin", "foreign-origin", "loopback-origin-not-configured"],
)
async def test_origin_checks_follow_the_auth_configuration_on_loopback(
    proxy: ProxyDeployment, origin: str, status: int
) -> None:
    """On loopback the SDK's own origin list would refuse the configured console origin; with
    authentication in front, its configuration alone decides."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "origin-test", "version": "0"},
        },
    }
    async with httpx2.AsyncClient(timeout=10) as client:
        response = await client.post(
            proxy.url,
            json=initialize,
            headers={
                "Accept": "application/json, text/event-stream",
                "Authorization": f"Bearer {BOB_KEY}",
                "Origin": origin,
            },
        )
    assert response.status_code == status, response.text
