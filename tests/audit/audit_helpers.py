"""Helpers shared by the audit and telemetry tests (imported as a plain module)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pgwarden.proxy.audit import AuditEntry, AuditLog, redact_sql
from pgwarden.proxy.telemetry import Telemetry, TelemetryConfig

SECRET_EMAIL = "ada@example.com"
SECRET_SQL = f"SELECT id, name FROM customers WHERE email = '{SECRET_EMAIL}' AND tenant_id = 4242 LIMIT 10"


@dataclass
class Pipeline:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    metrics: InMemoryMetricReader


def make_pipeline(**config: object) -> Pipeline:
    spans = InMemorySpanExporter()
    logs = InMemoryLogRecordExporter()
    metrics = InMemoryMetricReader()
    cfg = TelemetryConfig(traces="none", logs="none", metrics="none", instance_id="test-1", **config)  # type: ignore[arg-type]
    telemetry = Telemetry.from_config(cfg, span_exporters=[spans], log_exporters=[logs],
                                      metric_readers=[metrics], synchronous=True)
    return Pipeline(telemetry, spans, logs, metrics)


def entry(i: int = 0, *, principal: str = "alice", decision: str = "allow",
          sql: str = SECRET_SQL) -> AuditEntry:
    return AuditEntry(
        method="tools/call", tool="query", decision=decision, principal=principal,
        rules=("analyst-read",) if decision == "allow" else ("deny-secrets",),
        reason_code=None if decision == "allow" else "policy.deny",
        sql=redact_sql(sql), sql_sent=redact_sql(sql), relations=("public.customers",),
        rows=i, truncated=False, request_id=str(i), policy_revision="sha256:abc",
    )


def write_log(path: Path, count: int, **kwargs: object) -> AuditLog:
    log = AuditLog(path, instance_id="test-1", **kwargs)  # type: ignore[arg-type]
    for i in range(count):
        log.append(entry(i, principal="alice" if i % 2 else "bob", decision="allow" if i % 3 else "deny"))
    log.close()
    return log


def products_gate(tmp_path: Path, log: AuditLog, **telemetry: object) -> Any:
    """The real gate, with a policy that lets principal "ann" read public.products through the
    `query` tool, auditing to `log`."""
    from pgwarden.proxy.guard.catalog import Catalog
    from pgwarden.proxy.pipeline.guarded import GuardedGate
    from pgwarden.proxy.policy import load_policy
    from pgwarden.proxy.toolmaps.presets import PRESETS

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "version: 1\nsearch_path: [public]\nrules:\n"
        "  - id: read\n    effect: allow\n    when: 'true'\n    tools: [query]\n"
        "    tables: [public.products]\n"
    )
    catalog = Catalog.from_mapping({"public.products": ("id", "name", "price")})
    policy = load_policy([policy_file], catalog=catalog)
    return GuardedGate(lambda: policy, tool_map=PRESETS["pgwarden"], catalog=catalog,
                       telemetry=Telemetry.from_config(TelemetryConfig(**telemetry)), audit=log)  # type: ignore[arg-type]
