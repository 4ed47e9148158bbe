"""Fixtures for the HTTP-front authentication tests: real keys, a real JWKS endpoint, and a real
MCP server (whose `whoami` tool echoes the principal it sees) behind `AuthMiddleware`, served by
uvicorn on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from auth_echo import BOB_KEY, ISSUER, SCOPE, CountingApp, EchoDeployment, echo_server
from auth_servers import SigningKey, bound_socket, jwks_server, serve_asgi

from pgwarden.proxy.auth import AuthConfig, AuthMiddleware, AuthRefusal
from pgwarden.proxy.auth.api_keys import hash_api_key


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return SigningKey.rsa("rsa-1")


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return SigningKey.ec("ec-1")


@pytest.fixture(scope="module")
def echo(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[EchoDeployment]:
    tool_calls: list[dict[str, Any]] = []
    refusals: list[AuthRefusal] = []
    with jwks_server(rsa_key, ec_key) as jwks:
        sock = bound_socket()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = AuthConfig.model_validate(
            {
                "resource": base + "/mcp",
                "authorization_servers": [ISSUER],
                "required_scopes": [SCOPE],
                "jwt": {
                    "issuer": ISSUER,
                    "jwks_url": jwks.url,
                    "leeway_seconds": 5,
                    "jwks_min_refetch_seconds": 60,
                    "claims": {"tenant": "tenant_id", "copy": ["email"]},
                },
                "api_keys": [
                    {
                        "name": "bob-laptop",
                        "hash": hash_api_key(BOB_KEY),
                        "principal": {"id": "bob", "roles": ["support"], "tenant": 2, "scopes": [SCOPE]},
                    }
                ],
                "origins": {"allowed_origins": ["http://localhost:5173"]},
            }
        )
        counter = CountingApp(echo_server(tool_calls).streamable_http_app(host="127.0.0.1"))
        middleware = AuthMiddleware(counter, config, on_refusal=refusals.append)
        with serve_asgi(middleware, sock) as url:
            yield EchoDeployment(url, counter, tool_calls, refusals, jwks, config, middleware)
