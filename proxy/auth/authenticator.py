"""Credentials → principal: the decision part of the HTTP front's authentication, without I/O
other than the JWKS fetch.

A bearer credential is tried as an API key first (constant-time hash comparison), then as a
JWT. Anything else — another scheme, no header — is "no credentials" and gets a bare
challenge, unless a development-only anonymous principal is configured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mcp.server.auth.provider import AccessToken

from pgwarden.proxy.auth.api_keys import ApiKeyStore
from pgwarden.proxy.auth.claims import principal_from_claims
from pgwarden.proxy.auth.config import AuthConfig
from pgwarden.proxy.auth.context import access_token_for
from pgwarden.proxy.auth.errors import AuthFailure, Refusal, invalid_token, missing_token
from pgwarden.proxy.auth.jwt_validation import JwtValidator
from pgwarden.proxy.auth.keys import JwksCache, KeysUnavailable
from pgwarden.proxy.auth.principal import Principal, PrincipalError

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")


@dataclass(frozen=True, slots=True)
class Authenticated:
    principal: Principal
    access_token: AccessToken  # the SDK's view; its `token` is a fingerprint, not the credential


def bearer_credential(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is no bearer
    header at all; `AuthFailure` (invalid_token) when it is a Bearer header with a bad token."""
    if authorization is None:
        return None
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.strip()
    if not token or not _B64TOKEN.match(token):
        raise invalid_token("malformed bearer token")
    return token


class Authenticator:
    def __init__(self, config: AuthConfig, *, jwks: JwksCache | None = None) -> None:
        self.config = config
        self.api_keys = ApiKeyStore(config.api_keys)
        self.jwt = JwtValidator(config.jwt, config.audiences, jwks) if config.jwt is not None else None
        self._anonymous = config.anonymous_principal()

    async def authenticate(self, authorization: str | None) -> Authenticated:
        """The principal for a request's Authorization header value, or `AuthFailure`."""
        token = bearer_credential(authorization)
        if token is None:
            if self._anonymous is not None and authorization is None:
                return Authenticated(self._anonymous, access_token_for(self._anonymous, None))
            raise missing_token()
        if self.api_keys:
            match = self.api_keys.match(token)
            if match is not None:
                return Authenticated(
                    match.principal,
                    access_token_for(match.principal, token, client_id=f"api-key:{match.name}"),
                )
        if self.jwt is None:
            raise invalid_token("invalid token")
        try:
            claims = await self.jwt.validate(token)
        except KeysUnavailable:
            raise AuthFailure(
                Refusal.KEYS_UNAVAILABLE, 503, "token signing keys temporarily unavailable", retry_after=5
            ) from None
        try:
            principal = principal_from_claims(claims, self.jwt.config.claims)
        except PrincipalError:
            raise invalid_token("token claims do not identify a principal") from None
        client_id = claims.get("client_id", claims.get("azp"))
        exp = claims.get("exp")
        return Authenticated(
            principal,
            access_token_for(
                principal,
                token,
                client_id=client_id if isinstance(client_id, str) else None,
                expires_at=int(exp) if isinstance(exp, int | float) else None,
                resource=self.config.resource,
            ),
        )

    def check_scopes(self, principal: Principal) -> None:
        """403 insufficient_scope unless the principal holds every required scope."""
        missing = [s for s in self.config.required_scopes if s not in principal.scopes]
        if missing:
            raise AuthFailure(
                Refusal.INSUFFICIENT_SCOPE, 403, "insufficient scope", error="insufficient_scope"
            )
