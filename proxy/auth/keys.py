"""Verification keys for bearer JWTs: configured keys and a JWKS cache.

Each key carries the algorithms it may verify, fixed from configuration, its key type and
(for EC) its curve — never from a token header. Symmetric (`oct`) keys, private keys and keys
whose `use`/`key_ops` exclude verification are skipped.

`JwksCache` fetches a JWKS URL and keeps the keys for `cache_seconds`; a token with an unknown
`kid` triggers a refetch, but never more often than once per `min_refetch_seconds`, so tokens
with made-up key ids cannot make the proxy hammer the identity provider. Concurrent misses share
one fetch. When a refresh fails, the keys already known stay in use (and a kid that disappeared
from a successful refresh is forgotten immediately).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError, PyJWTError

from pgwarden.proxy.auth.config import AlgorithmsConfig, StaticKey

logger = logging.getLogger(__name__)

MAX_JWKS_BYTES = 512 * 1024
MAX_JWKS_KEYS = 100
_EC_CURVE_ALGORITHM = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_JWK_CURVES = {"P-256": "secp256r1", "P-384": "secp384r1", "P-521": "secp521r1"}


class UnusableKey(ValueError):
    """A key that cannot be used for verification."""


class KeysUnavailable(Exception):
    """No key set could be obtained (JWKS unreachable and nothing cached)."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key and the exact set of JWS algorithms it may verify."""

    kid: str | None
    kty: str
    key: Any  # a cryptography public key object
    algorithms: frozenset[str]


def _key_type(key: Any) -> tuple[str, frozenset[str] | None]:
    """(kty, algorithms the key's own parameters permit; None = no restriction within kty)."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise UnusableKey("RSA keys shorter than 2048 bits are refused")
        return "RSA", None
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_CURVE_ALGORITHM.get(key.curve.name)
        if alg is None:
            raise UnusableKey("unsupported EC curve")
        return "EC", frozenset({alg})
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "OKP", frozenset({"EdDSA"})
    raise UnusableKey("unsupported key type (only RSA, EC and OKP public keys verify tokens)")


def _make_key(
    kid: str | None, key: Any, declared_alg: str | None, policy: AlgorithmsConfig
) -> VerificationKey:
    kty, permitted = _key_type(key)
    algorithms = policy.for_key_type(kty)
    if permitted is not None:
        algorithms &= permitted
    if declared_alg is not None:
        algorithms &= {declared_alg}
    if not algorithms:
        raise UnusableKey(f"no configured algorithm can be used with this {kty} key")
    return VerificationKey(kid=kid, kty=kty, key=key, algorithms=frozenset(algorithms))


def key_from_jwk(jwk: Mapping[str, Any], policy: AlgorithmsConfig) -> VerificationKey:
    """A verification key from one public JWK (RFC 7517)."""
    if not isinstance(jwk, Mapping):
        raise UnusableKey("a JWK must be a JSON object")
    kty = jwk.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        raise UnusableKey("only RSA, EC and OKP keys are accepted")
    if any(p in jwk for p in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise UnusableKey("private or symmetric key material in a JWK is refused")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise UnusableKey("key is not for signatures")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise UnusableKey("key_ops does not include verify")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise UnusableKey("kid must be a string")
    alg = jwk.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise UnusableKey("alg must be a string")
    crv = jwk.get("crv")
    if kty == "EC" and crv not in _JWK_CURVES:
        raise UnusableKey("unsupported EC curve")
    try:
        text = json.dumps(dict(jwk))
        key: Any
        if kty == "RSA":
            key = RSAAlgorithm.from_jwk(text)
        elif kty == "EC":
            key = ECAlgorithm.from_jwk(text)
        else:
            key = OKPAlgorithm.from_jwk(text)
    except (InvalidKeyError, PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise UnusableKey(f"malformed {kty} JWK") from exc
    return _make_key(kid, key, alg, policy)


def key_from_static(config: StaticKey, policy: AlgorithmsConfig) -> VerificationKey:
    """A verification key from configuration (JWK or PEM public key)."""
    if config.jwk is not None:
        key = key_from_jwk(config.jwk, policy)
        if config.kid is not None and key.kid not in (None, config.kid):
            raise UnusableKey("kid in configuration differs from the JWK's kid")
        kid = config.kid if config.kid is not None else key.kid
        return VerificationKey(kid=kid, kty=key.kty, key=key.key, algorithms=key.algorithms)
    pem = config.pem_bytes()
    assert pem is not None
    try:
        public = load_pem_public_key(pem)
    except ValueError as exc:
        raise UnusableKey("not a PEM public key") from exc
    return _make_key(config.kid, public, None, policy)


def keys_from_jwks(document: Any, policy: AlgorithmsConfig) -> dict[str | None, VerificationKey]:
    """The usable keys of a JWKS document, by kid. Unusable entries are skipped (and logged);
    a duplicated kid is dropped entirely rather than guessed between."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise UnusableKey("a JWKS must be an object with a 'keys' list")
    entries = document["keys"]
    if len(entries) > MAX_JWKS_KEYS:
        raise UnusableKey(f"JWKS has more than {MAX_JWKS_KEYS} keys")
    found: dict[str | None, VerificationKey] = {}
    duplicated: set[str | None] = set()
    for entry in entries:
        try:
            key = key_from_jwk(entry, policy)
        except UnusableKey as exc:
            logger.info("skipping a JWKS entry: %s", exc)
            continue
        if key.kid in found:
            duplicated.add(key.kid)
        found[key.kid] = key
    for kid in duplicated:
        logger.warning("JWKS lists kid %r more than once; ignoring it", kid)
        del found[kid]
    return found


