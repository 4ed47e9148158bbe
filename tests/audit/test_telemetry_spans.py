"""Spans, trace context, metrics and audit log records of one MCP request, via in-memory exporters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from audit_helpers import SECRET_EMAIL, SECRET_SQL, Pipeline, make_pipeline
from mcp import Client
from mcp.server import Server
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pgwarden.proxy.audit import AuditLog, AuditWriteError
from pgwarden.proxy.telemetry import (
    AUDIT_WRITE_FAILED,
    SPAN_ANALYSE,
    SPAN_DECIDE,
    SPAN_REWRITE,
    SPAN_UPSTREAM,
    TelemetryConfig,
    current_request,
    use_pgwarden_spans,
)
from pgwarden.proxy.telemetry.providers import build_providers

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
REWRITTEN_SQL = (
    "SELECT c.id, c.name FROM (SELECT id, name, NULL AS email FROM public.customers "
    f"WHERE tenant_id = 4242) AS c WHERE c.email = '{SECRET_EMAIL}' LIMIT 10"
)


def one_tools_call(p: Pipeline, log: AuditLog | None, *, parent_meta: dict[str, Any] | None = None,
                   http_headers: dict[str, str] | None = None, deny: bool = False) -> dict[str, Any]:
    """Drive the API the way the proxy does for one tools/call; return the outbound _meta."""
    outbound: dict[str, Any] = {}
    with p.telemetry.request_span(method="tools/call", tool="query", request_id=7,
                                  protocol_version="2025-11-25", session_id="sess-1",
                                  parent_meta=parent_meta, http_headers=http_headers) as req:
        req.record_sensitive(sql=SECRET_SQL, arguments={"sql": SECRET_SQL})
        with req.child(SPAN_ANALYSE):
            pass
        with req.child(SPAN_DECIDE):
            pass
        if deny:
            req.record_decision(principal_id="alice", decision="deny", rules=["deny-hr"],
                                reason_code="policy.deny", reason="hr tables are off limits",
                                relations=["hr.salaries"], policy_revision="sha256:rev1", sql=SECRET_SQL,
                                is_error=True)
        else:
            with req.child(SPAN_REWRITE):
                pass
            req.record_decision(principal_id="alice", decision="allow", rules=["analyst-read"],
                                relations=["public.customers"], masked_columns=["public.customers.email"],
                                row_cap=10, row_filters=["public.customers.tenant_id"],
                                policy_revision="sha256:rev1", sql=SECRET_SQL, sent_sql=REWRITTEN_SQL)
            with req.child(SPAN_UPSTREAM):
                outbound = req.inject_meta({"progressToken": 1})
            req.record_decision(rows_returned=3, truncated=False, is_error=False)
        if log is not None:
            req.audit(log)
    return outbound


def by_name(p: Pipeline) -> dict[str, Any]:
    return {s.name: s for s in p.spans.get_finished_spans()}


def test_one_server_span_with_semconv_and_pgwarden_attributes(pipeline: Pipeline, tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", instance_id="test-1")
    one_tools_call(pipeline, log, parent_meta={"traceparent": TRACEPARENT})
    spans = pipeline.spans.get_finished_spans()
    server = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(server) == 1
    span = server[0]
    assert span.name == "tools/call query"
    a = dict(span.attributes or {})
    assert a["mcp.method.name"] == "tools/call"
    assert a["jsonrpc.request.id"] == "7"
    assert a["mcp.protocol.version"] == "2025-11-25"
    assert a["mcp.session.id"] == "sess-1"
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["gen_ai.tool.name"] == "query"
    assert "error.type" not in a
    assert a["pgwarden.principal.id"] == "alice"
    assert a["pgwarden.decision"] == "allow"
    assert a["pgwarden.rule.ids"] == ("analyst-read",)
    assert a["pgwarden.relations"] == ("public.customers",)
    assert a["pgwarden.masked_columns"] == ("public.customers.email",)
    assert a["pgwarden.row_cap"] == 10
    assert a["pgwarden.row_filters"] == ("public.customers.tenant_id",)
    assert a["pgwarden.policy.revision"] == "sha256:rev1"
    assert len(str(a["pgwarden.sql.fingerprint"])) == 16
    assert a["pgwarden.sql.redacted"] == (
        "SELECT c.id, c.name FROM (SELECT id, name, NULL AS email FROM public.customers "
        "WHERE tenant_id = ?) AS c WHERE c.email = ? LIMIT ?")
    assert a["pgwarden.rows_returned"] == 3
    assert a["pgwarden.truncated"] is False
    assert a["pgwarden.audit.seq"] == 1
    assert a["pgwarden.instance.id"] == "test-1"
    log.close()


def test_children_and_trace_context_form_one_trace(pipeline: Pipeline) -> None:
    outbound = one_tools_call(pipeline, None, parent_meta={"traceparent": TRACEPARENT, "tracestate": "ven=1"})
    spans = by_name(pipeline)
    request = spans["tools/call query"]
    assert f"{request.context.trace_id:032x}" == CLIENT_TRACE
    assert request.parent is not None and f"{request.parent.span_id:016x}" == CLIENT_SPAN
    assert request.parent.is_remote
    for stage in (SPAN_ANALYSE, SPAN_DECIDE, SPAN_REWRITE, SPAN_UPSTREAM):
        assert spans[stage].parent.span_id == request.context.span_id
        assert spans[stage].context.trace_id == request.context.trace_id
    assert spans[SPAN_UPSTREAM].kind == SpanKind.CLIENT
    # Outbound _meta: same trace, parent = the upstream child span; other keys kept; tracestate passed on.
    version, trace_id, parent_id, flags = outbound["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "01")
    assert parent_id == f"{spans[SPAN_UPSTREAM].context.span_id:016x}"
    assert outbound["tracestate"] == "ven=1"
    assert outbound["progressToken"] == 1
    assert "baggage" not in outbound


def test_client_baggage_is_not_forwarded(pipeline: Pipeline) -> None:
    outbound = one_tools_call(pipeline, None, parent_meta={"traceparent": TRACEPARENT, "baggage": "k=v"})
    assert "baggage" not in outbound


def test_trace_context_from_http_header_when_meta_has_none(pipeline: Pipeline) -> None:
    one_tools_call(pipeline, None, parent_meta={}, http_headers={"Traceparent": TRACEPARENT})
    request = by_name(pipeline)["tools/call query"]
    assert f"{request.context.trace_id:032x}" == CLIENT_TRACE


def test_meta_wins_over_http_header(pipeline: Pipeline) -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    one_tools_call(pipeline, None, parent_meta={"traceparent": TRACEPARENT},
                   http_headers={"traceparent": other})
    assert f"{by_name(pipeline)['tools/call query'].context.trace_id:032x}" == CLIENT_TRACE


def test_a_malformed_traceparent_starts_a_new_trace(pipeline: Pipeline) -> None:
    one_tools_call(pipeline, None, parent_meta={"traceparent": "00-zz-not-valid"})
    request = by_name(pipeline)["tools/call query"]
    assert request.parent is None


def test_client_cannot_switch_tracing_off_with_an_unsampled_parent(pipeline: Pipeline) -> None:
    one_tools_call(pipeline, None, parent_meta={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"})
    assert "tools/call query" in by_name(pipeline)


def test_honor_client_sampling_drops_unsampled_requests() -> None:
    p = make_pipeline(honor_client_sampling=True)
    one_tools_call(p, None, parent_meta={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"})
    assert p.spans.get_finished_spans() == ()


def test_deny_is_a_tool_error(pipeline: Pipeline) -> None:
    one_tools_call(pipeline, None, deny=True)
    span = by_name(pipeline)["tools/call query"]
    a = dict(span.attributes or {})
    assert a["error.type"] == "tool_error"
    assert span.status.status_code == StatusCode.ERROR
    assert a["pgwarden.decision"] == "deny"
    assert a["pgwarden.reason.code"] == "policy.deny"
    assert "pgwarden.sql.redacted" not in a  # nothing was sent upstream
    assert a["pgwarden.sql.original_redacted"] == (
        "SELECT id, name FROM customers WHERE email = ? AND tenant_id = ? LIMIT ?")


def test_an_exception_records_its_class_never_its_message(pipeline: Pipeline) -> None:
    with (pytest.raises(ValueError, match="ada"),
          pipeline.telemetry.request_span(method="tools/call", tool="query") as req,
          req.child(SPAN_ANALYSE)):
        raise ValueError(f"bad literal {SECRET_EMAIL}")
    spans = by_name(pipeline)
    assert spans[SPAN_ANALYSE].attributes["error.type"] == "ValueError"
    assert spans["tools/call query"].attributes["error.type"] == "ValueError"
    assert SECRET_EMAIL not in "".join(s.to_json() for s in spans.values())


def test_no_literal_reaches_spans_logs_or_the_audit_file(pipeline: Pipeline, tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", instance_id="test-1")
    one_tools_call(pipeline, log, parent_meta={"traceparent": TRACEPARENT})
    one_tools_call(pipeline, log, deny=True)
    log.close()
    exported = "".join(s.to_json() for s in pipeline.spans.get_finished_spans())
    logs = "".join(r.to_json() for r in pipeline.logs.get_finished_logs())
    audit = (tmp_path / "a.jsonl").read_text()
    for text in (exported, logs, audit):
        assert SECRET_EMAIL not in text
        assert "4242" not in text  # the row filter's tenant id, a literal in the rewritten SQL
    assert "email = ?" in exported and "email = ?" in audit


def test_original_sql_and_arguments_only_when_opted_in(tmp_path: Path) -> None:
    p = make_pipeline(capture_sensitive=True)
    one_tools_call(p, None)
    a = dict(by_name(p)["tools/call query"].attributes or {})
    assert a["pgwarden.sql.text"] == SECRET_SQL
    assert json.loads(str(a["gen_ai.tool.call.arguments"])) == {"sql": SECRET_SQL}


def test_audit_records_are_emitted_as_log_records_in_the_trace(pipeline: Pipeline, tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", instance_id="test-1")
    one_tools_call(pipeline, log, parent_meta={"traceparent": TRACEPARENT})
    log.close()
    (record,) = pipeline.logs.get_finished_logs()
    lr = record.log_record
    written = json.loads((tmp_path / "a.jsonl").read_text())
    assert lr.event_name == "pgwarden.audit"
    assert f"{lr.trace_id:032x}" == CLIENT_TRACE
    assert lr.span_id == by_name(pipeline)["tools/call query"].context.span_id
    assert lr.body["hash"] == written["hash"] and lr.body["seq"] == 1
    assert lr.body["sql"]["text"] == written["sql"]["text"]
    assert written["trace_id"] == CLIENT_TRACE


def test_audit_is_written_once_per_request(pipeline: Pipeline, tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", instance_id="test-1")
    with pipeline.telemetry.request_span(method="tools/call", tool="query") as req:
        req.record_decision(decision="allow")
        req.audit(log)
        with pytest.raises(RuntimeError, match="already"):
            req.audit(log)
    log.close()
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 1


def test_an_unwritable_strict_audit_turns_the_span_into_a_deny(pipeline: Pipeline, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.symlink_to("/dev/full")
    log = AuditLog(path, instance_id="test-1", strict=True)
    with pytest.raises(AuditWriteError):
        one_tools_call(pipeline, log)
    a = dict(by_name(pipeline)["tools/call query"].attributes or {})
    assert a["pgwarden.decision"] == "deny"
    assert a["pgwarden.reason.code"] == AUDIT_WRITE_FAILED
    assert a["error.type"] == "tool_error"
    log.close()


def _points(p: Pipeline, name: str) -> list[Any]:
    data = p.metrics.get_metrics_data()
    assert data is not None
    return [pt for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == name for pt in m.data.data_points]


def test_metrics_count_decisions_and_time_guard_and_upstream(pipeline: Pipeline) -> None:
    one_tools_call(pipeline, None)
    one_tools_call(pipeline, None)
    one_tools_call(pipeline, None, deny=True)
    decisions = {(pt.attributes["pgwarden.decision"], pt.attributes.get("pgwarden.reason.code")): pt.value
                 for pt in _points(pipeline, "pgwarden.decisions")}
    assert decisions == {("allow", None): 2, ("deny", "policy.deny"): 1}
    guard = {pt.attributes["pgwarden.decision"]: pt.count
             for pt in _points(pipeline, "pgwarden.guard.duration")}
    assert guard == {"allow": 2, "deny": 1}
    (upstream,) = _points(pipeline, "pgwarden.upstream.duration")
    assert upstream.count == 2 and upstream.sum > 0
    ops = {pt.attributes.get("error.type"): pt.count
           for pt in _points(pipeline, "mcp.server.operation.duration")}
    assert ops == {None: 2, "tool_error": 1}


def test_the_sdk_tracer_is_silenced_but_still_propagates(pipeline: Pipeline) -> None:
    sdk_tracer = pipeline.telemetry.providers.tracer_provider.get_tracer("mcp-python-sdk")
    carrier: dict[str, str] = {}
    with (pipeline.telemetry.request_span(method="tools/call", tool="query") as req,
          req.child(SPAN_UPSTREAM),
          sdk_tracer.start_as_current_span("MCP send tools/call query", kind=SpanKind.CLIENT)):
        TraceContextTextMapPropagator().inject(carrier)
    names = [s.name for s in pipeline.spans.get_finished_spans()]
    assert "MCP send tools/call query" not in names
    upstream = by_name(pipeline)[SPAN_UPSTREAM]
    assert carrier["traceparent"].split("-")[2] == f"{upstream.context.span_id:016x}"


def test_sdk_spans_can_be_kept() -> None:
    exporter = InMemorySpanExporter()
    providers = build_providers(TelemetryConfig(traces="none", logs="none", metrics="none", sdk_spans=True),
                                span_exporters=[exporter], synchronous=True)
    with providers.tracer_provider.get_tracer("mcp-python-sdk").start_as_current_span("MCP send x"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["MCP send x"]


@pytest.mark.anyio
async def test_real_mcp_server_gets_exactly_one_span_per_request(tmp_path: Path) -> None:
    p = make_pipeline()
    log = AuditLog(tmp_path / "a.jsonl", instance_id="test-1")

    async def on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="query", input_schema={"type": "object"})])

    async def on_call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        req = current_request()
        assert req is not None
        with req.child(SPAN_ANALYSE):
            pass
        sql = str((params.arguments or {})["sql"])
        req.record_decision(principal_id="stdio-user", decision="allow", sql=sql,
                            rows_returned=0, truncated=False, is_error=False)
        await req.audit_async(log)
        return types.CallToolResult(content=[types.TextContent(type="text", text="[]")])

    server = Server("fake-proxy", on_list_tools=on_list_tools, on_call_tool=on_call_tool)
    use_pgwarden_spans(server, p.telemetry)
    async with Client(server, mode="legacy") as client:
        result = await client.call_tool("query", {"sql": SECRET_SQL}, meta={"traceparent": TRACEPARENT})
    assert not result.is_error
    log.close()
    server_spans = [s for s in p.spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    calls = [s for s in server_spans if s.name == "tools/call query"]
    assert len(calls) == 1
    assert f"{calls[0].context.trace_id:032x}" == CLIENT_TRACE
    assert calls[0].attributes["mcp.method.name"] == "tools/call"
    assert calls[0].attributes["pgwarden.decision"] == "allow"
    assert calls[0].attributes["network.transport"] == "pipe"
    # One server span per inbound request, no SDK span among them.
    assert all(s.instrumentation_scope.name == "pgwarden.proxy" for s in p.spans.get_finished_spans())
    record = json.loads((tmp_path / "a.jsonl").read_text())
    assert record["trace_id"] == CLIENT_TRACE and SECRET_EMAIL not in json.dumps(record)


@pytest.mark.anyio
async def test_client_proxy_server_is_one_trace_through_the_sdk_client() -> None:
    """The SDK's own `_meta` injection on the upstream call hands the upstream our upstream span."""
    p = make_pipeline()
    seen: dict[str, Any] = {}

    async def upstream_call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        seen["meta"] = dict(ctx.meta or {})
        return types.CallToolResult(content=[types.TextContent(type="text", text="[]")])

    async def on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="query", input_schema={"type": "object"})])

    upstream = Server("upstream", on_list_tools=on_list_tools, on_call_tool=upstream_call_tool)

    async def front_call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        req = current_request()
        assert req is not None
        with req.child(SPAN_UPSTREAM):
            async with Client(upstream, mode="legacy") as up:
                return await up.call_tool("query", {"sql": "SELECT 1"})

    front = Server("front", on_list_tools=on_list_tools, on_call_tool=front_call_tool)
    use_pgwarden_spans(front, p.telemetry)
    async with Client(front, mode="legacy") as client:
        await client.call_tool("query", {"sql": "SELECT 1"}, meta={"traceparent": TRACEPARENT})
    spans = by_name(p)
    _, trace_id, parent_id, _ = seen["meta"]["traceparent"].split("-")
    assert trace_id == CLIENT_TRACE
    assert parent_id == f"{spans[SPAN_UPSTREAM].context.span_id:016x}"
    assert spans[SPAN_UPSTREAM].parent.span_id == spans["tools/call query"].context.span_id
