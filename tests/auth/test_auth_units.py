"""Pure pieces: configuration validation, principal normalisation, claim mapping, API keys, CLI."""

from __future__ import annotations

import doctest
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from pgwarden.cli import main as pgwarden_main
from pgwarden.proxy.auth import (
    AuthConfig,
    PrincipalError,
    parse_principal_option,
    principal_from_mapping,
)
from pgwarden.proxy.auth import claims as claims_module
from pgwarden.proxy.auth.api_keys import ApiKeyStore, hash_api_key, new_api_key
from pgwarden.proxy.auth.claims import principal_from_claims
from pgwarden.proxy.auth.config import ApiKeyConfig, ClaimMapping, OriginConfig
from pgwarden.proxy.auth.metadata import metadata_url
from pgwarden.proxy.auth.origin import HostOriginCheck

JWKS = "https://idp.example/jwks"
BASE: dict[str, Any] = {
    "resource": "https://pgwarden.example/mcp",
    "jwt": {"issuer": "https://idp.example", "jwks_url": JWKS},
}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"jwt": {"issuer": "x", "jwks_url": JWKS, "algorithms": {"RSA": ["HS256"]}}}, "symmetric"),
        ({"jwt": {"issuer": "x", "jwks_url": JWKS, "algorithms": {"RSA": ["none"]}}}, "none"),
        ({"jwt": {"issuer": "x", "jwks_url": JWKS, "algorithms": {"EC": ["RS256"]}}}, "not an allowed EC"),
        ({"jwt": {"issuer": "x", "jwks_url": "http://idp.example/jwks"}}, "https"),
        ({"jwt": {"issuer": "x"}}, "jwks_url or keys"),
        ({"jwt": {"issuer": "x", "jwks_url": JWKS, "leeway_seconds": 3600}}, "less than or equal"),
        ({"resource": "http://pgwarden.example/mcp"}, "https unless"),
        ({"resource": "/mcp"}, "absolute"),
        ({"jwt": None}, "needs jwt, api_keys"),
        ({"api_keys": [{"name": "k", "hash": "plain-text-key", "principal": {"id": "a"}}]}, "sha256"),
        (
            {"api_keys": [{"name": "k", "hash": hash_api_key("x" * 30), "principal": {"role": "a"}}]},
            "unknown",
        ),
        ({"limits": {"default": {"rate_per_second": 1}}}, "go together"),
        ({"unexpected": 1}, "Extra inputs"),
    ],
)
def test_configuration_is_refused_at_load(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AuthConfig.model_validate({**BASE, **patch})


def test_loopback_http_is_allowed_for_development() -> None:
    config = AuthConfig.model_validate(
        {
            "resource": "http://127.0.0.1:8808/mcp",
            "jwt": {"issuer": "x", "jwks_url": "http://127.0.0.1:9/jwks"},
        }
    )
    assert config.audiences == ("http://127.0.0.1:8808/mcp",)
    assert metadata_url(config.resource) == "http://127.0.0.1:8808/.well-known/oauth-protected-resource/mcp"


def test_anonymous_only_on_loopback() -> None:
    config = AuthConfig.model_validate({"resource": "http://127.0.0.1:8808/mcp", "anonymous": {"id": "dev"}})
    config.check_bind("127.0.0.1")
    with pytest.raises(ValueError, match="local development only"):
        config.check_bind("0.0.0.0")


def test_principal_from_mapping() -> None:
    p = principal_from_mapping({"id": "alice", "roles": "b a a", "tenant": 7, "claims": {"team": ["x"]}})
    assert p.to_cel() == {
        "id": "alice",
        "roles": ["a", "b"],
        "tenant": 7,
        "claims": {"team": ["x"]},
        "scopes": [],
        "auth_method": "config",
    }
    with pytest.raises(TypeError):
        p.claims["team"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"id": ""},
        {"id": True},
        {"id": "a", "roles": [1]},
        {"id": "a", "tenant": 1.5},
        {"id": "a", "role": "x"},
    ],
)
def test_principal_from_mapping_refuses(bad: dict[str, Any]) -> None:
    with pytest.raises(PrincipalError):
        principal_from_mapping(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice", {"id": "alice", "roles": [], "tenant": None}),
        (
            "alice,roles=analyst|support,tenant=7",
            {"id": "alice", "roles": ["analyst", "support"], "tenant": 7},
        ),
        ("bob,tenant=acme", {"id": "bob", "roles": [], "tenant": "acme"}),
        (
            '{"id": "carol", "roles": ["admin"], "tenant": 3}',
            {"id": "carol", "roles": ["admin"], "tenant": 3},
        ),
    ],
)
def test_parse_principal_option(text: str, expected: dict[str, Any]) -> None:
    cel = parse_principal_option(text).to_cel()
    assert {k: cel[k] for k in expected} == expected


