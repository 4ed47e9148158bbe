"""The HTTP front refuses every bad credential before the app sees the request, and lets good
ones through with the right principal — real JWKS, real keys, real HTTP on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from auth_echo import BOB_KEY, ISSUER, SCOPE, EchoDeployment
from auth_servers import SigningKey, b64url

pytestmark = pytest.mark.anyio

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "auth-test", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def post(
    url: str, headers: dict[str, str] | None = None, *, params: dict[str, str] | None = None
) -> Any:
    async with httpx2.AsyncClient(timeout=10) as client:
        return await client.post(
            url, json=INITIALIZE, headers={**MCP_HEADERS, **(headers or {})}, params=params
        )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hs256_with_public_key(key: SigningKey, claims: dict[str, Any]) -> str:
    """The classic algorithm-confusion token: HMAC-SHA256 keyed with the RSA *public* key PEM."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    return f"{header}.{payload}.{b64url(hmac.new(key.public_pem(), signing_input, hashlib.sha256).digest())}"


def alg_none(key: SigningKey, claims: dict[str, Any]) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": key.kid}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def tampered(key: SigningKey, claims: dict[str, Any]) -> str:
    """A valid token whose payload was edited afterwards (roles and tenant escalated)."""
    header, _payload, signature = key.sign(claims).split(".")
    evil = {**claims, "groups": ["admin"], "tenant_id": 2}
    return f"{header}.{b64url(json.dumps(evil).encode())}.{signature}"


def wrong_key_known_kid(key: SigningKey, claims: dict[str, Any]) -> str:
    return SigningKey.rsa(key.kid).sign(claims)  # same kid as a published key, different key


def embedded_jwk(key: SigningKey, claims: dict[str, Any]) -> str:
    """Signed by an attacker key that is embedded in the header (`jwk`), with no kid."""
    attacker = SigningKey.rsa("attacker")
    return jwt_encode_no_kid(attacker, claims, {"jwk": attacker.public_jwk()})


def jwt_encode_no_kid(key: SigningKey, claims: dict[str, Any], headers: dict[str, Any]) -> str:
    import jwt

    return jwt.encode(claims, key.private, algorithm="RS256", headers=headers)


Forge = Callable[[EchoDeployment, SigningKey, SigningKey], dict[str, str]]

# (name, forge headers, status, error code in WWW-Authenticate or None for a bare challenge)
BAD_REQUESTS: list[tuple[str, Forge, int, str | None]] = [
    ("missing token", lambda d, r, e: {}, 401, None),
    ("basic scheme", lambda d, r, e: {"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="}, 401, None),
    ("bearer without token", lambda d, r, e: {"Authorization": "Bearer"}, 401, "invalid_token"),
    ("bearer with spaces", lambda d, r, e: {"Authorization": "Bearer a b c"}, 401, "invalid_token"),
    ("not a jwt", lambda d, r, e: bearer("not-a-jwt-nor-a-key"), 401, "invalid_token"),
    ("garbage jwt", lambda d, r, e: bearer("eyJhbGciOi.eyJzdWIi.c2ln"), 401, "invalid_token"),
    ("expired", lambda d, r, e: bearer(r.sign(d.claims(exp=int(time.time()) - 60))), 401, "invalid_token"),
    (
        "not yet valid",
        lambda d, r, e: bearer(r.sign(d.claims(nbf=int(time.time()) + 3600))),
        401,
        "invalid_token",
    ),
    (
        "wrong audience",
        lambda d, r, e: bearer(r.sign(d.claims(aud="https://other.example/mcp"))),
        401,
        "invalid_token",
    ),
    ("no audience", lambda d, r, e: bearer(r.sign(d.claims(aud=None))), 401, "invalid_token"),
    (
        "wrong issuer",
        lambda d, r, e: bearer(r.sign(d.claims(iss="https://evil.example"))),
        401,
        "invalid_token",
    ),
    ("no expiry", lambda d, r, e: bearer(r.sign(d.claims(exp=None))), 401, "invalid_token"),
    ("no subject", lambda d, r, e: bearer(r.sign(d.claims(sub=None))), 401, "invalid_token"),
    (
        "wrong key, known kid",
        lambda d, r, e: bearer(wrong_key_known_kid(r, d.claims())),
        401,
        "invalid_token",
    ),
    ("alg none", lambda d, r, e: bearer(alg_none(r, d.claims())), 401, "invalid_token"),
    (
        "HS256 keyed with RSA public key",
        lambda d, r, e: bearer(hs256_with_public_key(r, d.claims())),
        401,
        "invalid_token",
    ),
    ("tampered payload", lambda d, r, e: bearer(tampered(r, d.claims())), 401, "invalid_token"),
    ("embedded jwk header", lambda d, r, e: bearer(embedded_jwk(r, d.claims())), 401, "invalid_token"),
    (
        "RS256 token naming the EC kid",
        lambda d, r, e: bearer(SigningKey(e.kid, r.private, "RS256").sign(d.claims())),
        401,
        "invalid_token",
    ),
    (
        "PS512 not in the allowed list",
        lambda d, r, e: bearer(r.sign(d.claims(), alg="PS512")),
        401,
        "invalid_token",
    ),
    ("unknown api key", lambda d, r, e: bearer(BOB_KEY[:-1] + "X"), 401, "invalid_token"),
    (
        "missing required scope",
        lambda d, r, e: bearer(r.sign(d.claims(scope="openid"))),
        403,
        "insufficient_scope",
    ),
]