class JwksCache:
    """Keys from a JWKS URL, cached and refreshed (see module docstring)."""

    def __init__(
        self,
        url: str,
        policy: AlgorithmsConfig,
        *,
        cache_seconds: float = 300.0,
        min_refetch_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._policy = policy
        self._cache_seconds = cache_seconds
        self._min_refetch = min_refetch_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._keys: dict[str | None, VerificationKey] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._lock = anyio.Lock()
        self.fetch_count = 0  # attempts made, for tests and metrics

    @property
    def keys(self) -> Mapping[str | None, VerificationKey]:
        return dict(self._keys)

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refetch

    def _stale(self, now: float) -> bool:
        return self._fetched_at is None or now - self._fetched_at >= self._cache_seconds

    async def get(self, kid: str | None) -> VerificationKey | None:
        """The key for `kid`, refetching when the cache is stale or the kid is unknown (rate-limited).

        Raises `KeysUnavailable` when no key set was ever obtained.
        """
        now = self._clock()
        if (self._stale(now) or kid not in self._keys) and (self._may_fetch(now) or self._lock.locked()):
            await self._refresh(kid)  # fetches, or waits for the fetch already under way
        if self._fetched_at is None:
            raise KeysUnavailable("the JWKS could not be fetched")
        return self._keys.get(kid)

    async def all_keys(self) -> list[VerificationKey]:
        """Every key currently known (refreshing if stale)."""
        now = self._clock()
        if self._stale(now) and (self._may_fetch(now) or self._lock.locked()):
            await self._refresh(None)
        if self._fetched_at is None:
            raise KeysUnavailable("the JWKS could not be fetched")
        return list(self._keys.values())

    async def _refresh(self, wanted: str | None) -> None:
        async with self._lock:
            now = self._clock()
            # Someone else refreshed while we waited: use their result if it helps.
            if not self._stale(now) and wanted in self._keys:
                return
            if not self._may_fetch(now):
                return
            self._attempted_at = now
            self.fetch_count += 1
            try:
                document = await self._fetch()
                keys = keys_from_jwks(document, self._policy)
            except (httpx2.HTTPError, UnusableKey, ValueError) as exc:
                logger.warning("JWKS refresh from %s failed: %s", self.url, type(exc).__name__)
                return
            self._keys = keys
            self._fetched_at = self._clock()

    async def _fetch(self) -> Any:
        async with (
            httpx2.AsyncClient(timeout=self._timeout, follow_redirects=False) as client,
            client.stream("GET", self.url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise ValueError(f"JWKS endpoint answered {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS document too large")
        return json.loads(bytes(body))


def static_keys(configs: Iterable[StaticKey], policy: AlgorithmsConfig) -> dict[str | None, VerificationKey]:
    """Configured keys by kid; raises `UnusableKey` on an unusable key or a duplicated kid (fail at load)."""
    out: dict[str | None, VerificationKey] = {}
    for config in configs:
        key = key_from_static(config, policy)
        if key.kid in out:
            raise UnusableKey(f"two configured keys share kid {key.kid!r}")
        out[key.kid] = key
    return out
