"""Authentication and principals for the proxy's HTTP front (OAuth 2.1 resource server).

Public API:
- `AuthConfig` — the `auth:` configuration section (pydantic);
- `AuthMiddleware(app, config, on_refusal=…)` — ASGI middleware for the Streamable HTTP app;
- `Principal`, `principal_from_mapping`, `parse_principal_option` — the caller, also for stdio;
- `principal_from_request_context(ctx)`, `require_principal(ctx)` (the relay's resolver),
  `current_principal()` — the principal in a handler;
- `AuthRefusal` — what the audit hook receives for a refused request.
"""

from pgwarden.proxy.auth.config import AuthConfig
from pgwarden.proxy.auth.context import (
    current_principal,
    principal_from_request_context,
    principal_from_scope,
    require_principal,
    reset_current_principal,
    set_current_principal,
)
from pgwarden.proxy.auth.errors import Refusal
from pgwarden.proxy.auth.events import AuthRefusal, RefusalHook
from pgwarden.proxy.auth.middleware import AuthMiddleware
from pgwarden.proxy.auth.principal import (
    Principal,
    PrincipalError,
    parse_principal_option,
    principal_from_mapping,
)

__all__ = [
    "AuthConfig",
    "AuthMiddleware",
    "AuthRefusal",
    "Principal",
    "PrincipalError",
    "Refusal",
    "RefusalHook",
    "current_principal",
    "parse_principal_option",
    "principal_from_mapping",
    "principal_from_request_context",
    "principal_from_scope",
    "require_principal",
    "reset_current_principal",
    "set_current_principal",
]
