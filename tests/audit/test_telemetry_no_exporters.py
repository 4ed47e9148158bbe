"""With no exporter configured, telemetry skips work nobody can see, and the audit record is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pgwarden.proxy.audit import AuditLog
from pgwarden.proxy.telemetry import Telemetry, TelemetryConfig

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"
NONE = {"traces": "none", "logs": "none", "metrics": "none"}


def _one_call(telemetry: Telemetry, log: AuditLog) -> dict[str, object]:
    with telemetry.request_span(method="tools/call", tool="query", request_id=3,
                                parent_meta={"traceparent": TRACEPARENT}) as req:
        req.record_decision(principal_id="alice", decision="allow", rules=["read"],
                            relations=["public.orders"], row_cap=10, policy_revision="rev1",
                            sql="SELECT id FROM orders WHERE id = 42", rows_returned=1, is_error=False)
        record = req.audit(log)
    assert record is not None
    return record


def test_no_exporters_disables_metrics_and_span_attributes(tmp_path: Path) -> None:
    telemetry = Telemetry.from_config(TelemetryConfig(**NONE))  # type: ignore[arg-type]
    assert not telemetry.providers.exports_spans
    assert not telemetry.providers.exports_metrics
    assert not telemetry.metrics.enabled
    with AuditLog(tmp_path / "audit.jsonl", strict=True) as log:
        record = _one_call(telemetry, log)
    # The audit record keeps everything, the client's trace id included.
    assert record["trace_id"] == CLIENT_TRACE
    assert record["decision"] == "allow" and record["principal"] == "alice"
    assert record["rules"] == ["read"] and record["relations"] == ["public.orders"]
    assert record["sql"] == {"text": "SELECT id FROM orders WHERE id = ?", "length": 35}
    line = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert line == record


@pytest.mark.parametrize("exporter", ["spans", "metrics"])
def test_a_configured_exporter_still_gets_everything(tmp_path: Path, exporter: str) -> None:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = Telemetry.from_config(
        TelemetryConfig(**NONE),  # type: ignore[arg-type]
        span_exporters=[spans] if exporter == "spans" else (),
        metric_readers=[reader] if exporter == "metrics" else (),
        synchronous=True,
    )
    with AuditLog(tmp_path / "audit.jsonl", strict=True) as log:
        record = _one_call(telemetry, log)
    if exporter == "spans":
        assert telemetry.providers.exports_spans and not telemetry.metrics.enabled
        (span,) = spans.get_finished_spans()
        attributes = dict(span.attributes or {})
        assert attributes["pgwarden.decision"] == "allow"
        assert attributes["pgwarden.audit.seq"] == record["seq"]
    else:
        assert telemetry.metrics.enabled and not telemetry.providers.exports_spans
        data = reader.get_metrics_data()
        assert data is not None
        names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        assert "pgwarden.decisions" in names
