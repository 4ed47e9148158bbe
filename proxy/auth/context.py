"""How request handling finds the principal of the request it is serving.

The middleware publishes the principal three ways, all set before the wrapped app runs:

- `scope["user"]`: a `PrincipalUser`, the MCP SDK's own `AuthenticatedUser` type. The SDK
  binds Streamable HTTP sessions to it (a session id presented with another principal's
  credentials gets 404) and hands every handler the HTTP request that carried the message as
  `ctx.request`, so `principal_from_request_context(ctx)` reads the principal of *that* POST;
- `scope["state"]["pgwarden.principal"]` (Starlette's `request.state`);
- context variables: our `current_principal()` and the SDK's `auth_context_var` (so
  `mcp.server.auth.middleware.auth_context.get_access_token()` and
  `mcp.server.mcpserver.authenticated_principal` work). The SDK's streams carry the sender's
  context with each message, so these reach handlers running in the session's task too.

Prefer `principal_from_request_context(ctx)` in MCP handlers: it follows the message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from pgwarden.proxy.auth.principal import Principal

STATE_KEY = "pgwarden.principal"

_current: ContextVar[Principal | None] = ContextVar("pgwarden_principal", default=None)


class PrincipalUser(AuthenticatedUser):
    """The SDK's authenticated user, carrying our principal. Its `access_token.token` is a
    fingerprint of the credential, never the credential itself."""

    def __init__(self, principal: Principal, access_token: AccessToken) -> None:
        super().__init__(access_token)
        self.principal = principal

    @property
    def display_name(self) -> str:
        return self.principal.id


def credential_fingerprint(credential: str) -> str:
    """A short, non-reversible label for a credential (safe to log, useless to replay)."""
    return "fp:" + hashlib.sha256(credential.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def access_token_for(
    principal: Principal,
    credential: str | None,
    *,
    client_id: str | None = None,
    expires_at: int | None = None,
    resource: str | None = None,
) -> AccessToken:
    claims: dict[str, Any] = {"iss": principal.issuer} if principal.issuer else {}
    return AccessToken(
        token=credential_fingerprint(credential) if credential else "fp:none",
        client_id=client_id or principal.id,
        scopes=list(principal.scopes),
        expires_at=expires_at,
        resource=resource,
        subject=principal.id,
        claims=claims or None,
    )


def current_principal() -> Principal | None:
    """The principal of the request being handled in this context, if any."""
    return _current.get()


def set_current_principal(principal: Principal | None) -> Any:
    """Set the context's principal (the stdio front calls this once); returns a reset token."""
    return _current.set(principal)


def reset_current_principal(token: Any) -> None:
    _current.reset(token)


def principal_from_scope(scope: Mapping[str, Any]) -> Principal | None:
    """The principal the middleware attached to an ASGI scope (or a Starlette request's scope)."""
    state = scope.get("state")
    if isinstance(state, Mapping):
        found = state.get(STATE_KEY)
        if isinstance(found, Principal):
            return found
    user = scope.get("user")
    if isinstance(user, PrincipalUser):
        return user.principal
    return None


def principal_from_request_context(ctx: Any) -> Principal | None:
    """The principal for an MCP handler's context (`ServerRequestContext`, or an `MCPServer`
    `Context` via its `request_context`). Reads the HTTP request that carried the message; falls
    back to the context variable (stdio, in-process)."""
    request_context = getattr(ctx, "request_context", ctx)
    request = getattr(request_context, "request", None)
    scope = getattr(request, "scope", None)
    if isinstance(scope, Mapping):
        found = principal_from_scope(scope)
        if found is not None:
            return found
    return current_principal()


def require_principal(ctx: Any) -> Principal:
    """`principal_from_request_context`, raising `PermissionError` when there is none — the
    relay's principal resolver for the HTTP front (fail closed: no principal, no call)."""
    principal = principal_from_request_context(ctx)
    if principal is None:
        raise PermissionError("not authenticated")
    return principal
