"""The HTTP front's fast path (`http_fast.py`), over real HTTP on loopback, in both answer modes.

Each front runs in this process (uvicorn on loopback, the layers as `serve_http` stacks them)
so a test can read the fast path's counter, next to the same front with the fast path off:

- the proxy as shipped (shipped policies, API keys, pgwarden's server on the demo database):
  answers, headers and audit records equal to the SDK path's, rows checked against Postgres,
  and every request the fast path must not take goes to the SDK and is answered as the SDK
  answers it (same status, same body);
- the same proxy without authentication on loopback: the SDK's Host/Origin check still holds;
- the relay with the allow-all test gate in front of the relay tests' upstream: cancellation
  by the client, a client that goes away, a session that ends while a call is in flight.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psycopg
import pytest
import uvicorn
from mcp_types import CONNECTION_CLOSED
from proxy_helpers import TEST_UPSTREAM, free_port
from proxy_helpers import rpc_answer as _answer

from pgwarden.proxy.auth import AuthMiddleware, require_principal
from pgwarden.proxy.auth.api_keys import hash_api_key
from pgwarden.proxy.config import load_config
from pgwarden.proxy.pipeline.build import build_pipeline, tool_map_resolver, upstream_spec
from pgwarden.proxy.relay.http_fast import HttpFastPath
from pgwarden.proxy.relay.serve import (
    HTTP_FAST_PATH_ENV,
    build,
    http_fast_path_enabled,
    http_front,
    uvicorn_config,
)
from pgwarden.proxy.relay.upstream import UpstreamSpec

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
PGWARDEN = str(Path(sys.executable).parent / "pgwarden")
MODES = ["sse", "json"]
BOB_KEY = "pgw_bob-fastpath-0123456789abcdefghijklmnopqrstu"  # tenant 2, tenant-agent
CAROL_KEY = "pgw_carol-fastpath-0123456789abcdefghijklmnopqrs"  # analyst, every tenant
PROTOCOL = "2025-06-18"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
SAME_QUERY = "SELECT tenant_id, count(*) AS n FROM orders GROUP BY tenant_id ORDER BY tenant_id"
# Volatile parts of an audit record: when, how long, which session, the chain itself.
VOLATILE = {"ts", "seq", "hash", "prev_hash", "duration_us", "session_id", "trace_id", "span_id", "intent"}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


# -- running fronts in this process ----------------------------------------------------------------


@dataclass
class Front:
    url: str
    fast: HttpFastPath | None
    audit: Path | None = None
    gate: Any = None

    @property
    def served(self) -> int:
        return self.fast.served if self.fast is not None else 0


@asynccontextmanager
async def _serving(
    spec: UpstreamSpec,
    gate: Any,
    principal_for: Callable[[Any], Any],
    *,
    wrap: Any,
    json_response: bool,
    fast: bool,
    on_connected: Any = None,
) -> AsyncIterator[tuple[str, HttpFastPath | None, uvicorn.Server]]:
    """What `serve_http` runs, with the fast path layer handed back."""
    port = free_port()
    upstream, _relay, server = build(spec, gate, principal_for, transport="http")
    app, layer = http_front(server, wrap=wrap, json_response=json_response, fast_path=fast)
    assert (layer is not None) is fast
    web = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=port))
    # Several servers run at once in this thread: none may take over the process's signal
    # handlers (uvicorn would restore them out of order, and sse-starlette reads them to
    # decide that a server is shutting down).
    web.capture_signals = nullcontext  # type: ignore[method-assign]
    done = anyio.Event()

    async def serve() -> None:
        try:
            await web.serve()
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        await tg.start(upstream.run)
        if on_connected is not None:
            await on_connected(upstream)
        tg.start_soon(serve)
        while not web.started:  # noqa: ASYNC110 - uvicorn offers no event for this
            await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}/mcp", layer, web
        finally:
            web.should_exit = True
            with anyio.move_on_after(10):
                await done.wait()
            tg.cancel_scope.cancel()


@dataclass
class Fronts:
    """Fronts started on demand and kept for the module, by (kind, mode, fast)."""

    reader_dsn: str
    tmp: Path
    tg: Any
    running: dict[tuple[str, str, bool], Front] = field(default_factory=dict)
    stops: list[anyio.Event] = field(default_factory=list)

    async def get(self, kind: str, mode: str, fast: bool) -> Front:
        key = (kind, mode, fast)
        if key not in self.running:
            ready: anyio.Event = anyio.Event()
            stop = anyio.Event()
            holder: list[Front] = []
            self.tg.start_soon(self._run, kind, mode, fast, ready, stop, holder)
            with anyio.fail_after(60):
                await ready.wait()
            self.stops.append(stop)
            self.running[key] = holder[0]
        return self.running[key]

    async def _run(
        self, kind: str, mode: str, fast: bool, ready: anyio.Event, stop: anyio.Event, holder: list[Front]
    ) -> None:
        json_response = mode == "json"
        if kind == "relay":
            from gates import AllowAllGate

            gate = AllowAllGate()
            spec = UpstreamSpec(command=(sys.executable, str(TEST_UPSTREAM)), protocol="legacy")
            async with _serving(
                spec, gate, lambda _ctx: {"id": "test"}, wrap=None, json_response=json_response, fast=fast
            ) as (url, layer, _web):
                holder.append(Front(url, layer, gate=gate))
                ready.set()
                await stop.wait()
            return
        audit = self.tmp / f"audit-{kind}-{mode}-{fast}.jsonl"
        config = _config(self.reader_dsn, audit, auth=kind == "auth")
        pipeline = build_pipeline(config, watch=False)
        try:
            if kind == "auth":
                auth = config.auth
                assert auth is not None
                principal_for: Callable[[Any], Any] = require_principal
                wrap: Any = lambda app: AuthMiddleware(app, auth)  # noqa: E731
            else:
                fixed = {"id": "ann", "roles": ["analyst"]}
                from pgwarden.proxy.auth import principal_from_mapping

                principal = principal_from_mapping(fixed)
                principal_for, wrap = (lambda _ctx: principal), None
            hook = tool_map_resolver(config, pipeline.gate, report=sys.stderr)
            async with _serving(
                upstream_spec(config),
                pipeline.gate,
                principal_for,
                wrap=wrap,
                json_response=json_response,
                fast=fast,
                on_connected=hook,
            ) as (url, layer, _web):
                holder.append(Front(url, layer, audit=audit, gate=pipeline.gate))
                ready.set()
                await stop.wait()
        finally:
            pipeline.close()


def _config(reader_dsn: str, audit: Path, *, auth: bool) -> Any:
    data: dict[str, Any] = {
        "upstream": {"command": [PGWARDEN, "server", "--dsn", reader_dsn]},
        "policy": [str(ROOT / "policies" / "tenant_isolated.yaml"), str(ROOT / "policies" / "analyst.yaml")],
        "catalog_dsn": reader_dsn,
        "listen": "http://127.0.0.1:8808/mcp",
        "audit": {"path": str(audit)},
    }
    if auth:
        data["auth"] = {
            "resource": "http://127.0.0.1:8808/mcp",
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
        }
    else:
        data["principal"] = {"id": "ann", "roles": ["analyst"]}
    return load_config(data)


@pytest.fixture(scope="module")
async def fronts(reader_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fronts]:
    async with anyio.create_task_group() as tg:
        registry = Fronts(reader_dsn, tmp_path_factory.mktemp("http-fastpath"), tg)
        try:
            yield registry
        finally:
            for stop in registry.stops:
                stop.set()


# -- raw HTTP helpers ------------------------------------------------------------------------------


def _message(method: str, params: dict[str, Any] | None = None, id_: int | str | None = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if id_ is not None:
        message["id"] = id_
    return message


def _initialize(capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    return _message(
        "initialize",
        {
            "protocolVersion": PROTOCOL,
            "capabilities": capabilities or {},
            "clientInfo": {"name": "fastpath-test", "version": "0"},
        },
    )


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def _open_session(
    http: httpx2.AsyncClient, url: str, key: str | None, capabilities: dict[str, Any] | None = None
) -> str:
    response = await http.post(url, json=_initialize(capabilities), headers={**ACCEPT, **_auth(key)})
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    ack = await http.post(
        url, json=_message("notifications/initialized", id_=None), headers=_headers(key, session)
    )
    assert ack.status_code == 202
    return session


def _headers(key: str | None, session: str) -> dict[str, str]:
    headers = {**ACCEPT, **_auth(key), "mcp-session-id": session, "mcp-protocol-version": PROTOCOL}
    return {k.lower(): v for k, v in headers.items()}


def _shape(response: httpx2.Response, session: str) -> tuple[int, list[tuple[str, str]], str]:
    """Status, headers (without the date) and body, with session ids replaced (the request's,
    and a new one the SDK may have opened for a request without one)."""
    ids = {session, response.headers.get("mcp-session-id") or session}

    def plain(text: str) -> str:
        for sid in ids:
            text = text.replace(sid, "<session>")
        return text

    headers = [(k.lower(), plain(v)) for k, v in response.headers.multi_items() if k.lower() != "date"]
    return response.status_code, headers, plain(response.text)


async def _audit_records(path: Path | None, skip: int, count: int) -> list[dict[str, Any]]:
    """The records after the first `skip`, once there are `count` of them (a call's record may
    follow its answer by a moment; the front runs on this event loop), or what there is after 10 s."""
    assert path is not None
    deadline = time.monotonic() + 10
    while True:
        lines = _audit_lines(path)[skip:]
        if len(lines) >= count or time.monotonic() > deadline:
            break
        await anyio.sleep(0.01)
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r.get("session_id"), str) and r["session_id"] for r in records)
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


def _audit_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _audit_count(path: Path | None) -> int:
    assert path is not None
    return len(_audit_lines(path))


def _database_counts(admin_dsn: str) -> dict[int, int]:
    with psycopg.connect(admin_dsn) as conn:
        return dict(
            conn.execute("SELECT tenant_id, count(*) FROM public.orders GROUP BY tenant_id").fetchall()
        )


def _rows(answer: dict[str, Any]) -> list[tuple[int, int]]:
    result = answer["result"]
    assert not result.get("isError"), result
    structured = result.get("structuredContent") or json.loads(result["content"][0]["text"])
    return [
        (int(row["tenant_id"]), int(row["n"])) if isinstance(row, dict) else (int(row[0]), int(row[1]))
        for row in structured["rows"]
    ]


# -- the switch ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "on"), [(None, True), ("", True), ("on", True), ("off", False), (" OFF ", False)]
)
def test_the_fast_path_is_on_unless_switched_off(
    value: str | None, on: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(HTTP_FAST_PATH_ENV, raising=False)
    else:
        monkeypatch.setenv(HTTP_FAST_PATH_ENV, value)
    assert http_fast_path_enabled() is on


@pytest.mark.parametrize("value", ["false", "0", "disabled"])
def test_an_unknown_switch_value_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HTTP_FAST_PATH_ENV, value)
    with pytest.raises(ValueError, match="on or off"):
        http_fast_path_enabled()


# -- same answers, same audit ----------------------------------------------------------------------

# (method, params, audited): each call the gate sees is audited once; `ping` is passed through
# and a malformed call is refused before the gate (a JSON-RPC error, as the SDK path answers it).
CALLS: list[tuple[str, dict[str, Any], bool]] = [
    ("tools/call", {"name": "query", "arguments": {"sql": SAME_QUERY}}, True),
    ("tools/call", {"name": "query", "arguments": {"sql": "SELECT name, api_key FROM secrets"}}, True),
    ("tools/call", {"name": "no_such_tool", "arguments": {}}, True),
    ("tools/call", {"name": "query", "arguments": ["not", "an", "object"]}, False),
    ("tools/list", {}, True),
    ("resources/list", {}, True),
    ("prompts/list", {}, True),
    ("prompts/get", {"name": "no_such_prompt"}, True),
    ("ping", {}, False),
    ("tools/call", {"name": "query", "arguments": {"sql": "SELECT count(*) FROM orders"}, "_meta": {}}, True),
    (
        "tools/call",
        {
            "name": "query",
            "arguments": {"sql": "SELECT 1"},
            "_meta": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        },
        True,
    ),
]


@pytest.mark.parametrize("mode", MODES)
async def test_fast_answers_equal_the_sdk_path(fronts: Fronts, mode: str, admin_dsn: str) -> None:
    seen: dict[bool, list[Any]] = {}
    audits: dict[bool, list[dict[str, Any]]] = {}
    for fast in (True, False):
        front = await fronts.get("auth", mode, fast)
        before, served = _audit_count(front.audit), front.served
        shapes = []
        async with httpx2.AsyncClient(timeout=30) as http:
            for key in (BOB_KEY, CAROL_KEY):
                session = await _open_session(http, front.url, key)
                for n, (method, params, _) in enumerate(CALLS):
                    rid: int | str = n if n % 2 else f"r-{n}"
                    response = await http.post(
                        front.url, json=_message(method, params, rid), headers=_headers(key, session)
                    )
                    shapes.append(_shape(response, session))
        seen[fast] = shapes
        expected = 2 * sum(1 for *_, audited in CALLS if audited)
        audits[fast] = await _audit_records(front.audit, before, expected)
        assert front.served - served == (2 * len(CALLS) if fast else 0)
    assert seen[True] == seen[False]
    assert audits[True] == audits[False]
    assert len(audits[True]) == 2 * sum(1 for *_, audited in CALLS if audited)  # one record per call
    # the rows themselves, as Postgres counts them
    truth = _database_counts(admin_dsn)
    bob, carol = (json.loads(_answer_text(seen[True][i][2], mode)) for i in (0, len(CALLS)))
    assert _rows(bob) == [(2, truth[2])]
    assert _rows(carol) == sorted(truth.items())


def _answer_text(body: str, mode: str) -> str:
    if mode == "json":
        return body
    lines = [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
    assert len(lines) == 1, body
    return lines[0]


@pytest.mark.parametrize("mode", MODES)
async def test_a_denied_call_returns_the_denial_and_no_data(
    fronts: Fronts, mode: str, admin_dsn: str
) -> None:
    front = await fronts.get("auth", mode, True)
    with psycopg.connect(admin_dsn) as conn:
        secrets = [str(v) for row in conn.execute("SELECT * FROM public.secrets").fetchall() for v in row]
        other_tenants = conn.execute("SELECT count(*) FROM public.orders WHERE tenant_id <> 2").fetchone()
    assert secrets and other_tenants is not None and other_tenants[0] > 0
    async with httpx2.AsyncClient(timeout=30) as http:
        session = await _open_session(http, front.url, BOB_KEY)
        served = front.served
        response = await http.post(
            front.url,
            json=_message("tools/call", {"name": "query", "arguments": {"sql": "SELECT * FROM secrets"}}, 7),
            headers=_headers(BOB_KEY, session),
        )
        assert front.served == served + 1
    result = _answer(response)["result"]
    assert result["isError"] is True
    text = json.dumps(result)
    assert "pgwarden denied" in text
    for value in secrets:
        if len(value) > 3:
            assert value not in text


@pytest.mark.parametrize("mode", MODES)
async def test_the_mcp_client_is_served_by_the_fast_path(fronts: Fronts, mode: str, admin_dsn: str) -> None:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    front = await fronts.get("auth", mode, True)
    truth = _database_counts(admin_dsn)
    served = front.served
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {BOB_KEY}"}, timeout=30) as http,
        Client(streamable_http_client(front.url, http_client=http), mode="legacy") as client,  # type: ignore[arg-type]
    ):
        for _ in range(3):
            result = await client.call_tool("query", {"sql": SAME_QUERY})
            answer = {"result": result.model_dump(by_alias=True, mode="json", exclude_none=True)}
            assert _rows(answer) == [(2, truth[2])]
        denied = await client.call_tool("query", {"sql": "SELECT * FROM secrets"})
        assert denied.is_error
    assert front.served - served >= 4


# -- what the fast path must leave to the SDK ------------------------------------------------------


@dataclass
class Case:
    """A request variant: `edit(headers, body) -> (headers, body)` with the session's values."""

    name: str
    edit: Callable[[dict[str, str], bytes, dict[str, str]], tuple[dict[str, str], bytes]]
    takes: tuple[str, ...] = ()  # the modes in which this variant is still a plain request


