"""Refused HTTP requests land in the real hash-chained audit log, without credentials, and a flood
of junk credentials cannot force one fsync per request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from auth_servers import bound_socket, serve_asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pgwarden.proxy.audit.log import AuditLog
from pgwarden.proxy.audit.verify import verify_files
from pgwarden.proxy.auth import AuthConfig, AuthMiddleware
from pgwarden.proxy.auth.api_keys import hash_api_key
from pgwarden.proxy.auth.audit_hook import AUDIT_METHOD, RefusalAuditor

pytestmark = pytest.mark.anyio

KEY = "pgw_audited-0123456789abcdefghijklmnopqrstuvwxyz"
JUNK_PER_SECOND = 3


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[tuple[str, Path, list[float]]]:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    sock = bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = AuthConfig.model_validate(
        {
            "resource": base + "/mcp",
            "api_keys": [{"name": "a", "hash": hash_api_key(KEY), "principal": {"id": "auditee"}}],
            "limits": {"default": {"rate_per_second": 0.001, "burst": 2}},
        }
    )
    now = [1000.0]  # the auditor's clock, moved by the tests
    hook = RefusalAuditor(audit, unauthenticated_per_second=JUNK_PER_SECOND, clock=lambda: now[0])
    app = AuthMiddleware(Starlette(routes=[Route("/mcp", ok)]), config, on_refusal=hook)
    with serve_asgi(app, sock):
        yield base + "/mcp", path, now
    audit.close()


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_rate_limit_refusals_are_audited(audited: tuple[str, Path, list[float]]) -> None:
    url, path, _now = audited
    async with httpx2.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {KEY}"}) as client:
        statuses = [(await client.get(url)).status_code for _ in range(5)]
    assert statuses == [200, 200, 429, 429, 429]
    recs = records(path)
    assert [(r["method"], r["decision"], r["principal"], r["reason_code"]) for r in recs] == [
        (AUDIT_METHOD, "deny", "auditee", "auth.rate_limited")
    ] * 3
    assert KEY not in path.read_text()
    assert verify_files([path]).ok


async def test_junk_credentials_are_audited_at_a_bounded_rate(audited: tuple[str, Path, list[float]]) -> None:
    url, path, now = audited
    async with httpx2.AsyncClient(timeout=10) as client:
        for i in range(30):
            response = await client.get(url, headers={"Authorization": f"Bearer junk-{i}"})
            assert response.status_code == 401
        assert len(records(path)) == JUNK_PER_SECOND  # the burst; 27 counted, not written
        now[0] += 1.0 / JUNK_PER_SECOND  # one token refills
        await client.get(url, headers={"Authorization": "Bearer junk-last"})
    recs = records(path)
    assert len(recs) == JUNK_PER_SECOND + 1
    assert all(r["reason_code"] == "auth.invalid_token" and r["principal"] is None for r in recs)
    assert "27 similar unauthenticated refusal(s) not recorded" in str(recs[-1]["reason"])
    assert "junk-" not in path.read_text()
    assert verify_files([path]).ok
