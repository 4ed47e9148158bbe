"""With no span exporter the request span is only an identity: trace context still flows from
the client through the audit record to the upstream, with the flags the SDK would have set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pgwarden.proxy.audit import AuditLog
from pgwarden.proxy.telemetry import SPAN_UPSTREAM, Telemetry, TelemetryConfig

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
NONE = {"traces": "none", "logs": "none", "metrics": "none"}


Pair = tuple[dict[str, Any], dict[str, Any]]


def call(telemetry: Telemetry, log: AuditLog, meta: dict[str, Any] | None) -> Pair:
    with telemetry.request_span(method="tools/call", tool="query", request_id=1, parent_meta=meta) as req:
        req.record_decision(principal_id="alice", decision="allow", sql="SELECT 1", is_error=False)
        with req.child(SPAN_UPSTREAM):
            outbound = req.inject_meta({})
        record = req.audit(log)
    assert record is not None
    return record, outbound


def test_the_clients_trace_reaches_the_record_and_the_upstream(tmp_path: Path) -> None:
    telemetry = Telemetry.from_config(TelemetryConfig(**NONE))  # type: ignore[arg-type]
    assert not telemetry.providers.exports_spans
    meta = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", "tracestate": "ven=1"}
    with AuditLog(tmp_path / "a.jsonl", instance_id="test-1") as log:
        record, outbound = call(telemetry, log, meta)
    version, trace_id, parent_id, flags = outbound["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "01")
    assert record["trace_id"] == CLIENT_TRACE
    assert parent_id == record["span_id"] != CLIENT_SPAN  # the upstream descends from our span
    assert outbound["tracestate"] == "ven=1"
    assert trace.get_current_span() is trace.INVALID_SPAN  # the span's context was detached


def test_without_a_client_trace_a_new_one_starts(tmp_path: Path) -> None:
    telemetry = Telemetry.from_config(TelemetryConfig(**NONE))  # type: ignore[arg-type]
    with AuditLog(tmp_path / "a.jsonl", instance_id="test-1") as log:
        first, outbound = call(telemetry, log, None)
        second, _ = call(telemetry, log, None)
    assert first["trace_id"] and len(first["trace_id"]) == 32 and int(first["trace_id"], 16)
    assert first["trace_id"] != second["trace_id"] and first["span_id"] != second["span_id"]
    _, trace_id, parent_id, _ = outbound["traceparent"].split("-")
    assert (trace_id, parent_id) == (first["trace_id"], first["span_id"])


@pytest.mark.parametrize(("honor", "client_flags", "expected"), [(False, "00", "01"), (True, "00", "00"),
                                                                 (True, "01", "01")])
def test_sampling_flags_are_those_the_sdk_would_set(tmp_path: Path, honor: bool, client_flags: str,
                                                    expected: str) -> None:
    meta = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-{client_flags}"}
    outbound_flags = []
    for exported in (False, True):
        telemetry = Telemetry.from_config(
            TelemetryConfig(**NONE, honor_client_sampling=honor),  # type: ignore[arg-type]
            span_exporters=[InMemorySpanExporter()] if exported else (), synchronous=True)
        assert telemetry.providers.exports_spans is exported
        with AuditLog(tmp_path / f"a-{exported}.jsonl", instance_id="test-1") as log:
            _, outbound = call(telemetry, log, meta)
        outbound_flags.append(outbound["traceparent"].split("-")[3])
        telemetry.shutdown()
    assert outbound_flags == [expected, expected]


def test_an_exception_leaves_no_context_behind(tmp_path: Path) -> None:
    telemetry = Telemetry.from_config(TelemetryConfig(**NONE))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError), telemetry.request_span(method="tools/call", tool="query") as req:
        assert trace.get_current_span() is req.span
        raise RuntimeError("boom")
    assert req.error_type == "RuntimeError"
    assert trace.get_current_span() is trace.INVALID_SPAN
