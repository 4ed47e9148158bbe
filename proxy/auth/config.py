"""Configuration of the HTTP front's authentication: the `auth:` section of the proxy config.

`AuthConfig` is a pydantic model the proxy's own config embeds as one field. Everything is
validated at load (fail closed): symmetric algorithms and `none` cannot be allowed, a JWKS URL
must be https unless it is on loopback, API keys are stored as hashes only, and at least one
way to authenticate must be configured unless an explicit development-only anonymous
principal is given.

Example (YAML)::

    auth:
      resource: https://pgwarden.example.com/mcp
      authorization_servers: [https://idp.example.com/realms/acme]
      required_scopes: [pgwarden.query]
      jwt:
        issuer: https://idp.example.com/realms/acme
        jwks_url: https://idp.example.com/realms/acme/protocol/openid-connect/certs
        claims: {id: sub, roles: groups, tenant: tenant_id, copy: [email]}
      api_keys:
        - name: nightly-report
          hash: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
          principal: {id: report-bot, roles: [analyst], tenant: 7, scopes: [pgwarden.query]}
      origins:
        allowed_origins: [https://console.example.com]
        allowed_hosts: ["pgwarden.example.com"]
      limits:
        default: {rate_per_second: 10, burst: 20, max_concurrent: 4}
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pgwarden.proxy.auth.principal import Principal, PrincipalError, principal_from_mapping

HASH_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")

# Asymmetric JWS algorithms PyJWT implements, by the key type that can verify them.
ASYMMETRIC_ALGORITHMS: dict[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
    "OKP": frozenset({"EdDSA"}),
}

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback_host(host: str | None) -> bool:
    """True for `localhost` and loopback IP literals (IPv4 127/8, IPv6 ::1)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlgorithmsConfig(_Strict):
    """Allowed JWS algorithms per key type. The token header never widens this list."""

    RSA: tuple[str, ...] = ("RS256", "PS256")
    EC: tuple[str, ...] = ("ES256", "ES384")
    OKP: tuple[str, ...] = ("EdDSA",)

    @model_validator(mode="after")
    def _only_asymmetric(self) -> AlgorithmsConfig:
        for kty in ("RSA", "EC", "OKP"):
            for alg in getattr(self, kty):
                if alg not in ASYMMETRIC_ALGORITHMS[kty]:
                    raise ValueError(
                        f"algorithm {alg!r} is not an allowed {kty} algorithm "
                        f"(choose from {', '.join(sorted(ASYMMETRIC_ALGORITHMS[kty]))}; "
                        "symmetric algorithms and 'none' are never accepted)"
                    )
        return self

    def for_key_type(self, kty: str) -> frozenset[str]:
        if kty not in ASYMMETRIC_ALGORITHMS:
            return frozenset()
        return frozenset(getattr(self, kty))

    def all(self) -> frozenset[str]:
        return frozenset((*self.RSA, *self.EC, *self.OKP))


class ClaimMapping(_Strict):
    """How token claims become the principal. Paths are claim names or dotted paths
    (`realm_access.roles`)."""

    id: str = "sub"
    roles: str | None = "groups"
    tenant: str | None = None
    scopes: tuple[str, ...] = ("scope", "scp")
    copy_claims: tuple[str, ...] = Field(default=(), alias="copy")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StaticKey(_Strict):
    """A verification key given in configuration: a public JWK, or a PEM (inline or file)."""

    kid: str | None = None
    jwk: dict[str, Any] | None = None
    pem: str | None = None
    pem_file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StaticKey:
        given = [x for x in (self.jwk, self.pem, self.pem_file) if x is not None]
        if len(given) != 1:
            raise ValueError("a key needs exactly one of jwk, pem, pem_file")
        return self

    def pem_bytes(self) -> bytes | None:
        if self.pem is not None:
            return self.pem.encode()
        if self.pem_file is not None:
            return self.pem_file.read_bytes()
        return None