def test_claim_mapping_with_nested_paths() -> None:
    mapping = ClaimMapping.model_validate(
        {
            "id": "preferred_username",
            "roles": "realm_access.roles",
            "tenant": "org.id",
            "copy": ["email", "org.name"],
        }
    )
    p = principal_from_claims(
        {
            "sub": "123",
            "preferred_username": "alice",
            "realm_access": {"roles": ["analyst"]},
            "org": {"id": "acme", "name": "Acme"},
            "scp": ["a", "b"],
            "email": "a@acme.test",
            "secret_claim": "not copied",
        },
        mapping,
    )
    assert (p.id, p.roles, p.tenant, p.scopes) == ("alice", ("analyst",), "acme", ("a", "b"))
    assert dict(p.claims) == {"email": "a@acme.test", "org.name": "Acme"}


@pytest.mark.parametrize(
    "claims", [{}, {"sub": ""}, {"sub": "a", "groups": "x" * 300}, {"sub": "a", "groups": {"a": 1}}]
)
def test_claims_that_do_not_map_are_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(PrincipalError):
        principal_from_claims(claims, ClaimMapping())


def test_claims_doctest() -> None:
    assert doctest.testmod(claims_module).failed == 0


def test_api_key_store_matches_only_the_right_key() -> None:
    key_a, key_b = new_api_key(), new_api_key()
    store = ApiKeyStore(
        [
            ApiKeyConfig(name="a", hash=hash_api_key(key_a), principal={"id": "alice"}),
            ApiKeyConfig(name="b", hash=hash_api_key(key_b), principal={"id": "bob", "tenant": 2}),
        ]
    )
    match = store.match(key_b)
    assert match is not None and match.name == "b" and match.principal.id == "bob"
    assert match.principal.auth_method == "api_key"
    assert store.match(key_a[:-1]) is None
    assert store.match(hash_api_key(key_a)) is None  # the stored hash is not itself a key


def test_host_and_origin_patterns() -> None:
    check = HostOriginCheck(
        OriginConfig(allowed_origins=("https://console.example", "http://localhost:*")),
        "https://pgw.example/mcp",
    )
    assert (
        check.host_ok("pgw.example") and check.host_ok("PGW.example:443") and check.host_ok("127.0.0.1:8808")
    )
    assert (
        not check.host_ok("evil.example")
        and not check.host_ok(None)
        and not check.host_ok("pgw.example.evil")
    )
    assert check.origin_ok(None) and check.origin_ok("https://console.example")
    assert check.origin_ok("http://localhost:6274")
    assert not check.origin_ok("http://localhost:6274.evil.example")
    assert not check.origin_ok("https://console.example.evil") and not check.origin_ok("null")


def test_cli_hash_key_and_new_key() -> None:
    runner = CliRunner()
    key = new_api_key()
    result = runner.invoke(pgwarden_main, ["auth", "hash-key"], input=key + "\n")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == hash_api_key(key)
    short = runner.invoke(pgwarden_main, ["auth", "hash-key"], input="short\n")
    assert short.exit_code != 0
    made = runner.invoke(pgwarden_main, ["auth", "new-key", "--name", "ci"])
    assert made.exit_code == 0
    printed_key = made.stderr.split(": ", 1)[1].strip()
    assert hash_api_key(printed_key) in made.stdout
    assert printed_key not in made.stdout


def test_principal_is_the_mapping_the_policy_engine_takes() -> None:
    from pgwarden.proxy.policy.activation import Principal as PolicyPrincipal

    p = principal_from_mapping({"id": "alice", "roles": ["analyst"], "tenant": 7, "claims": {"email": "a@x"}})
    assert dict(p) == p.to_cel()
    assert p["roles"] == ["analyst"] and p.get("tenant") == 7 and "id" in p and len(p) == 6
    prepared = PolicyPrincipal(p)
    assert prepared.raw["id"] == "alice" and prepared.raw["tenant"] == 7
    assert prepared.raw["claims"] == {"email": "a@x"}


def test_principals_are_hashable_and_compare_by_value() -> None:
    a = principal_from_mapping({"id": "a", "claims": {"x": [1]}})
    b = principal_from_mapping({"id": "a", "claims": {"x": [1]}})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != principal_from_mapping({"id": "a", "claims": {"x": [2]}})
