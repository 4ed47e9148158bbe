"""One trace from the MCP client to Postgres, across real processes, into one real OTLP receiver.

A real MCP client talks to a real `pgwarden proxy` process (stdio, or Streamable HTTP with
`--listen`), which runs a real `pgwarden server` process over stdio, which queries the demo
PostgreSQL. Both processes export spans over OTLP/HTTP to one receiver on loopback, configured
only through the standard `OTEL_*` environment (the server's through the proxy configuration's
`upstream.env`, as an operator would). The client sends its W3C trace context in `_meta` (and,
over HTTP, in the `traceparent` header).

Checked on what the receiver got: one trace per call (client → proxy request span → guard
stages and upstream span → server request span → Postgres span), the MCP semantic-convention
and pgwarden attributes, denies without an upstream leg, no SQL literal and no unmasked value in
any exported byte or audit record (and, with the operator's opt-in, the literal is there: the
scan can fail), and under concurrent HTTP load exactly one request span, one audit log record
and one audit JSONL record per call, flushed when the proxy is stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import psycopg
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from otlp_receiver import ExportedSpan, Received, http_receiver
from pydantic import TypeAdapter

from pgwarden.proxy.telemetry import attributes as A

REPO = Path(__file__).resolve().parents[2]
ANALYST_POLICY = REPO / "policies" / "analyst.yaml"
PGWARDEN = str(Path(sys.executable).parent / "pgwarden")
ANALYST = {"id": "ann", "roles": ["analyst"]}
RAW = TypeAdapter(dict[str, Any])
PROXY_SERVICE = "pgwarden-proxy"
SERVER_SERVICE = "pgwarden-server"
SERVER_KIND, CLIENT_KIND = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2
LOAD_SESSIONS, LOAD_CALLS_PER_SESSION = 30, 10


# -- the client's trace context ------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpan:
    """A span of the MCP client's own trace, as it would hand it on in `traceparent`."""

    trace_id: str
    span_id: str

    @classmethod
    def new(cls) -> ClientSpan:
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


# -- processes -----------------------------------------------------------------------------------


