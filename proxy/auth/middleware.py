"""`AuthMiddleware`: pure ASGI middleware that authenticates every HTTP request before the
wrapped app (the proxy's Streamable HTTP front) sees it.

For each HTTP request, in order — the first failure answers and the app is never called:
1. `Host` must be allowed (421) — DNS-rebinding protection;
2. the protected resource metadata (RFC 9728) is served at its well-known paths;
3. an `Origin`, when present, must be allowed (403);
4. no access token in the query string, at most one `Authorization` header (400);
5. credentials: API key or JWT → principal (401 + `WWW-Authenticate: Bearer
   resource_metadata="…"`, with `error="invalid_token"` when a token was presented but bad);
6. required scopes (403 `error="insufficient_scope"`);
7. the principal's token bucket, then its in-flight cap (429 + `Retry-After`, and a JSON-RPC
   error body so MCP clients report "rate limit exceeded; retry after N s" for the request).
Then the principal is published (see `pgwarden.proxy.auth.context`) and the `Authorization`
header is removed from the scope, so nothing downstream can forward the client's credential to
an upstream server. Every refusal goes to the `on_refusal` audit hook first.

WebSocket connections are refused: MCP does not use them.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

from mcp.server.auth.middleware.auth_context import auth_context_var
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from pgwarden.proxy.auth.authenticator import Authenticated, Authenticator
from pgwarden.proxy.auth.config import AuthConfig
from pgwarden.proxy.auth.context import (
    STATE_KEY,
    PrincipalUser,
    reset_current_principal,
    set_current_principal,
)
from pgwarden.proxy.auth.errors import AuthFailure, Refusal, invalid_request
from pgwarden.proxy.auth.events import AuthRefusal, RefusalHook
from pgwarden.proxy.auth.limits import PrincipalLimiter, retry_after_header
from pgwarden.proxy.auth.metadata import metadata_document, metadata_paths, metadata_url
from pgwarden.proxy.auth.origin import HostOriginCheck

logger = logging.getLogger(__name__)

# Headers that carry the client's credentials: never passed to the wrapped app.
CREDENTIAL_HEADERS = frozenset({b"authorization", b"proxy-authorization"})
# JSON-RPC error code of a 429 body (implementation-defined server error range).
RATE_LIMIT_ERROR_CODE = -32029


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AuthMiddleware:
    """Wrap an ASGI app: `AuthMiddleware(app, config, on_refusal=hook)`."""

    def __init__(
        self,
        app: ASGIApp,
        config: AuthConfig,
        *,
        on_refusal: RefusalHook | None = None,
        authenticator: Authenticator | None = None,
        limiter: PrincipalLimiter | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.authenticator = authenticator or Authenticator(config)
        self.limiter = limiter or PrincipalLimiter(config.limits)
        self.on_refusal = on_refusal
        self._hosts = HostOriginCheck(config.origins, config.resource)
        self._metadata_url = metadata_url(config.resource)
        self._metadata_paths = metadata_paths(config.resource)
        self._metadata_body = json.dumps(metadata_document(config)).encode()
        self._public_paths = frozenset(config.public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self._audit(scope, AuthFailure(Refusal.UNSUPPORTED_TRANSPORT, 403, "unsupported transport"))
            await send({"type": "websocket.close", "code": 1008})
            return
        try:
            admitted = await self._admit(scope, send)
        except AuthFailure as failure:
            await self._refuse(scope, send, failure)
            return
        # Admitted: from here on the app owns the response; nothing below answers for it.
        if admitted is _SERVED:
            return
        if admitted is _PUBLIC:
            await self.app(_without_credentials(scope), receive, send)
            return
        assert isinstance(admitted, Authenticated)
        counted = scope["method"] in self.config.limits.concurrency_methods
        try:
            await self._call_app(scope, receive, send, admitted)
        finally:
            if counted:
                self.limiter.leave(admitted.principal.id)

    async def _admit(self, scope: Scope, send: Send) -> Authenticated | object:
        """Decide on the request: `Authenticated` (a concurrency slot held when counted),
        `_PUBLIC`, `_SERVED` (metadata answered here), or `AuthFailure`."""
        headers = Headers(scope=scope)
        if not self._hosts.host_ok(headers.get("host")):
            raise AuthFailure(Refusal.HOST_NOT_ALLOWED, 421, "host not allowed")
        path: str = scope["path"]
        if path in self._metadata_paths:
            await self._serve_metadata(scope, send)
            return _SERVED
        if not self._hosts.origin_ok(headers.get("origin")):
            raise AuthFailure(Refusal.ORIGIN_NOT_ALLOWED, 403, "origin not allowed")
        if "access_token" in QueryParams(scope.get("query_string", b"")):
            raise invalid_request("access tokens are accepted only in the Authorization header")
        authorizations = headers.getlist("authorization")
        if len(authorizations) > 1:
            raise invalid_request("more than one Authorization header")
        if path in self._public_paths:
            return _PUBLIC

        auth = await self.authenticator.authenticate(authorizations[0] if authorizations else None)
        principal = auth.principal
        try:
            self.authenticator.check_scopes(principal)
        except AuthFailure as failure:
            raise _with_principal(failure, auth) from None
        wait = self.limiter.take(principal.id)
        if wait is not None:
            raise _with_principal(
                AuthFailure(Refusal.RATE_LIMITED, 429, "rate limit exceeded", retry_after=wait), auth
            )
        counted = scope["method"] in self.config.limits.concurrency_methods
        if counted and not self.limiter.enter(principal.id):
            raise _with_principal(
                AuthFailure(
                    Refusal.CONCURRENCY_LIMITED, 429, "too many concurrent requests", retry_after=1.0
                ),
                auth,
            )
        return auth

    async def _call_app(self, scope: Scope, receive: Receive, send: Send, auth: Authenticated) -> None:
        inner = _without_credentials(scope)
        inner["user"] = PrincipalUser(auth.principal, auth.access_token)
        inner["auth"] = AuthCredentials(list(auth.principal.scopes))
        inner["state"] = {**scope.get("state", {}), STATE_KEY: auth.principal}
        principal_token = set_current_principal(auth.principal)
        sdk_token = auth_context_var.set(inner["user"])
        try:
            await self.app(inner, receive, send)
        finally:
            auth_context_var.reset(sdk_token)
            reset_current_principal(principal_token)

    async def _serve_metadata(self, scope: Scope, send: Send) -> None:
        cors = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", b"GET, OPTIONS"),
            (b"access-control-allow-headers", b"mcp-protocol-version"),
        ]
        method = scope["method"]
        if method == "OPTIONS":
            await _send(send, 204, b"", cors)
        elif method in ("GET", "HEAD"):
            body = self._metadata_body
            await _send(
                send,
                200,
                b"" if method == "HEAD" else body,
                [(b"content-type", b"application/json"), (b"cache-control", b"public, max-age=300"), *cors],
                content_length=len(body),
            )
        else:
            await _send(send, 405, b"", [(b"allow", b"GET, HEAD, OPTIONS")])

    def _challenge(self, failure: AuthFailure) -> str:
        parts: list[str] = []
        if failure.error is not None:
            parts.append(f"error={_quote(failure.error)}")
            parts.append(f"error_description={_quote(failure.description)}")
        if self.config.required_scopes and failure.code in (
            Refusal.INSUFFICIENT_SCOPE,
            Refusal.MISSING_TOKEN,
        ):
            parts.append(f"scope={_quote(' '.join(self.config.required_scopes))}")
        parts.append(f"resource_metadata={_quote(self._metadata_url)}")
        return "Bearer " + ", ".join(parts)

    async def _refuse(self, scope: Scope, send: Send, failure: AuthFailure) -> None:
        await self._audit(scope, failure)
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
        ]
        if (failure.status in (401, 403) and failure.code in _CHALLENGED) or failure.status == 400:
            headers.append((b"www-authenticate", self._challenge(failure).encode()))
        if failure.retry_after is not None:
            headers.append((b"retry-after", retry_after_header(failure.retry_after).encode()))
        body: dict[str, Any]
        if failure.status == 429:
            # A JSON-RPC error body: MCP clients surface it as the failed request's error.
            wait = int(retry_after_header(failure.retry_after or 1.0))
            body = {
                "jsonrpc": "2.0",
                "id": None,
                "error": {
                    "code": RATE_LIMIT_ERROR_CODE,
                    "message": f"{failure.description}; retry after {wait} s",
                    "data": {"reason": str(failure.code), "retry_after": wait},
                },
            }
        else:
            body = {
                "error": failure.error or _ERROR_NAMES.get(failure.code, "access_denied"),
                "error_description": failure.description,
            }
        await _send(send, failure.status, json.dumps(body).encode(), headers)

    async def _audit(self, scope: Scope, failure: AuthFailure) -> None:
        if self.on_refusal is None:
            return
        client = scope.get("client")
        event = AuthRefusal(
            code=failure.code,
            status=failure.status,
            reason=failure.description,
            method=str(scope.get("method", scope["type"].upper())),
            path=str(scope.get("path", "")),
            client=f"{client[0]}:{client[1]}" if client else None,
            principal_id=failure.principal_id,
            auth_method=failure.auth_method,
            retry_after=failure.retry_after,
        )
        try:
            result = self.on_refusal(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("the auth refusal hook failed (the request is refused regardless)")


_SERVED = object()  # the middleware answered (metadata)
_PUBLIC = object()  # a configured public path: no credentials needed
_CHALLENGED = frozenset({Refusal.MISSING_TOKEN, Refusal.INVALID_TOKEN, Refusal.INSUFFICIENT_SCOPE})
_ERROR_NAMES = {
    Refusal.HOST_NOT_ALLOWED: "host_not_allowed",
    Refusal.ORIGIN_NOT_ALLOWED: "origin_not_allowed",
    Refusal.MISSING_TOKEN: "unauthorized",
    Refusal.KEYS_UNAVAILABLE: "temporarily_unavailable",
}


def _with_principal(failure: AuthFailure, auth: Authenticated) -> AuthFailure:
    failure.principal_id = auth.principal.id
    failure.auth_method = auth.principal.auth_method
    return failure


def _without_credentials(scope: Scope) -> dict[str, Any]:
    inner = dict(scope)
    inner["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() not in CREDENTIAL_HEADERS]
    return inner


async def _send(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    content_length: int | None = None,
) -> None:
    length = len(body) if content_length is None else content_length
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(length).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
