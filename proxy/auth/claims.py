"""Token claims → `Principal`, as configured in `jwt.claims`.

>>> from pgwarden.proxy.auth.config import ClaimMapping
>>> p = principal_from_claims(
...     {"sub": "u1", "groups": ["analyst"], "org": {"id": 7}, "scope": "a b", "email": "x@y"},
...     ClaimMapping(tenant="org.id", copy=("email",)),
... )
>>> (p.id, p.roles, p.tenant, dict(p.claims), p.scopes)
('u1', ('analyst',), 7, {'email': 'x@y'}, ('a', 'b'))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgwarden.proxy.auth.config import ClaimMapping
from pgwarden.proxy.auth.principal import (
    Principal,
    PrincipalError,
    normalize_claims,
    normalize_id,
    normalize_roles,
    normalize_tenant,
)

_MISSING = object()


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at `path` (a claim name, or dotted path into nested objects); a sentinel when
    absent. A claim whose own name contains dots is found first."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _optional(claims: Mapping[str, Any], path: str | None) -> Any:
    if path is None:
        return None
    value = claim_at(claims, path)
    return None if value is _MISSING else value


def scopes_from_claims(claims: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, ...]:
    """Scopes from the first present claim of `names` (`scope`: space-separated, `scp`: list)."""
    for name in names:
        value = claim_at(claims, name)
        if value is not _MISSING:
            return normalize_roles(value, what="scopes")
    return ()


def principal_from_claims(claims: Mapping[str, Any], mapping: ClaimMapping) -> Principal:
    """Build the principal; raises `PrincipalError` when the id claim is missing or a mapped
    claim has the wrong shape (the token is then refused, never half-mapped)."""
    raw_id = claim_at(claims, mapping.id)
    if raw_id is _MISSING:
        raise PrincipalError(f"token has no {mapping.id!r} claim")
    copied = {}
    for path in mapping.copy_claims:
        value = claim_at(claims, path)
        if value is not _MISSING:
            copied[path] = value
    iss = claims.get("iss")
    return Principal(
        id=normalize_id(raw_id),
        roles=normalize_roles(_optional(claims, mapping.roles)),
        tenant=normalize_tenant(_optional(claims, mapping.tenant)),
        claims=normalize_claims(copied),
        scopes=scopes_from_claims(claims, mapping.scopes),
        auth_method="jwt",
        issuer=iss if isinstance(iss, str) else None,
    )