@pytest.mark.parametrize(("name", "forge", "status", "error"), BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS])
async def test_bad_credentials_are_refused_before_the_app(
    echo: EchoDeployment,
    rsa_key: SigningKey,
    ec_key: SigningKey,
    name: str,
    forge: Forge,
    status: int,
    error: str | None,
) -> None:
    headers = forge(echo, rsa_key, ec_key)
    before = echo.counter.requests
    response = await post(echo.mcp_url, headers)
    assert response.status_code == status, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{echo.url}/.well-known/oauth-protected-resource/mcp"' in challenge
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge
        assert response.json()["error"] == error
    if status == 403:
        assert f'scope="{SCOPE}"' in challenge
    assert echo.counter.requests == before, "a refused request reached the app"
    # The response never echoes the credential.
    for value in headers.values():
        token = value.partition(" ")[2]
        if len(token) > 8:
            assert token not in response.text and token not in challenge


@pytest.mark.parametrize("signer", ["rsa", "ec", "rsa-ps256"])
async def test_valid_tokens_reach_the_app(
    echo: EchoDeployment, rsa_key: SigningKey, ec_key: SigningKey, signer: str
) -> None:
    if signer == "rsa":
        token = rsa_key.sign(echo.claims())
    elif signer == "ec":
        token = ec_key.sign(echo.claims())
    else:
        token = rsa_key.sign(echo.claims(), alg="PS256")
    before = echo.counter.requests
    response = await post(echo.mcp_url, bearer(token))
    assert response.status_code == 200, response.text
    assert echo.counter.requests == before + 1
    assert "authorization" not in echo.counter.header_names[-1]


async def test_expiry_within_leeway_is_accepted(echo: EchoDeployment, rsa_key: SigningKey) -> None:
    token = rsa_key.sign(echo.claims(exp=int(time.time()) - 2))  # leeway is 5 s
    assert (await post(echo.mcp_url, bearer(token))).status_code == 200


async def test_audience_list_containing_this_resource_is_accepted(
    echo: EchoDeployment, rsa_key: SigningKey
) -> None:
    token = rsa_key.sign(echo.claims(aud=["https://other.example", echo.mcp_url]))
    assert (await post(echo.mcp_url, bearer(token))).status_code == 200


async def test_api_key_is_accepted(echo: EchoDeployment) -> None:
    response = await post(echo.mcp_url, bearer(BOB_KEY))
    assert response.status_code == 200, response.text


async def test_token_in_query_string_is_refused(echo: EchoDeployment, rsa_key: SigningKey) -> None:
    before = echo.counter.requests
    response = await post(echo.mcp_url, params={"access_token": rsa_key.sign(echo.claims())})
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
    assert echo.counter.requests == before


async def test_two_authorization_headers_are_refused(echo: EchoDeployment, rsa_key: SigningKey) -> None:
    token = rsa_key.sign(echo.claims())
    before = echo.counter.requests
    async with httpx2.AsyncClient(timeout=10) as client:
        response = await client.post(
            echo.mcp_url,
            json=INITIALIZE,
            headers=httpx2.Headers(
                [
                    *MCP_HEADERS.items(),
                    ("Authorization", f"Bearer {token}"),
                    ("Authorization", f"Bearer {BOB_KEY}"),
                ]
            ),
        )
    assert response.status_code == 400
    assert echo.counter.requests == before


async def test_protected_resource_metadata(echo: EchoDeployment) -> None:
    async with httpx2.AsyncClient(timeout=10) as client:
        for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
            response = await client.get(echo.url + path)
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == "*"
            doc = response.json()
            assert doc["resource"] == echo.mcp_url
            assert doc["authorization_servers"] == [ISSUER]
            assert doc["scopes_supported"] == [SCOPE]
            assert doc["bearer_methods_supported"] == ["header"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "http://localhost:5173.evil.example"}, 403),
        ({"Host": "evil.example"}, 421),
        ({"Host": "127.0.0.1.evil.example:80"}, 421),
        ({"Origin": "http://localhost:5173"}, 200),
    ],
)
async def test_origin_and_host_checks(
    echo: EchoDeployment, rsa_key: SigningKey, headers: dict[str, str], status: int
) -> None:
    before = echo.counter.requests
    response = await post(echo.mcp_url, {**bearer(rsa_key.sign(echo.claims())), **headers})
    assert response.status_code == status, response.text
    assert echo.counter.requests == before + (1 if status == 200 else 0)


async def test_refusals_are_reported_to_the_audit_hook(echo: EchoDeployment, rsa_key: SigningKey) -> None:
    echo.refusals.clear()
    await post(echo.mcp_url, bearer(rsa_key.sign(echo.claims(exp=int(time.time()) - 60))))
    await post(echo.mcp_url, bearer(rsa_key.sign(echo.claims(scope="openid"))))
    codes = [(r.code.value, r.status, r.principal_id) for r in echo.refusals]
    assert codes == [("auth.invalid_token", 401, None), ("auth.insufficient_scope", 403, "alice")]
    record = echo.refusals[0].to_record()
    assert record["reason"] == "token expired"
    assert all("eyJ" not in json.dumps(r.to_record()) for r in echo.refusals)


async def test_unknown_kids_cannot_hammer_the_jwks_endpoint(
    echo: EchoDeployment, rsa_key: SigningKey
) -> None:
    """Fifty tokens with made-up kids cause at most one JWKS fetch (min refetch interval 60 s)."""
    before = echo.jwks.requests
    async with httpx2.AsyncClient(timeout=10) as client:
        for i in range(50):
            token = SigningKey(f"made-up-{i}", rsa_key.private, "RS256").sign(echo.claims())
            response = await client.post(
                echo.mcp_url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(token)}
            )
            assert response.status_code == 401
    assert echo.jwks.requests - before <= 1