class JwtConfig(_Strict):
    """Bearer JWT validation (OAuth 2.1 resource server, RFC 9068 access tokens)."""

    issuer: str
    audience: tuple[str, ...] = ()  # empty: the `resource` URI (RFC 8707)
    jwks_url: str | None = None
    keys: tuple[StaticKey, ...] = ()
    algorithms: AlgorithmsConfig = AlgorithmsConfig()
    leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    jwks_min_refetch_seconds: float = Field(default=30.0, ge=0)
    jwks_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    accepted_types: tuple[str, ...] | None = None  # e.g. ["at+jwt"]; None: any `typ`
    max_token_bytes: int = Field(default=16384, gt=0)
    claims: ClaimMapping = ClaimMapping()

    @field_validator("audience", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("jwks_url")
    @classmethod
    def _https_unless_loopback(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
            return value
        raise ValueError("jwks_url must be https (plain http is accepted only on loopback)")

    @model_validator(mode="after")
    def _some_keys(self) -> JwtConfig:
        if self.jwks_url is None and not self.keys:
            raise ValueError("jwt needs jwks_url or keys")
        return self


class ApiKeyConfig(_Strict):
    """A static API key: only its hash is stored (`pgwarden auth hash-key`)."""

    name: str = Field(min_length=1, max_length=128)
    hash: str
    principal: dict[str, Any]

    @field_validator("hash")
    @classmethod
    def _hash_format(cls, value: str) -> str:
        value = value.strip().lower()
        if not HASH_PATTERN.match(value):
            raise ValueError(
                "hash must be 'sha256:' followed by 64 hex digits (see `pgwarden auth hash-key`)"
            )
        return value

    @field_validator("principal")
    @classmethod
    def _valid_principal(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            principal_from_mapping(value, auth_method="api_key")
        except PrincipalError as exc:
            raise ValueError(str(exc)) from None
        return value

    def to_principal(self) -> Principal:
        return principal_from_mapping(self.principal, auth_method="api_key")


class OriginConfig(_Strict):
    """DNS-rebinding protection. Patterns: `host`, `host:port`, `host:*` (any port);
    origins `scheme://host[:port]` or `scheme://host:*`."""

    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] | None = None  # None: the resource's host plus loopback names


class RateLimit(_Strict):
    """Token bucket (`rate_per_second` refill, `burst` capacity) and in-flight cap per principal."""

    rate_per_second: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, gt=0)
    max_concurrent: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _rate_and_burst(self) -> RateLimit:
        if (self.rate_per_second is None) != (self.burst is None):
            raise ValueError("rate_per_second and burst go together")
        return self


class LimitsConfig(_Strict):
    default: RateLimit = RateLimit()
    per_principal: dict[str, RateLimit] = Field(default_factory=dict)
    # Only requests that carry MCP messages (POST) hold a concurrency slot; a long-lived GET
    # event stream would otherwise pin one for the session's life.
    concurrency_methods: tuple[str, ...] = ("POST",)

    def for_principal(self, principal_id: str) -> RateLimit:
        return self.per_principal.get(principal_id, self.default)


class AuthConfig(_Strict):
    """The `auth:` section."""

    resource: str  # this proxy's MCP endpoint URI: the token audience (RFC 8707) and PRM `resource`
    authorization_servers: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] | None = None  # None: required_scopes
    required_scopes: tuple[str, ...] = ()
    resource_name: str | None = None
    resource_documentation: str | None = None
    jwt: JwtConfig | None = None
    api_keys: tuple[ApiKeyConfig, ...] = ()
    origins: OriginConfig = OriginConfig()
    limits: LimitsConfig = LimitsConfig()
    public_paths: tuple[str, ...] = ()  # exact paths served without credentials (e.g. a health check)
    anonymous: dict[str, Any] | None = None  # development only: principal for requests with no token

    @field_validator("resource")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            raise ValueError("resource must be an absolute http(s) URI without a fragment")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError("resource must be https unless the proxy is on loopback")
        return value

    @model_validator(mode="after")
    def _some_way_in(self) -> AuthConfig:
        if self.jwt is None and not self.api_keys and self.anonymous is None:
            raise ValueError("auth needs jwt, api_keys or (development only) anonymous")
        names = [k.name for k in self.api_keys]
        if len(set(names)) != len(names):
            raise ValueError("api key names must be unique")
        hashes = [k.hash for k in self.api_keys]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two api keys have the same hash")
        if self.anonymous is not None:
            try:
                principal_from_mapping(self.anonymous, auth_method="anonymous")
            except PrincipalError as exc:
                raise ValueError(f"anonymous: {exc}") from None
        return self

    @property
    def audiences(self) -> tuple[str, ...]:
        if self.jwt is not None and self.jwt.audience:
            return self.jwt.audience
        return (self.resource,)

    def anonymous_principal(self) -> Principal | None:
        if self.anonymous is None:
            return None
        return principal_from_mapping(self.anonymous, auth_method="anonymous")

    def check_bind(self, host: str) -> None:
        """Refuse to serve anonymous access on anything but loopback. Call before binding."""
        if self.anonymous is not None and not is_loopback_host(host):
            raise ValueError(
                f"auth.anonymous is for local development only: refusing to bind {host!r} (use 127.0.0.1)"
            )
