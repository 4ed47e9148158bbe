"""Per-principal rate and concurrency limits hold under a real concurrent burst over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import httpx2
import pytest
from auth_servers import bound_socket, serve_asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pgwarden.proxy.auth import AuthConfig, AuthMiddleware, AuthRefusal
from pgwarden.proxy.auth.api_keys import hash_api_key
from pgwarden.proxy.auth.config import LimitsConfig, RateLimit
from pgwarden.proxy.auth.limits import PrincipalLimiter

pytestmark = pytest.mark.anyio

KEYS = {name: f"pgw_{name}-0123456789abcdefghijklmnopqrstuvwxyz" for name in ("burst", "slow", "other")}
BURST = 5
MAX_CONCURRENT = 3


@dataclass
class Limited:
    base: str
    refusals: list[AuthRefusal]
    release: threading.Event = field(default_factory=threading.Event)
    handled: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    async def send(self, who: str, method: str = "POST") -> httpx2.Response:
        async with httpx2.AsyncClient(timeout=30) as client:
            return await client.request(
                method, self.base + "/mcp", headers={"Authorization": f"Bearer {KEYS[who]}"}
            )


@pytest.fixture
def limited() -> Iterator[Limited]:
    sock = bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    refusals: list[AuthRefusal] = []
    state = Limited(base, refusals)

    async def handler(request: Request) -> JSONResponse:
        state.handled += 1
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if request.method == "POST" and request.headers.get("x-block") != "no":
                await anyio.to_thread.run_sync(state.release.wait)
            return JSONResponse({"ok": True})
        finally:
            state.in_flight -= 1

    config = AuthConfig.model_validate(
        {
            "resource": base + "/mcp",
            "api_keys": [
                {"name": n, "hash": hash_api_key(k), "principal": {"id": n}} for n, k in KEYS.items()
            ],
            "limits": {
                "default": {"max_concurrent": MAX_CONCURRENT},
                "per_principal": {"burst": {"rate_per_second": 0.001, "burst": BURST}},
            },
        }
    )
    app = AuthMiddleware(
        Starlette(routes=[Route("/mcp", handler, methods=["GET", "POST"])]),
        config,
        on_refusal=refusals.append,
    )
    with serve_asgi(app, sock):
        yield state
        state.release.set()


async def test_exactly_burst_requests_pass_a_simultaneous_flood(limited: Limited) -> None:
    limited.release.set()  # handlers answer at once: only the token bucket limits
    responses: list[httpx2.Response] = []

    async def one() -> None:
        responses.append(await limited.send("burst", "GET"))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * BURST + [429] * (20 - BURST)
    assert limited.handled == BURST
    refused = [r for r in responses if r.status_code == 429]
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    error = refused[0].json()["error"]
    assert error["data"]["reason"] == "auth.rate_limited"
    assert "retry after" in error["message"]
    assert {(e.code.value, e.principal_id) for e in limited.refusals} == {("auth.rate_limited", "burst")}
    # Another principal is not affected by this one's empty bucket.
    assert (await limited.send("other", "GET")).status_code == 200


async def test_concurrency_cap_holds(limited: Limited) -> None:
    responses: list[httpx2.Response] = []
    refused_back = anyio.Event()

    async def one() -> None:
        responses.append(await limited.send("slow"))
        if len(responses) == 10 - MAX_CONCURRENT:
            refused_back.set()

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(one)
        # The refused ones come back while the admitted ones are still blocked in the handler.
        with anyio.fail_after(20):
            await refused_back.wait()
        assert limited.in_flight == MAX_CONCURRENT
        assert all(r.status_code == 429 for r in responses)
        limited.release.set()
    assert sorted(r.status_code for r in responses) == [200] * MAX_CONCURRENT + [429] * (10 - MAX_CONCURRENT)
    assert limited.max_in_flight == MAX_CONCURRENT
    assert {e.code.value for e in limited.refusals} == {"auth.concurrency_limited"}
    # Slots are given back: the next request is admitted.
    assert (await limited.send("slow")).status_code == 200


async def test_event_streams_do_not_hold_concurrency_slots(limited: Limited) -> None:
    """GET (the long-lived SSE stream) is not counted; POSTs still get their slots."""
    limited.release.set()
    gets = [await limited.send("slow", "GET") for _ in range(MAX_CONCURRENT + 2)]
    assert all(r.status_code == 200 for r in gets)


def test_token_bucket_refills_at_its_rate() -> None:
    now = [100.0]
    limiter = PrincipalLimiter(
        LimitsConfig(default=RateLimit(rate_per_second=2.0, burst=2)), clock=lambda: now[0]
    )
    assert limiter.take("p") is None and limiter.take("p") is None
    wait = limiter.take("p")
    assert wait == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.take("p") is None
    assert limiter.take("p") == pytest.approx(0.5)


def test_unlimited_by_default() -> None:
    limiter = PrincipalLimiter(LimitsConfig())
    assert all(limiter.take("p") is None for _ in range(1000))
    assert all(limiter.enter("p") for _ in range(1000))