CALL = _message("tools/call", {"name": "query", "arguments": {"sql": SAME_QUERY}}, 11)
CALL_BYTES = json.dumps(CALL).encode()


def _set(
    **changes: str | None,
) -> Callable[[dict[str, str], bytes, dict[str, str]], tuple[dict[str, str], bytes]]:
    def edit(headers: dict[str, str], body: bytes, other: dict[str, str]) -> tuple[dict[str, str], bytes]:
        out = dict(headers)
        for name, value in changes.items():
            key = name.replace("_", "-")
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value.format(**other)
        return out, body

    return edit


def _body(data: Any) -> Callable[[dict[str, str], bytes, dict[str, str]], tuple[dict[str, str], bytes]]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return lambda headers, _body, _other: (headers, raw)


CASES = [
    Case("no-session-id", _set(mcp_session_id=None)),
    Case("unknown-session-id", _set(mcp_session_id="0123456789abcdef0123456789abcdef")),
    Case("other-credentials-session", _set(mcp_session_id="{other_session}")),
    Case("no-protocol-version", _set(mcp_protocol_version=None)),
    Case("other-protocol-version", _set(mcp_protocol_version="2025-03-26")),
    Case("modern-protocol-version", _set(mcp_protocol_version="2026-07-28")),
    Case("text-content-type", _set(content_type="text/plain")),
    Case("no-content-type", _set(content_type=None)),
    Case("accept-sse-only", _set(accept="text/event-stream")),
    Case("accept-json-only", _set(accept="application/json"), takes=("json",)),
    Case("accept-wildcards", _set(accept="application/*, text/*;q=0.5"), takes=("json", "sse")),
    Case("accept-any", _set(accept="*/*"), takes=("json", "sse")),
    Case("accept-html", _set(accept="text/html")),
    Case("empty-accept", _set(accept="")),
    Case("batch", _body([CALL])),
    Case("notification", _body(_message("notifications/roots/list_changed", id_=None))),
    Case("response", _body({"jsonrpc": "2.0", "id": 5, "result": {}})),
    Case("not-json", _body(b"{not json")),
    Case("null-id", _body({**CALL, "id": None})),
    Case("extra-key", _body({**CALL, "extra": 1})),
    Case("unknown-method", _body(_message("tools/frobnicate", {}, 12))),
    Case("initialize-again", _body(_initialize())),
    Case(
        "modern-envelope",
        _body(
            _message("tools/list", {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}, 13)
        ),
    ),
    Case("progress-token", _body(_message("tools/list", {"_meta": {"progressToken": "p1"}}, 14))),
    Case("oversized-body", _body(_message("ping", {"pad": "x" * (4 * 1024 * 1024 + 10)}, 15))),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_requests_the_fast_path_leaves_to_the_sdk(fronts: Fronts, mode: str, case: Case) -> None:
    seen = {}
    for fast in (True, False):
        front = await fronts.get("auth", mode, fast)
        async with httpx2.AsyncClient(timeout=30) as http:
            session = await _open_session(http, front.url, BOB_KEY)
            other = await _open_session(http, front.url, CAROL_KEY)
            served = front.served
            headers, body = case.edit(_headers(BOB_KEY, session), CALL_BYTES, {"other_session": other})
            response = await http.post(front.url, content=body, headers=headers)
            taken = 1 if fast and mode in case.takes else 0
            assert front.served == served + taken, "the fast path took a request it must leave to the SDK"
            seen[fast] = _shape(response, session)
    assert seen[True] == seen[False]


@pytest.mark.parametrize("mode", MODES)
async def test_a_request_before_the_handshake_completed_goes_to_the_sdk(fronts: Fronts, mode: str) -> None:
    seen = {}
    for fast in (True, False):
        front = await fronts.get("auth", mode, fast)
        async with httpx2.AsyncClient(timeout=30) as http:
            # An initialize the SDK answers with an error still opens the session (status 200),
            # but its handshake never completed.
            bad = _message("initialize", {"protocolVersion": PROTOCOL, "capabilities": {}}, 1)
            opened = await http.post(front.url, json=bad, headers={**ACCEPT, **_auth(BOB_KEY)})
            assert "error" in _answer(opened)
            session = opened.headers.get("mcp-session-id")
            if session is None:
                pytest.skip("this SDK does not keep a session whose initialize failed")
            served = front.served
            response = await http.post(front.url, json=CALL, headers=_headers(BOB_KEY, session))
            assert front.served == served
            assert "error" in _answer(response)
            seen[fast] = _shape(response, session)
    assert seen[True] == seen[False]


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_that_can_be_asked_keeps_the_sdk_stream(fronts: Fronts, mode: str) -> None:
    """Sampling/elicitation/roots during a call need the SDK's per-request stream (SSE mode)."""
    front = await fronts.get("auth", mode, True)
    async with httpx2.AsyncClient(timeout=30) as http:
        session = await _open_session(http, front.url, BOB_KEY, capabilities={"sampling": {}})
        served = front.served
        response = await http.post(front.url, json=CALL, headers=_headers(BOB_KEY, session))
        assert "result" in _answer(response)
    assert front.served - served == (1 if mode == "json" else 0)


HOST_ORIGIN = [
    ("foreign-host", {"Host": "evil.example"}, 421),
    ("foreign-host-port", {"Host": "evil.example:8808"}, 421),
    ("foreign-origin", {"Origin": "http://evil.example"}, 403),
    ("null-origin", {"Origin": "null"}, 403),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["noauth", "auth"])
@pytest.mark.parametrize(("name", "extra", "status"), HOST_ORIGIN, ids=[h[0] for h in HOST_ORIGIN])
async def test_host_and_origin_are_checked_as_the_sdk_does(
    fronts: Fronts, mode: str, kind: str, name: str, extra: dict[str, str], status: int
) -> None:
    key = BOB_KEY if kind == "auth" else None
    seen = {}
    for fast in (True, False):
        front = await fronts.get(kind, mode, fast)
        async with httpx2.AsyncClient(timeout=30) as http:
            session = await _open_session(http, front.url, key)
            served = front.served
            response = await http.post(front.url, json=CALL, headers={**_headers(key, session), **extra})
            assert front.served == served
            assert response.status_code == status, response.text
            assert "rows" not in response.text
            seen[fast] = _shape(response, session)
            allowed = await http.post(
                front.url, json=CALL, headers={**_headers(key, session), "Origin": "http://localhost:5173"}
            )
            if kind == "noauth":  # the SDK's loopback allow-list: any port of a loopback origin
                assert allowed.status_code == 200 and "result" in _answer(allowed)
                assert front.served == served + (1 if fast else 0)
    assert seen[True] == seen[False]


# -- cancellation, disconnects, sessions ending ----------------------------------------------------


async def _eventually(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110 - the condition is another process's doing
            await anyio.sleep(0.02)


async def _in_flight(front: Front, count: int) -> None:
    await _eventually(lambda: len(front.gate.calls) >= count)


@pytest.mark.parametrize("mode", MODES)
async def test_the_clients_cancel_cancels_a_fast_call(fronts: Fronts, mode: str, tmp_path: Path) -> None:
    answers = {}
    for fast in (True, False):
        front = await fronts.get("relay", mode, fast)
        marker = tmp_path / f"cancelled-{fast}"
        sleep = _message(
            "tools/call", {"name": "sleep", "arguments": {"seconds": 20, "marker": str(marker)}}, 41
        )
        async with httpx2.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
            session = await _open_session(http, front.url, None)
            served, calls = front.served, len(front.gate.calls)
            got: list[httpx2.Response] = []

            async def call(
                http: httpx2.AsyncClient = http,
                url: str = front.url,
                session: str = session,
                sleep: Any = sleep,
                got: list[httpx2.Response] = got,
            ) -> None:
                got.append(await http.post(url, json=sleep, headers=_headers(None, session)))

            tg.start_soon(call)
            await _in_flight(front, calls + 1)
            cancel = _message("notifications/cancelled", {"requestId": 41, "reason": "test"}, id_=None)
            ack = await http.post(front.url, json=cancel, headers=_headers(None, session))
            assert ack.status_code == 202
        assert front.served - served == (1 if fast else 0)
        await _eventually(marker.exists)  # the upstream's own call was cancelled too
        answers[fast] = _answer(got[0])
    assert (
        answers[True]
        == answers[False]
        == {
            "jsonrpc": "2.0",
            "id": 41,
            "error": {"code": -32800, "message": "Request cancelled"},
        }
    )


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_going_away_cancels_its_fast_call(fronts: Fronts, mode: str, tmp_path: Path) -> None:
    front = await fronts.get("relay", mode, True)
    marker = tmp_path / "gone"
    sleep = _message("tools/call", {"name": "sleep", "arguments": {"seconds": 20, "marker": str(marker)}}, 42)
    async with httpx2.AsyncClient(timeout=30) as http:
        session = await _open_session(http, front.url, None)
    served, calls = front.served, len(front.gate.calls)
    async with httpx2.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:

        async def call() -> None:
            await http.post(front.url, json=sleep, headers=_headers(None, session))

        tg.start_soon(call)
        await _in_flight(front, calls + 1)
        tg.cancel_scope.cancel()  # the request is abandoned and its connection closed
    assert front.served == served + 1
    await _eventually(marker.exists)
    assert not front.fast._inflight  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_a_session_ending_answers_its_fast_calls(fronts: Fronts, mode: str, tmp_path: Path) -> None:
    front = await fronts.get("relay", mode, True)
    marker = tmp_path / "ended"
    sleep = _message("tools/call", {"name": "sleep", "arguments": {"seconds": 20, "marker": str(marker)}}, 43)
    async with httpx2.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
        session = await _open_session(http, front.url, None)
        calls = len(front.gate.calls)
        got: list[httpx2.Response] = []

        async def call() -> None:
            got.append(await http.post(front.url, json=sleep, headers=_headers(None, session)))

        tg.start_soon(call)
        await _in_flight(front, calls + 1)
        ended = await http.delete(front.url, headers=_headers(None, session))
        assert ended.status_code == 200
    closed = {"code": CONNECTION_CLOSED, "message": "Connection closed"}
    assert _answer(got[0]) == {"jsonrpc": "2.0", "id": 43, "error": closed}
    async with httpx2.AsyncClient(timeout=30) as http:
        after = await http.post(front.url, json=sleep, headers=_headers(None, session))
    assert after.status_code == 404  # the SDK: the session is gone


@pytest.mark.parametrize("mode", MODES)
async def test_shutting_down_answers_the_fast_calls_in_flight(mode: str, tmp_path: Path) -> None:
    """uvicorn's graceful shutdown lets a fast call in flight finish: it is answered with its
    result. (The SDK's SSE stream is closed at shutdown instead, with the call unanswered.)"""
    fast = True
    from gates import AllowAllGate

    gate = AllowAllGate()
    spec = UpstreamSpec(command=(sys.executable, str(TEST_UPSTREAM)), protocol="legacy")
    marker = tmp_path / "shutdown"
    sleep = _message(
        "tools/call", {"name": "sleep", "arguments": {"seconds": 1.0, "marker": str(marker)}}, 44
    )
    got: list[httpx2.Response] = []
    async with _serving(
        spec, gate, lambda _ctx: {"id": "test"}, wrap=None, json_response=mode == "json", fast=fast
    ) as (url, layer, web):
        async with httpx2.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
            session = await _open_session(http, url, None)

            async def call() -> None:
                got.append(await http.post(url, json=sleep, headers=_headers(None, session)))

            tg.start_soon(call)
            await _eventually(lambda: len(gate.calls) == 1)
            web.should_exit = True  # what SIGTERM does
        assert (layer.served if layer is not None else 0) == (1 if fast else 0)
    assert _answer(got[0])["result"]["content"][0]["text"] == "slept"
    assert await anyio.Path(tmp_path / "shutdown.done").exists()
