"""Shared pieces of the HTTP authentication tests: constants, the echo MCP server whose `whoami`
tool reports the principal it sees, and an ASGI wrapper that counts what reaches the app."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from auth_servers import JwksServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context, MCPServer

from pgwarden.proxy.auth import AuthConfig, AuthMiddleware, AuthRefusal, current_principal
from pgwarden.proxy.auth.context import principal_from_request_context

ISSUER = "https://idp.pgwarden.test/realms/acme"
SCOPE = "pgwarden.query"
BOB_KEY = "pgw_bob-0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass
class CountingApp:
    """Wraps the app behind the middleware: counts the HTTP requests that reach it and keeps the
    header names each one carried."""

    app: Any
    requests: int = 0
    header_names: list[set[str]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests += 1
            self.header_names.append({k.decode().lower() for k, _ in scope["headers"]})
        await self.app(scope, receive, send)


def echo_server(tool_calls: list[dict[str, Any]]) -> MCPServer:
    server = MCPServer("echo")

    @server.tool()
    async def whoami(ctx: Context) -> str:
        """Say which principal this call is made for, as each mechanism sees it."""
        from_request = principal_from_request_context(ctx)
        from_var = current_principal()
        token = get_access_token()
        headers = {k.lower() for k in (ctx.headers or {})}
        seen = {
            "principal": from_request.to_cel() if from_request else None,
            "contextvar": from_var.id if from_var else None,
            "sdk_subject": token.subject if token else None,
            "authorization_header_seen": "authorization" in headers,
        }
        tool_calls.append(seen)
        return json.dumps(seen)

    return server


@dataclass
class EchoDeployment:
    url: str  # base URL, e.g. http://127.0.0.1:PORT
    counter: CountingApp
    tool_calls: list[dict[str, Any]]
    refusals: list[AuthRefusal]
    jwks: JwksServer
    config: AuthConfig
    middleware: AuthMiddleware

    @property
    def mcp_url(self) -> str:
        return self.url + "/mcp"

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": self.mcp_url,
            "sub": "alice",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "scope": f"openid {SCOPE}",
            "groups": ["analyst"],
            "tenant_id": 1,
            "email": "alice@example.test",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}
