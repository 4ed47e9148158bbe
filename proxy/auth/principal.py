"""Who is calling: the `Principal` every policy decision is made for.

A principal is plain, immutable data. Over Streamable HTTP it is built from a validated bearer
token or an API key (see `pgwarden.proxy.auth.middleware`); over stdio it comes from
configuration or the `--principal` option through `principal_from_mapping` /
`parse_principal_option`, so both fronts produce the same type and the same CEL view.

CEL sees `principal` as the mapping returned by `Principal.to_cel()`:
`{id, roles, tenant, claims, scopes, auth_method}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

AuthMethod = Literal["jwt", "api_key", "config", "anonymous"]
Tenant = str | int | None

_MAX_ID_LENGTH = 256
_MAX_ROLES = 256
_ROLE_SPLIT = re.compile(r"[\s,]+")


class PrincipalError(ValueError):
    """A principal description that cannot be used. The message never echoes claim values."""


_CEL_KEYS = ("id", "roles", "tenant", "claims", "scopes", "auth_method")


@dataclass(frozen=True, slots=True)
class Principal(Mapping[str, Any]):
    """An authenticated caller.

    `id` is non-empty; `roles` and `scopes` are sorted and unique; `claims` holds only the
    claims configuration chose to copy (JSON values), never the raw token.

    It is also a read-only mapping — the CEL view, `dict(principal) == principal.to_cel()` — so
    it can be handed as-is to anything that takes a principal mapping (the policy engine).
    """

    id: str
    roles: tuple[str, ...] = ()
    tenant: Tenant = None
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    scopes: tuple[str, ...] = ()
    auth_method: AuthMethod = "config"
    issuer: str | None = None  # the `iss` of the token it came from, for audit; not a CEL field

    def to_cel(self) -> dict[str, Any]:
        """The JSON-able mapping policies see as `principal`."""
        return {
            "id": self.id,
            "roles": list(self.roles),
            "tenant": self.tenant,
            "claims": _thaw(self.claims),
            "scopes": list(self.scopes),
            "auth_method": self.auth_method,
        }

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def __getitem__(self, key: str) -> Any:
        if key == "id":
            return self.id
        if key in ("roles", "scopes"):
            return list(getattr(self, key))
        if key == "tenant":
            return self.tenant
        if key == "claims":
            return _thaw(self.claims)
        if key == "auth_method":
            return self.auth_method
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(_CEL_KEYS)

    def __len__(self) -> int:
        return len(_CEL_KEYS)


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def normalize_roles(value: Any, *, what: str = "roles") -> tuple[str, ...]:
    """Roles from a list of strings or one space/comma separated string; sorted, unique."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = [p for p in _ROLE_SPLIT.split(value) if p]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise PrincipalError(f"{what} must be a list of strings or a string")
    if len(items) > _MAX_ROLES:
        raise PrincipalError(f"too many {what} (more than {_MAX_ROLES})")
    out: set[str] = set()
    for item in items:
        if not isinstance(item, str) or not item or len(item) > _MAX_ID_LENGTH:
            raise PrincipalError(f"each of {what} must be a non-empty string")
        out.add(item)
    return tuple(sorted(out))


def normalize_id(value: Any) -> str:
    """A principal id: a non-empty string (an integer claim is accepted and stringified)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PrincipalError("principal id must be a non-empty string")
    text = str(value)
    if not text or len(text) > _MAX_ID_LENGTH or not text.isprintable():
        raise PrincipalError("principal id must be a non-empty printable string of at most 256 characters")
    return text


def normalize_tenant(value: Any) -> Tenant:
    """A tenant: a string, an integer, or None. Kept as given so CEL compares it with its own type."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PrincipalError("tenant must be a string or an integer")
    if isinstance(value, str) and (not value or len(value) > _MAX_ID_LENGTH):
        raise PrincipalError("tenant must be a non-empty string of at most 256 characters")
    return value


def normalize_claims(value: Any) -> Mapping[str, Any]:
    """Extra claims: a JSON object; stored read-only."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise PrincipalError("claims must be a mapping")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise PrincipalError("claims must hold JSON values only") from None
    frozen: Mapping[str, Any] = _freeze(value)
    return frozen


_MAPPING_KEYS = frozenset({"id", "roles", "tenant", "claims", "scopes", "auth_method"})


def principal_from_mapping(data: Mapping[str, Any], *, auth_method: AuthMethod = "config") -> Principal:
    """Build a principal from `{id, roles?, tenant?, claims?, scopes?}` (configuration, `--principal`).

    Unknown keys are refused, so a typo (`role:`) cannot silently drop a field a policy relies on.
    """
    if not isinstance(data, Mapping):
        raise PrincipalError("a principal must be a mapping with at least an `id`")
    unknown = set(data) - _MAPPING_KEYS
    if unknown:
        raise PrincipalError(f"unknown principal field(s): {', '.join(sorted(map(str, unknown)))}")
    if "id" not in data:
        raise PrincipalError("a principal needs an `id`")
    method = data.get("auth_method", auth_method)
    if method not in ("jwt", "api_key", "config", "anonymous"):
        raise PrincipalError("auth_method must be one of jwt, api_key, config, anonymous")
    return Principal(
        id=normalize_id(data["id"]),
        roles=normalize_roles(data.get("roles")),
        tenant=normalize_tenant(data.get("tenant")),
        claims=normalize_claims(data.get("claims")),
        scopes=normalize_roles(data.get("scopes"), what="scopes"),
        auth_method=method,
    )


def parse_principal_option(text: str) -> Principal:
    """Parse a `--principal` value: a JSON object, or `id[,key=value…]`.

    `alice` → id alice; `alice,roles=analyst|support,tenant=7` → roles (separated by `|`)
    and an integer tenant (digits become an int; quote-free strings otherwise).
    """
    text = text.strip()
    if not text:
        raise PrincipalError("empty principal")
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise PrincipalError("--principal is not valid JSON") from None
        return principal_from_mapping(data)
    first, *rest = text.split(",")
    mapping: dict[str, Any] = {"id": first.strip()}
    for part in rest:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise PrincipalError("--principal expects id[,key=value…]")
        if key == "roles" or key == "scopes":
            mapping[key] = [r for r in value.split("|") if r]
        elif key == "tenant":
            mapping[key] = int(value) if value.isdigit() else value
        else:
            raise PrincipalError(f"--principal: unknown key {key!r} (use JSON for claims)")
    return principal_from_mapping(mapping)