def otel_env(endpoint: str, *, schedule_delay_ms: int) -> dict[str, str]:
    """The standard OpenTelemetry variables that send traces and logs to `endpoint` over OTLP/HTTP."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": str(schedule_delay_ms),
        "OTEL_BLRP_SCHEDULE_DELAY": str(schedule_delay_ms),
        "NO_PROXY": "127.0.0.1",
    }


def process_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment without PGWARDEN_*, OTEL_* and HTTP proxies, plus `extra`."""
    dropped = ("PGWARDEN_", "OTEL_")
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "grpc_proxy"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped) and k.lower() not in proxies}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def proxy_args(
    tmp: Path, reader_dsn: str, otel: Mapping[str, str], *, listen: str | None = None,
    capture_sensitive: bool = False,
) -> list[str]:
    """`pgwarden proxy` arguments: the analyst policy in front of `pgwarden server` on stdio.

    The server inherits only a small default environment from the proxy, so its OTEL_* settings
    go through `upstream.env` of a configuration file; the proxy reads its own from its environment.
    """
    config = tmp / "proxy.yaml"
    config.write_text(yaml.safe_dump({
        "upstream": {"env": dict(otel), "call_timeout_s": 30},
        "telemetry": {"capture_sensitive": capture_sensitive},
    }))
    args = [
        "proxy", "--config", str(config), "--policy", str(ANALYST_POLICY),
        "--principal", json.dumps(ANALYST), "--catalog-dsn", reader_dsn,
        "--audit-log", str(tmp / "audit.jsonl"),
    ]
    if listen is not None:
        args += ["--listen", listen]
    return [*args, "--", sys.executable, "-m", "pgwarden.server", "--dsn", reader_dsn, "--pool-size", "4"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def http_proxy(
    args: list[str], env: dict[str, str], port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A `pgwarden proxy --listen http://…` process; stopped with SIGTERM (then killed) at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen([PGWARDEN, *args], env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"proxy exited: {log.read_text(errors='replace')[-3000:]}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        log_text = log.read_text(errors="replace")
                        raise TimeoutError(f"proxy did not listen: {log_text}") from exc
                    time.sleep(0.05)
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# -- the client ----------------------------------------------------------------------------------


async def call_query(client: Client, sql: str, parent: ClientSpan | None) -> dict[str, Any]:
    """One raw `tools/call query` (no extra `tools/list`), with `parent` in `_meta` if given."""
    meta = {"traceparent": parent.traceparent} if parent is not None else None
    params = types.CallToolRequestParams(name="query", arguments={"sql": sql}, _meta=meta)  # type: ignore[arg-type]
    return await client.session.send_request(types.CallToolRequest(params=params), RAW)


def http_client(url: str, headers: dict[str, str] | None = None) -> Client:
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    return Client(transport, mode="legacy", read_timeout_seconds=60)


# -- what came out -------------------------------------------------------------------------------


def audit_records(path: Path, method: str = "tools/call") -> list[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, filter(None, lines)) if r.get("method") == method]


def in_trace(received: Received, trace_id: str) -> list[ExportedSpan]:
    return [s for s in received.exported_spans() if s.trace_id == trace_id]


def wait_for_traces(received: Received, expected: Mapping[str, int], timeout: float = 20.0) -> None:
    """Wait until each client trace id has at least its number of spans; fail saying what came."""
    def complete(r: Received) -> bool:
        return all(len(in_trace(r, trace_id)) >= n for trace_id, n in expected.items())

    if not received.wait_for(complete, timeout):
        got = {trace_id: sorted(names(in_trace(received, trace_id))) for trace_id in expected}
        pytest.fail(f"spans missing after {timeout}s: expected {dict(expected)} spans, got {got}")


def proxy_request_spans(received: Received) -> list[ExportedSpan]:
    spans = received.exported_spans()
    return [s for s in spans if s.service == PROXY_SERVICE and s.name == "tools/call query"]


def one(spans: list[ExportedSpan], service: str, name: str) -> ExportedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, f"{service} {name!r}: {[(s.service, s.name) for s in spans]}"
    return found[0]


def names(spans: list[ExportedSpan]) -> set[tuple[str, str]]:
    return {(s.service, s.name) for s in spans}


def database_name(dsn: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(dsn).get("dbname"))


@dataclass(frozen=True)
class CustomerSecrets:
    """A real customer e-mail used as the SQL literal, and every real value of the masked columns."""

    literal: str
    values: frozenset[str]

    @classmethod
    def read(cls, admin_dsn: str) -> CustomerSecrets:
        with psycopg.connect(admin_dsn) as conn:
            rows = conn.execute(
                "SELECT email, name, phone, national_id FROM public.customers ORDER BY id"
            ).fetchall()
        values = {str(v) for row in rows for v in row if v is not None and len(str(v)) >= 6}
        return cls(literal=str(rows[0][0]), values=frozenset(values))

    def found_in(self, blob: bytes) -> list[str]:
        """The secrets present in `blob` (the literal first), shortened so failures do not print them."""
        found = [v for v in (self.literal, *sorted(self.values)) if v.encode() in blob]
        return [f"{v[:3]}…" for v in dict.fromkeys(found)]


@pytest.fixture(scope="module")
def customer_secrets(admin_dsn: str) -> CustomerSecrets:
    return CustomerSecrets.read(admin_dsn)


def masked_query(literal: str) -> str:
    """An allowed analyst query over the masked customers table, with a secret literal in it."""
    return (
        "SELECT c.id, c.email, c.phone, count(o.id) AS orders FROM customers c "
        "LEFT JOIN orders o ON o.customer_id = c.id "
        f"WHERE c.email <> '{literal}' GROUP BY c.id, c.email, c.phone ORDER BY c.id LIMIT 25"
    )


def denied_query(literal: str) -> str:
    """Listing customers row by row: the analyst policy refuses it (customers only in aggregate)."""
    return f"SELECT name, email FROM customers WHERE email = '{literal}'"


def rows_of(raw: dict[str, Any]) -> list[dict[str, Any]]:
    assert not raw.get("isError"), raw
    sc = raw["structuredContent"]
    cols = [c["name"] for c in sc["columns"]]
    return [dict(zip(cols, r, strict=True)) for r in sc["rows"]]


# -- the checks shared by the transports -----------------------------------------------------------


ALLOWED_PROXY_SPANS = {(PROXY_SERVICE, n) for n in
                       ("tools/call query", A.SPAN_ANALYSE, A.SPAN_DECIDE, A.SPAN_REWRITE, A.SPAN_UPSTREAM)}


def check_allowed_trace(received: Received, client: ClientSpan, db: str, audit: dict[str, Any],
                        *, transport: str) -> ExportedSpan:
    """The full trace of one allowed call; returns the proxy's request span."""
    spans = in_trace(received, client.trace_id)
    db_span_name = f"SELECT {db}"
    assert names(spans) == ALLOWED_PROXY_SPANS | {(SERVER_SERVICE, "tools/call query"),
                                                  (SERVER_SERVICE, db_span_name)}, names(spans)
    assert len(spans) == 7, [(s.service, s.name) for s in spans]

    request = one(spans, PROXY_SERVICE, "tools/call query")
    assert request.parent_span_id == client.span_id, "the proxy continues the client's span"
    assert request.kind == SERVER_KIND
    for stage in (A.SPAN_ANALYSE, A.SPAN_DECIDE, A.SPAN_REWRITE, A.SPAN_UPSTREAM):
        assert one(spans, PROXY_SERVICE, stage).parent_span_id == request.span_id, stage
    upstream = one(spans, PROXY_SERVICE, A.SPAN_UPSTREAM)
    assert upstream.kind == CLIENT_KIND
    server_request = one(spans, SERVER_SERVICE, "tools/call query")
    assert server_request.parent_span_id == upstream.span_id, "the server continues pgwarden.upstream"
    assert server_request.kind == SERVER_KIND
    postgres = one(spans, SERVER_SERVICE, db_span_name)
    assert postgres.parent_span_id == server_request.span_id, "the Postgres span is the server request's"
    assert postgres.kind == CLIENT_KIND
    assert postgres.attributes["db.system.name"] == "postgresql"
    assert postgres.attributes["db.namespace"] == db

    attrs = request.attributes
    assert attrs[A.MCP_METHOD_NAME] == "tools/call"
    assert attrs[A.GEN_AI_TOOL_NAME] == "query"
    assert attrs[A.GEN_AI_OPERATION_NAME] == A.EXECUTE_TOOL
    assert attrs[A.JSONRPC_REQUEST_ID] == audit["request_id"] and attrs[A.JSONRPC_REQUEST_ID].isdigit()
    assert attrs[A.MCP_PROTOCOL_VERSION] == LATEST_HANDSHAKE_VERSION  # what the legacy client agreed
    assert attrs[A.NETWORK_TRANSPORT] == transport
    if transport == "pipe":
        assert A.MCP_SESSION_ID not in attrs  # stdio has no session id (HTTP: checked by the caller)
    assert attrs[A.PRINCIPAL_ID] == "ann"
    assert attrs[A.DECISION] == "allow"
    assert attrs[A.RULE_IDS] == ["analyst.sales"]
    assert A.REASON_CODE not in attrs and A.ERROR_TYPE not in attrs
    assert sorted(attrs[A.RELATIONS]) == ["public.customers", "public.orders"]
    assert sorted(attrs[A.MASKED_COLUMNS]) == ["public.customers.email", "public.customers.name",
                                               "public.customers.national_id", "public.customers.phone"]
    assert attrs[A.ROW_CAP] == 5000
    assert attrs[A.POLICY_REVISION] == audit["policy_revision"] and attrs[A.POLICY_REVISION]
    assert attrs[A.SQL_FINGERPRINT] == audit["fingerprint"] and attrs[A.SQL_FINGERPRINT]
    sent = attrs[A.SQL_REDACTED]
    assert "public.customers" in sent and "SPLIT_PART" in sent.upper(), sent  # the rewrite, as sent
    assert "<>" in sent and "?" in sent, sent  # ... with its literals replaced
    assert attrs[A.SQL_ORIGINAL_REDACTED].count("?") >= 1
    assert attrs[A.ROWS_RETURNED] == 25
    assert attrs[A.TRUNCATED] is False
    assert attrs[A.AUDIT_SEQ] == audit["seq"]

    assert (audit["trace_id"], audit["span_id"]) == (client.trace_id, request.span_id)
    assert audit["decision"] == "allow" and audit["rows"] == 25 and audit["truncated"] is False
    assert sorted(audit["relations"]) == sorted(attrs[A.RELATIONS])
    assert audit["sql_sent"]["text"] == sent
    return request


def check_denied_trace(received: Received, client: ClientSpan, audit: dict[str, Any]) -> None:
    spans = in_trace(received, client.trace_id)
    assert names(spans) == {(PROXY_SERVICE, "tools/call query"), (PROXY_SERVICE, A.SPAN_ANALYSE),
                            (PROXY_SERVICE, A.SPAN_DECIDE)}, names(spans)
    request = one(spans, PROXY_SERVICE, "tools/call query")
    assert request.parent_span_id == client.span_id
    attrs = request.attributes
    assert attrs[A.DECISION] == "deny"
    assert attrs[A.REASON_CODE] == "policy.deny"
    assert attrs[A.RULE_IDS] == ["analyst.customers-in-aggregate"]
    assert attrs[A.ERROR_TYPE] == A.TOOL_ERROR
    assert request.status_code == STATUS_ERROR
    assert A.SQL_REDACTED not in attrs and A.ROWS_RETURNED not in attrs  # nothing was sent upstream
    assert (audit["trace_id"], audit["span_id"]) == (client.trace_id, request.span_id)
    assert audit["decision"] == "deny" and audit["reason_code"] == "policy.deny" and audit["is_error"]


def check_audit_log_records(received: Received, records: list[dict[str, Any]]) -> None:
    """Each audit record also left the proxy as one OTLP log record inside its request's trace."""
    logged = {(r.trace_id.hex(), r.span_id.hex()): r for r in received.log_records()
              if r.event_name == "pgwarden.audit"}
    for record in records:
        assert (record["trace_id"], record["span_id"]) in logged, record["seq"]


def check_no_secrets(received: Received, audit_path: Path, found: CustomerSecrets) -> None:
    assert found.found_in(received.raw_bytes()) == [], "a secret left a process in OTLP"
    assert found.found_in(audit_path.read_bytes()) == [], "a secret is in the audit log"


# -- the tests -------------------------------------------------------------------------------------


def test_stdio_one_trace_from_client_to_postgres_without_secrets(
    reader_dsn: str, customer_secrets: CustomerSecrets, tmp_path: Path
) -> None:
    allowed, denied = ClientSpan.new(), ClientSpan.new()
    with http_receiver() as (endpoint, received):
        otel = otel_env(endpoint, schedule_delay_ms=100)
        params = StdioServerParameters(command=PGWARDEN, args=proxy_args(tmp_path, reader_dsn, otel),
                                       env=process_env(otel))

        async def session() -> tuple[dict[str, Any], dict[str, Any]]:
            async with Client(params, mode="legacy", read_timeout_seconds=60) as client:
                ok = await call_query(client, masked_query(customer_secrets.literal), allowed)
                no = await call_query(client, denied_query(customer_secrets.literal), denied)
                # Before the proxy goes away: the spans of both processes arrive on their own.
                wait_for_traces(received, {allowed.trace_id: 7, denied.trace_id: 3})
                return ok, no

        ok, no = anyio.run(session)
        received.wait_for(lambda r: len(r.log_records()) >= 2, timeout=5)

    result_rows = rows_of(ok)
    assert len(result_rows) == 25
    assert all(str(r["email"]).startswith("***@") for r in result_rows), result_rows[:2]
    assert customer_secrets.found_in(json.dumps(ok).encode()) == []
    assert no["isError"] and "policy.deny" in no["content"][0]["text"]

    audit = audit_records(tmp_path / "audit.jsonl")
    assert [r["decision"] for r in audit] == ["allow", "deny"]
    check_allowed_trace(received, allowed, database_name(reader_dsn), audit[0], transport="pipe")
    check_denied_trace(received, denied, audit[1])
    check_audit_log_records(received, audit)
    # Outside the clients' traces: only the server's start-up and the proxy's discovery of its tools.
    strays = [(s.service, s.name) for s in received.exported_spans()
              if s.trace_id not in (allowed.trace_id, denied.trace_id)]
    assert not [s for s in strays if s[0] == PROXY_SERVICE or s[1].startswith("tools/call")], strays
    check_no_secrets(received, tmp_path / "audit.jsonl", customer_secrets)


def test_http_one_trace_from_meta_or_traceparent_header(
    reader_dsn: str, customer_secrets: CustomerSecrets, tmp_path: Path
) -> None:
    in_meta, in_header = ClientSpan.new(), ClientSpan.new()
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with http_receiver() as (endpoint, received):
        otel = otel_env(endpoint, schedule_delay_ms=100)
        args = proxy_args(tmp_path, reader_dsn, otel, listen=url)
        with http_proxy(args, process_env(otel), port, tmp_path / "proxy.log"):

            async def session() -> tuple[dict[str, Any], dict[str, Any]]:
                async with http_client(url, {"traceparent": in_header.traceparent}) as client:
                    # `_meta` wins over the header; without `_meta` the header is the parent.
                    first = await call_query(client, masked_query(customer_secrets.literal), in_meta)
                    second = await call_query(client, masked_query(customer_secrets.literal), None)
                    return first, second

            first, second = anyio.run(session)
            wait_for_traces(received, {in_meta.trace_id: 7, in_header.trace_id: 7})
        received.wait_for(lambda r: len(r.log_records()) >= 2, timeout=5)

    assert len(rows_of(first)) == len(rows_of(second)) == 25
    audit = audit_records(tmp_path / "audit.jsonl")
    assert len(audit) == 2
    spans = [check_allowed_trace(received, parent, database_name(reader_dsn), record, transport="tcp")
             for parent, record in zip((in_meta, in_header), audit, strict=True)]
    sessions = {s.attributes.get(A.MCP_SESSION_ID) for s in spans}
    assert len(sessions) == 1 and None not in sessions, sessions
    assert [r["session_id"] for r in audit] == [spans[0].attributes[A.MCP_SESSION_ID]] * 2
    check_audit_log_records(received, audit)
    check_no_secrets(received, tmp_path / "audit.jsonl", customer_secrets)


def test_captured_sql_text_is_opt_in_and_the_secret_scan_sees_it(
    reader_dsn: str, customer_secrets: CustomerSecrets, tmp_path: Path
) -> None:
    """With `telemetry.capture_sensitive` the statement as received is on the span: the same scan
    that passes above finds the literal here (so it can fail); the audit log still holds none."""
    parent = ClientSpan.new()
    with http_receiver() as (endpoint, received):
        otel = otel_env(endpoint, schedule_delay_ms=100)
        args = proxy_args(tmp_path, reader_dsn, otel, capture_sensitive=True)
        params = StdioServerParameters(command=PGWARDEN, args=args, env=process_env(otel))

        async def session() -> None:
            async with Client(params, mode="legacy", read_timeout_seconds=60) as client:
                await call_query(client, masked_query(customer_secrets.literal), parent)
                wait_for_traces(received, {parent.trace_id: 7})

        anyio.run(session)

    request = one(in_trace(received, parent.trace_id), PROXY_SERVICE, "tools/call query")
    assert request.attributes[A.SQL_TEXT] == masked_query(customer_secrets.literal)
    arguments = json.loads(request.attributes[A.GEN_AI_TOOL_CALL_ARGUMENTS])
    assert arguments == {"sql": masked_query(customer_secrets.literal)}
    assert customer_secrets.found_in(received.raw_bytes())[:1] == [f"{customer_secrets.literal[:3]}…"]
    assert customer_secrets.found_in((tmp_path / "audit.jsonl").read_bytes()) == []


def test_http_load_one_span_and_one_audit_record_per_call_flushed_on_sigterm(
    reader_dsn: str, tmp_path: Path
) -> None:
    """300 calls from 30 concurrent sessions, each in its own client trace. The batch exporters
    wait a minute between exports, so what arrives after SIGTERM is what the proxy flushed."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    audit_path = tmp_path / "audit.jsonl"
    sent: dict[str, ClientSpan] = {}  # client trace id -> the client's span
    answered: dict[int, Any] = {}
    total = LOAD_SESSIONS * LOAD_CALLS_PER_SESSION
    with http_receiver() as (endpoint, received):
        otel = otel_env(endpoint, schedule_delay_ms=60_000)
        args = proxy_args(tmp_path, reader_dsn, otel, listen=url)
        with http_proxy(args, process_env(otel), port, tmp_path / "proxy.log") as proxy:

            async def worker(first: int) -> None:
                async with http_client(url) as client:
                    for marker in range(first, first + LOAD_CALLS_PER_SESSION):
                        parent = ClientSpan.new()
                        sent[parent.trace_id] = parent
                        raw = await call_query(client, f"SELECT {marker} AS marker", parent)
                        answered[marker] = (raw.get("structuredContent") or {}).get("rows")

            async def load() -> None:
                async with anyio.create_task_group() as tg:
                    for s in range(LOAD_SESSIONS):
                        tg.start_soon(worker, s * LOAD_CALLS_PER_SESSION + 1)

            anyio.run(load)
            before_stop = len(proxy_request_spans(received))
            proxy.send_signal(signal.SIGTERM)
            assert proxy.wait(timeout=30) == 0, (tmp_path / "proxy.log").read_text()  # a clean stop
        # The proxy has exited: whatever it flushed has been received (exports wait for the answer).
        calls = proxy_request_spans(received)
        log_records = [r for r in received.log_records() if r.event_name == "pgwarden.audit"]

    assert len(sent) == total
    assert answered == {m: [[m]] for m in range(1, total + 1)}, "every call answered with its own marker"

    assert len(calls) == total, f"{total} calls, {len(calls)} request spans ({before_stop} before SIGTERM)"
    assert sorted(s.trace_id for s in calls) == sorted(sent), "exactly one request span per client trace"
    for span in calls:
        assert span.parent_span_id == sent[span.trace_id].span_id
        assert span.attributes[A.DECISION] == "allow" and span.attributes[A.MCP_SESSION_ID]

    records = audit_records(audit_path)
    assert len(records) == total, f"{total} calls, {len(records)} audit records"
    span_of = {s.trace_id: s.span_id for s in calls}
    assert {r["trace_id"]: r["span_id"] for r in records} == span_of, "one audit record per request span"
    logged = sorted(r.trace_id.hex() for r in log_records if r.trace_id.hex() in sent)
    assert logged == sorted(sent), f"{total} calls, {len(logged)} audit log records exported"
    verify = subprocess.run([PGWARDEN, "audit", "verify", str(audit_path)], capture_output=True, text=True,
                            env=process_env({}))
    assert verify.returncode == 0, verify.stdout + verify.stderr
