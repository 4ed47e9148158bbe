"""Each MCP call is handled for the principal whose credential carried it — over real MCP sessions
(both protocol generations) on one server, with the client's credential never visible past the
middleware."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2
import pytest
from auth_echo import BOB_KEY, EchoDeployment
from auth_servers import SigningKey, bound_socket, recording_upstream, serve_asgi
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from pgwarden.proxy.auth import AuthConfig, AuthMiddleware
from pgwarden.proxy.auth.api_keys import hash_api_key

pytestmark = pytest.mark.anyio


async def whoami(url: str, token: str, mode: str) -> dict[str, Any]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        result = await client.call_tool("whoami", {})
        assert not result.is_error, result
        seen: dict[str, Any] = json.loads(result.content[0].text)  # type: ignore[union-attr]
        return seen


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_two_principals_on_one_server_see_their_own_identity(
    echo: EchoDeployment, rsa_key: SigningKey, mode: str
) -> None:
    alice_token = rsa_key.sign(echo.claims())
    results: dict[str, dict[str, Any]] = {}

    async def run(name: str, token: str) -> None:
        results[name] = await whoami(echo.mcp_url, token, mode)

    async with anyio.create_task_group() as tg:
        for i in range(3):  # interleave several sessions of both principals
            tg.start_soon(run, f"alice{i}", alice_token)
            tg.start_soon(run, f"bob{i}", BOB_KEY)

    for i in range(3):
        alice, bob = results[f"alice{i}"], results[f"bob{i}"]
        assert alice["principal"] == {
            "id": "alice",
            "roles": ["analyst"],
            "tenant": 1,
            "claims": {"email": "alice@example.test"},
            "scopes": ["openid", "pgwarden.query"],
            "auth_method": "jwt",
        }
        assert bob["principal"] == {
            "id": "bob",
            "roles": ["support"],
            "tenant": 2,
            "claims": {},
            "scopes": ["pgwarden.query"],
            "auth_method": "api_key",
        }
        # Every mechanism agrees: the request the message came with, our context variable, the SDK's.
        assert (alice["contextvar"], alice["sdk_subject"]) == ("alice", "alice")
        assert (bob["contextvar"], bob["sdk_subject"]) == ("bob", "bob")
        assert not alice["authorization_header_seen"] and not bob["authorization_header_seen"]


async def test_a_session_cannot_be_used_with_another_principals_credential(
    echo: EchoDeployment, rsa_key: SigningKey
) -> None:
    """The SDK binds a Streamable HTTP session to the principal that opened it; our principal
    feeds that binding, so Bob presenting Alice's session id gets 404."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    alice = {"Authorization": f"Bearer {rsa_key.sign(echo.claims())}"}
    list_tools = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with httpx2.AsyncClient(timeout=10) as client:
        opened = await client.post(echo.mcp_url, json=init, headers={**headers, **alice})
        session = opened.headers["mcp-session-id"]
        session_headers = {**headers, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
        await client.post(
            echo.mcp_url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers={**session_headers, **alice},
        )
        own = await client.post(echo.mcp_url, json=list_tools, headers={**session_headers, **alice})
        stolen = await client.post(
            echo.mcp_url, json=list_tools, headers={**session_headers, "Authorization": f"Bearer {BOB_KEY}"}
        )
    assert own.status_code == 200
    assert stolen.status_code == 404


async def test_client_credential_never_reaches_the_upstream(rsa_key: SigningKey) -> None:
    """Behind the middleware, a deliberately naive relay copies *every* header it gets to an
    upstream that records them: the client's bearer token is not among them."""
    key = "pgw_carol-0123456789abcdefghijklmnopqrstu"
    with recording_upstream() as upstream:

        async def naive_relay(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            headers = [
                (k.decode(), v.decode()) for k, v in scope["headers"] if k not in (b"host", b"content-length")
            ]
            async with httpx2.AsyncClient(timeout=10) as client:
                answer = await client.get(upstream.url + scope["path"], headers=headers)
            await send({"type": "http.response.start", "status": answer.status_code, "headers": []})
            await send({"type": "http.response.body", "body": answer.content})

        sock = bound_socket()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = AuthConfig.model_validate(
            {
                "resource": base + "/mcp",
                "api_keys": [{"name": "carol", "hash": hash_api_key(key), "principal": {"id": "carol"}}],
            }
        )
        with serve_asgi(AuthMiddleware(naive_relay, config), sock):
            async with httpx2.AsyncClient(timeout=10) as client:
                response = await client.get(
                    base + "/mcp",
                    headers={
                        "Authorization": f"Bearer {key}",
                        "Proxy-Authorization": f"Bearer {key}",
                        "X-Trace": "kept",
                    },
                )
    assert response.status_code == 200
    assert len(upstream.seen) == 1
    seen = upstream.seen[0]
    assert seen.get("x-trace") == "kept"  # the relay does forward what it is given
    assert "authorization" not in seen and "proxy-authorization" not in seen
    assert key not in json.dumps(seen)


async def test_public_paths_need_no_credentials_and_still_lose_them() -> None:
    seen: list[list[bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append([k for k, _ in scope["headers"]])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = AuthConfig.model_validate(
        {
            "resource": base + "/mcp",
            "public_paths": ["/healthz"],
            "api_keys": [{"name": "k", "hash": hash_api_key(BOB_KEY), "principal": {"id": "bob"}}],
        }
    )
    with serve_asgi(AuthMiddleware(app, config), sock):
        async with httpx2.AsyncClient(timeout=10) as client:
            health = await client.get(base + "/healthz", headers={"Authorization": "Bearer whatever"})
            other = await client.get(base + "/healthz/../mcp")
            mcp = await client.get(base + "/mcp")
    assert health.status_code == 200 and b"authorization" not in seen[0]
    assert other.status_code == 401 and mcp.status_code == 401
    assert len(seen) == 1
