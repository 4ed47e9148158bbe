"""Signing-key rotation at the identity provider, seen through a real JWKS endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest
from auth_servers import JwksServer, SigningKey, bound_socket, jwks_server, serve_asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pgwarden.proxy.auth import AuthConfig, AuthMiddleware, principal_from_scope
from pgwarden.proxy.auth.config import AlgorithmsConfig
from pgwarden.proxy.auth.keys import JwksCache

pytestmark = pytest.mark.anyio

ISSUER = "https://idp.rotation.test"
MIN_REFETCH = 0.3
CACHE = 1.0


async def whoami(request: Request) -> JSONResponse:
    principal = principal_from_scope(request.scope)
    return JSONResponse({"id": principal.id if principal else None})


class Rotation:
    def __init__(self, base: str, jwks: JwksServer) -> None:
        self.base = base
        self.jwks = jwks

    def token(self, key: SigningKey) -> str:
        now = int(time.time())
        return key.sign(
            {"iss": ISSUER, "aud": self.base + "/mcp", "sub": key.kid, "iat": now, "exp": now + 300}
        )

    async def status(self, key: SigningKey) -> int:
        async with httpx2.AsyncClient(timeout=10) as client:
            response = await client.get(
                self.base + "/mcp", headers={"Authorization": f"Bearer {self.token(key)}"}
            )
        return response.status_code


@pytest.fixture
def first() -> SigningKey:
    return SigningKey.rsa("2026-01")


@pytest.fixture
def rotation(first: SigningKey) -> Iterator[Rotation]:
    with jwks_server(first) as jwks:
        sock = bound_socket()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = AuthConfig.model_validate(
            {
                "resource": base + "/mcp",
                "jwt": {
                    "issuer": ISSUER,
                    "jwks_url": jwks.url,
                    "jwks_min_refetch_seconds": MIN_REFETCH,
                    "jwks_cache_seconds": CACHE,
                },
            }
        )
        app = AuthMiddleware(Starlette(routes=[Route("/mcp", whoami)]), config)
        with serve_asgi(app, sock):
            yield Rotation(base, jwks)


async def test_key_rotation(rotation: Rotation, first: SigningKey) -> None:
    second = SigningKey.ec("2026-02")
    assert await rotation.status(first) == 200
    assert rotation.jwks.requests == 1

    # Not yet published: refused (after at most one refetch).
    assert await rotation.status(second) == 401
    # The IdP publishes the new key next to the old one; an unknown kid triggers a refetch.
    rotation.jwks.publish(first, second)
    await anyio.sleep(MIN_REFETCH + 0.05)
    assert await rotation.status(second) == 200
    assert await rotation.status(first) == 200

    # The IdP retires the old key: still honoured until the cache refreshes, refused after.
    rotation.jwks.publish(second)
    fetches = rotation.jwks.requests
    assert await rotation.status(first) == 200
    assert rotation.jwks.requests == fetches  # a known kid does not cause a fetch
    await anyio.sleep(CACHE + 0.05)
    assert await rotation.status(first) == 401
    assert await rotation.status(second) == 200


async def test_jwks_outage_keeps_known_keys_and_fails_closed_for_new_ones(first: SigningKey) -> None:
    with jwks_server(first) as jwks:
        cache = JwksCache(jwks.url, AlgorithmsConfig(), cache_seconds=0.2, min_refetch_seconds=0.0)
        assert (await cache.get(first.kid)) is not None
    # The endpoint is gone: the cached key still verifies, an unknown kid does not.
    await anyio.sleep(0.25)
    assert (await cache.get(first.kid)) is not None
    assert (await cache.get("2026-02")) is None


async def test_jwks_unreachable_from_the_start_is_unavailable_not_open() -> None:
    sock = bound_socket()  # bound, never listening: connection refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/jwks"
    cache = JwksCache(url, AlgorithmsConfig(), min_refetch_seconds=0.0, timeout_seconds=2)
    from pgwarden.proxy.auth.keys import KeysUnavailable

    with pytest.raises(KeysUnavailable):
        await cache.get("any")
    sock.close()


async def test_concurrent_first_requests_share_one_fetch(first: SigningKey) -> None:
    with jwks_server(first) as jwks:
        cache = JwksCache(jwks.url, AlgorithmsConfig(), min_refetch_seconds=60)
        found: list[Any] = []

        async def one() -> None:
            found.append(await cache.get(first.kid))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
    assert len(found) == 20 and all(k is not None for k in found)
    assert jwks.requests == 1


@pytest.mark.parametrize(
    ("jwk_patch", "reason"),
    [
        ({"use": "enc"}, "not for signatures"),
        ({"key_ops": ["encrypt"]}, "verify"),
        ({"alg": "HS256"}, "no configured algorithm"),
        ({"d": "AAAA"}, "private"),
    ],
)
def test_unusable_jwks_entries_are_skipped(first: SigningKey, jwk_patch: dict[str, Any], reason: str) -> None:
    from pgwarden.proxy.auth.keys import UnusableKey, key_from_jwk, keys_from_jwks

    jwk = {**first.public_jwk(), **jwk_patch}
    with pytest.raises(UnusableKey, match=reason):
        key_from_jwk(jwk, AlgorithmsConfig())
    assert keys_from_jwks({"keys": [jwk]}, AlgorithmsConfig()) == {}


def test_symmetric_jwk_is_refused(first: SigningKey) -> None:
    from pgwarden.proxy.auth.keys import UnusableKey, key_from_jwk

    with pytest.raises(UnusableKey):
        key_from_jwk({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, AlgorithmsConfig())


def test_duplicated_kid_in_jwks_is_dropped(first: SigningKey) -> None:
    from pgwarden.proxy.auth.keys import keys_from_jwks

    other = SigningKey.rsa(first.kid)
    assert keys_from_jwks({"keys": [first.public_jwk(), other.public_jwk()]}, AlgorithmsConfig()) == {}
