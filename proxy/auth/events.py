"""The record of a refused HTTP request, handed to the audit hook.

The middleware calls `on_refusal(event)` for every request it refuses (bad host or origin,
missing/invalid token, insufficient scope, rate or concurrency limit) before answering. The hook
may be sync or async; if it raises, the request is still refused (it never turns into an
allow) and the error is logged. Nothing here holds a credential: `principal_id` is set only
once the credential was verified.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pgwarden.proxy.auth.errors import Refusal


@dataclass(frozen=True, slots=True)
class AuthRefusal:
    code: Refusal
    status: int
    reason: str  # the fixed, public description (no token, no claim values)
    method: str
    path: str
    client: str | None  # peer address as the server saw it
    principal_id: str | None = None
    auth_method: str | None = None
    retry_after: float | None = None

    def to_record(self) -> dict[str, Any]:
        """A JSON-able mapping for the audit log."""
        return {
            "event": "auth.refusal",
            "code": str(self.code),
            "status": self.status,
            "reason": self.reason,
            "http.method": self.method,
            "http.path": self.path,
            "client.address": self.client,
            "principal.id": self.principal_id,
            "auth.method": self.auth_method,
            "retry_after": self.retry_after,
        }


RefusalHook = Callable[[AuthRefusal], Awaitable[None] | None]
