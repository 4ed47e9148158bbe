"""End to end: `pgwarden proxy` over Streamable HTTP with the shipped policies, pgwarden's own
server as the upstream, the demo database behind it — three principals authenticated by a real
JWT (real JWKS on loopback) or API keys see different tool lists and different rows for the same
query, and the rows match what the database holds for their tenant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
import yaml
from auth_servers import SigningKey, jwks_server
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from pgwarden.proxy.auth.api_keys import hash_api_key

pytest.importorskip("pgwarden.proxy.pipeline.build", reason="the proxy pipeline is not in this checkout")

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
PGWARDEN = str(Path(sys.executable).parent / "pgwarden")
ISSUER = "https://idp.e2e.test"
BOB_KEY = "pgw_bob-e2e-0123456789abcdefghijklmnopqrstuvw"
CAROL_KEY = "pgw_carol-e2e-0123456789abcdefghijklmnopqrstu"
SAME_QUERY = "SELECT tenant_id, count(*) AS n FROM orders GROUP BY tenant_id ORDER BY tenant_id"


@dataclass
class Deployed:
    url: str
    key: SigningKey
    audit_path: Path

    def alice_token(self) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": self.url, "sub": "alice", "iat": now, "exp": now + 300}
        return self.key.sign({**claims, "groups": ["tenant-agent"], "tenant_id": 1})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def deployed(
    rsa_key: SigningKey, reader_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    work = tmp_path_factory.mktemp("e2e")
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with jwks_server(rsa_key) as jwks:
        config = {
            "upstream": {"command": [PGWARDEN, "server", "--dsn", reader_dsn]},
            "policy": [
                str(ROOT / "policies" / "tenant_isolated.yaml"),
                str(ROOT / "policies" / "analyst.yaml"),
            ],
            "catalog_dsn": reader_dsn,
            "listen": url,
            "audit": {"path": str(work / "audit.jsonl")},
            "auth": {
                "resource": url,
                "authorization_servers": [ISSUER],
                "jwt": {"issuer": ISSUER, "jwks_url": jwks.url, "claims": {"tenant": "tenant_id"}},
                "api_keys": [
                    {
                        "name": "bob",
                        "hash": hash_api_key(BOB_KEY),
                        "principal": {"id": "bob", "roles": ["tenant-agent"], "tenant": 2},
                    },
                    {
                        "name": "carol",
                        "hash": hash_api_key(CAROL_KEY),
                        "principal": {"id": "carol", "roles": ["analyst"]},
                    },
                ],
            },
        }
        config_path = work / "pgwarden.yaml"
        config_path.write_text(yaml.safe_dump(config))
        log = (work / "proxy.log").open("w")
        proc = subprocess.Popen(
            [PGWARDEN, "proxy", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (
                        httpx2.get(
                            f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"
                        ).status_code
                        == 200
                    ):
                        break
                except httpx2.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError("the proxy did not start:\n" + (work / "proxy.log").read_text())
                time.sleep(0.1)
            yield Deployed(url, rsa_key, work / "audit.jsonl")
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


async def session_view(url: str, token: str) -> tuple[set[str], list[tuple[int, int]]]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,  # type: ignore[arg-type]
    ):
        tools = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("query", {"sql": SAME_QUERY})
        assert not result.is_error, result
        structured: dict[str, Any] = result.structured_content or json.loads(result.content[0].text)  # type: ignore[union-attr]
        rows = []
        for row in structured["rows"]:
            tenant, n = (row["tenant_id"], row["n"]) if isinstance(row, dict) else (row[0], row[1])
            rows.append((int(tenant), int(n)))
        return tools, rows


def database_counts(admin_dsn: str) -> dict[int, int]:
    with psycopg.connect(admin_dsn) as conn:
        return dict(
            conn.execute("SELECT tenant_id, count(*) FROM public.orders GROUP BY tenant_id").fetchall()
        )


async def test_principals_see_their_own_tools_and_rows(deployed: Deployed, admin_dsn: str) -> None:
    truth = database_counts(admin_dsn)
    assert len(truth) >= 3, "the demo data should hold several tenants"

    alice_tools, alice_rows = await session_view(deployed.url, deployed.alice_token())
    bob_tools, bob_rows = await session_view(deployed.url, BOB_KEY)
    carol_tools, carol_rows = await session_view(deployed.url, CAROL_KEY)

    assert alice_rows == [(1, truth[1])]  # JWT principal, tenant 1: only its own orders
    assert bob_rows == [(2, truth[2])]  # API-key principal, tenant 2
    assert carol_rows == sorted(truth.items())  # analyst: every tenant, in aggregate

    assert "query" in alice_tools and alice_tools == bob_tools
    assert "explain_query" in carol_tools and "explain_query" not in alice_tools


async def test_bad_token_gets_nothing_through_the_proxy(deployed: Deployed, rsa_key: SigningKey) -> None:
    forged = SigningKey.rsa(rsa_key.kid).sign(
        {
            "iss": ISSUER,
            "aud": deployed.url,
            "sub": "mallory",
            "exp": int(time.time()) + 300,
            "groups": ["analyst"],
        }
    )
    async with httpx2.AsyncClient(timeout=10) as client:
        response = await client.post(
            deployed.url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {forged}"},
        )
    assert response.status_code == 401
    # The refusal is in the proxy's hash-chained audit log, without the token.
    text = deployed.audit_path.read_text()
    refusals = [r for r in map(json.loads, text.splitlines()) if r["method"] == "auth/refusal"]
    assert refusals and refusals[-1]["reason_code"] == "auth.invalid_token"
    assert forged not in text
