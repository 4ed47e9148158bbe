"""A real OTLP receiver on loopback (HTTP/protobuf and gRPC) gets the request spans and audit log records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_helpers import SECRET_EMAIL, SECRET_SQL
from otlp_receiver import Received, grpc_receiver, http_receiver

from pgwarden.proxy.audit import AuditLog
from pgwarden.proxy.telemetry import SPAN_ANALYSE, SPAN_UPSTREAM, Telemetry, TelemetryConfig

TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE}-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for var in ("OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_METRICS_EXPORTER",
                "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(name="http_receiver")
def http_receiver_fixture() -> Iterator[tuple[str, Received]]:
    with http_receiver() as receiver:
        yield receiver


@pytest.fixture(name="grpc_receiver")
def grpc_receiver_fixture() -> Iterator[tuple[str, Received]]:
    with grpc_receiver() as receiver:
        yield receiver


def drive(telemetry: Telemetry, log: AuditLog) -> None:
    with telemetry.request_span(method="tools/call", tool="query", request_id=1,
                                parent_meta={"traceparent": TRACEPARENT}) as req:
        with req.child(SPAN_ANALYSE):
            pass
        req.record_decision(principal_id="alice", decision="allow", rules=["analyst-read"], sql=SECRET_SQL,
                            sent_sql=SECRET_SQL)
        with req.child(SPAN_UPSTREAM):
            pass
        req.record_decision(rows_returned=2, truncated=False, is_error=False)
        req.audit(log)
    telemetry.force_flush()


def check(received: Received) -> None:
    spans = {s.name: s for s in received.spans()}
    assert set(spans) == {"tools/call query", SPAN_ANALYSE, SPAN_UPSTREAM}
    request = spans["tools/call query"]
    assert request.trace_id.hex() == TRACE
    assert spans[SPAN_ANALYSE].parent_span_id == request.span_id
    attrs = {kv.key: kv.value for kv in request.attributes}
    assert attrs["mcp.method.name"].string_value == "tools/call"
    assert attrs["gen_ai.tool.name"].string_value == "query"
    assert attrs["pgwarden.decision"].string_value == "allow"
    assert [v.string_value for v in attrs["pgwarden.rule.ids"].array_value.values] == ["analyst-read"]
    assert received.resource_attributes()["service.name"] == "pgwarden-test"
    (record,) = received.log_records()
    assert record.event_name == "pgwarden.audit"
    assert record.trace_id.hex() == TRACE
    assert record.span_id == request.span_id
    body = {kv.key: kv.value for kv in record.body.kvlist_value.values}
    assert body["decision"].string_value == "allow"
    assert body["seq"].int_value == 1
    assert len(body["hash"].string_value) == 64
    for raw in received.raw:
        assert SECRET_EMAIL.encode() not in raw


def test_otlp_http_receiver_gets_spans_and_audit_records(http_receiver: tuple[str, Received],
                                                         tmp_path: Path) -> None:
    endpoint, received = http_receiver
    telemetry = Telemetry.from_config(TelemetryConfig(
        service_name="pgwarden-test", traces="otlp", logs="otlp", metrics="none",
        otlp_protocol="http/protobuf", otlp_endpoint=endpoint))
    log = AuditLog(tmp_path / "a.jsonl", instance_id="test-1")
    drive(telemetry, log)
    telemetry.shutdown()
    log.close()
    check(received)


def test_otlp_settings_from_standard_environment(http_receiver: tuple[str, Received], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, received = http_receiver
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "pgwarden-test")
    telemetry = Telemetry.from_config(TelemetryConfig())
    log = AuditLog(tmp_path / "a.jsonl", instance_id="test-1")
    drive(telemetry, log)
    telemetry.shutdown()
    log.close()
    check(received)


def test_otlp_grpc_receiver_gets_spans_and_audit_records(grpc_receiver: tuple[str, Received],
                                                         tmp_path: Path) -> None:
    endpoint, received = grpc_receiver
    telemetry = Telemetry.from_config(TelemetryConfig(
        service_name="pgwarden-test", traces="otlp", logs="otlp", metrics="none",
        otlp_protocol="grpc", otlp_endpoint=endpoint, otlp_insecure=True))
    log = AuditLog(tmp_path / "a.jsonl", instance_id="test-1")
    drive(telemetry, log)
    telemetry.shutdown()
    log.close()
    check(received)


def test_unknown_exporters_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="traces"):
        TelemetryConfig(traces="zipkin")  # type: ignore[arg-type]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="unsupported traces exporter 'zipkin'"):
        Telemetry.from_config(TelemetryConfig())
