"""Why a request was refused, in a form that is safe to send to the client and to audit.

Descriptions are fixed, short phrases: they never contain the token, a claim value or key
material, so they can go into `WWW-Authenticate`, the response body and the audit log as-is.
"""

from __future__ import annotations

from enum import StrEnum


class Refusal(StrEnum):
    """Stable codes for refused HTTP requests (audit `auth.refusal`)."""

    HOST_NOT_ALLOWED = "auth.host_not_allowed"
    ORIGIN_NOT_ALLOWED = "auth.origin_not_allowed"
    MISSING_TOKEN = "auth.missing_token"  # noqa: S105 - a reason code, not a secret
    MALFORMED_REQUEST = "auth.malformed_request"
    INVALID_TOKEN = "auth.invalid_token"  # noqa: S105 - a reason code, not a secret
    INSUFFICIENT_SCOPE = "auth.insufficient_scope"
    KEYS_UNAVAILABLE = "auth.keys_unavailable"
    RATE_LIMITED = "auth.rate_limited"
    CONCURRENCY_LIMITED = "auth.concurrency_limited"
    UNSUPPORTED_TRANSPORT = "auth.unsupported_transport"


class AuthFailure(Exception):
    """A request that does not get through. `error` is the RFC 6750 error code (None when no
    credentials were presented at all, which gets a bare challenge)."""

    def __init__(
        self,
        code: Refusal,
        status: int,
        description: str,
        *,
        error: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.status = status
        self.description = description
        self.error = error
        self.retry_after = retry_after
        self.principal_id: str | None = None  # set once credentials were verified
        self.auth_method: str | None = None


def invalid_token(description: str) -> AuthFailure:
    return AuthFailure(Refusal.INVALID_TOKEN, 401, description, error="invalid_token")


def invalid_request(description: str) -> AuthFailure:
    return AuthFailure(Refusal.MALFORMED_REQUEST, 400, description, error="invalid_request")


def missing_token() -> AuthFailure:
    return AuthFailure(Refusal.MISSING_TOKEN, 401, "authentication required")
