"""Bearer JWT validation for an OAuth 2.1 resource server.

Order of checks, each a refusal on failure:
1. size and shape (three base64url segments, a JSON header);
2. header: `alg` must be one the configuration allows (never `none`, never HS*); `crit` is
   refused (no extension is understood); `typ` checked when configured; `kid` a string;
   embedded keys (`jwk`, `jku`, `x5u`, `x5c`) are never used;
3. key: looked up by `kid` among configured keys, then the JWKS cache (unknown kid → one
   rate-limited refetch); the key's own algorithm set must contain the header's `alg`, so an
   RSA key can never verify an HMAC token (no algorithm confusion);
4. signature, `exp` and `nbf` (with leeway), `iss` exact, `aud` containing this resource
   (RFC 8707), required claims present.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jwt
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAudienceError,
    InvalidIssuedAtError,
    InvalidIssuerError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWTError,
)

from pgwarden.proxy.auth.config import JwtConfig
from pgwarden.proxy.auth.errors import invalid_token
from pgwarden.proxy.auth.keys import JwksCache, VerificationKey, static_keys

_JWS_COMPACT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
REQUIRED_CLAIMS = ("exp", "iss", "aud")


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments: the JWS compact serialization."""
    return bool(_JWS_COMPACT.match(token))


class JwtValidator:
    """Validates bearer JWTs against configuration; `validate` returns the verified claims or
    raises `AuthFailure` (401 invalid_token) / `KeysUnavailable`."""

    def __init__(self, config: JwtConfig, audiences: tuple[str, ...], jwks: JwksCache | None = None) -> None:
        self.config = config
        self.audiences = audiences
        self._static = static_keys(config.keys, config.algorithms)
        if jwks is None and config.jwks_url is not None:
            jwks = JwksCache(
                config.jwks_url,
                config.algorithms,
                cache_seconds=config.jwks_cache_seconds,
                min_refetch_seconds=config.jwks_min_refetch_seconds,
                timeout_seconds=config.jwks_timeout_seconds,
            )
        self.jwks = jwks
        self._allowed = config.algorithms.all()

    async def _find_key(self, kid: str | None) -> VerificationKey | None:
        if kid is not None:
            if kid in self._static:
                return self._static[kid]
            return await self.jwks.get(kid) if self.jwks is not None else None
        # No kid: acceptable only when exactly one key could be meant.
        candidates = list(self._static.values())
        if self.jwks is not None:
            candidates += await self.jwks.all_keys()
        return candidates[0] if len(candidates) == 1 else None

    def _header(self, token: str) -> Mapping[str, Any]:
        if len(token) > self.config.max_token_bytes:
            raise invalid_token("token too large")
        if not looks_like_jwt(token):
            raise invalid_token("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise invalid_token("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._allowed:
            raise invalid_token("signing algorithm not accepted")
        if "crit" in header:
            raise invalid_token("unsupported critical header")
        if self.config.accepted_types is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or typ.lower() not in {t.lower() for t in self.config.accepted_types}:
                raise invalid_token("token type not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise invalid_token("malformed token")
        return header

    async def validate(self, token: str) -> dict[str, Any]:
        header = self._header(token)
        alg: str = header["alg"]
        key = await self._find_key(header.get("kid"))
        if key is None:
            raise invalid_token("signing key not recognised")
        if alg not in key.algorithms:
            raise invalid_token("signing algorithm not accepted for this key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=list(self.audiences),
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_aud": True,
                    "verify_iss": True,
                },
            )
        except ExpiredSignatureError:
            raise invalid_token("token expired") from None
        except (ImmatureSignatureError, InvalidIssuedAtError):
            raise invalid_token("token not yet valid") from None
        except InvalidAudienceError:
            raise invalid_token("token not issued for this resource") from None
        except InvalidIssuerError:
            raise invalid_token("token issuer not accepted") from None
        except InvalidSignatureError:
            raise invalid_token("signature verification failed") from None
        except MissingRequiredClaimError:
            raise invalid_token("token lacks a required claim") from None
        except PyJWTError:
            raise invalid_token("invalid token") from None
        return claims
