"""Telemetry configuration: which exporters, where, and what may be recorded.

Every field left unset falls back to the standard OpenTelemetry environment variables
(`OTEL_TRACES_EXPORTER`, `OTEL_LOGS_EXPORTER`, `OTEL_METRICS_EXPORTER`,
`OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL`, `OTEL_EXPORTER_OTLP_[SIGNAL_]ENDPOINT`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER`, `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_SDK_DISABLED`). Unlike the
OpenTelemetry default, an exporter that is configured nowhere is `none`, not `otlp`.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict

Exporter = Literal["otlp", "console", "none"]
Protocol = Literal["http/protobuf", "grpc"]
Signal = Literal["traces", "logs", "metrics"]


class TelemetryConfig(BaseModel):
    """How the proxy exports spans, metrics and audit log records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_name: str | None = None
    """`service.name`; default `OTEL_SERVICE_NAME`, else "pgwarden-proxy"."""
    instance_id: str | None = None
    """`service.instance.id` and `pgwarden.instance.id` (use the audit log's instance id)."""
    traces: Exporter | None = None
    logs: Exporter | None = None
    metrics: Exporter | None = None
    otlp_protocol: Protocol | None = None
    otlp_endpoint: str | None = None
    """Base endpoint: `http://host:4318` (HTTP; `/v1/<signal>` is appended) or `host:4317` (gRPC)."""
    otlp_headers: dict[str, str] | None = None
    otlp_insecure: bool | None = None
    """gRPC only: plaintext instead of TLS (default: from the endpoint's scheme)."""
    metric_export_interval_ms: int | None = None
    capture_sensitive: bool = False
    """Opt-in: put the SQL as received and the tool arguments on spans (literals included)."""
    honor_client_sampling: bool = False
    """If False, a client's "not sampled" flag cannot switch tracing of its requests off."""
    sdk_spans: bool = False
    """Keep the MCP SDK's own spans (`MCP send …`, its server span). Off: pgwarden's span is the one."""
    set_global: bool = False
    """Install the providers as the process-wide OpenTelemetry providers."""
    resource_attributes: dict[str, str] = {}

    def exporter(self, signal: Signal) -> Exporter:
        chosen: str | None = getattr(self, signal)
        if chosen is None:
            chosen = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "none").split(",")[0].strip().lower()
        if chosen not in ("otlp", "console", "none"):
            raise ValueError(f"unsupported {signal} exporter {chosen!r} (otlp, console, none)")
        return chosen  # type: ignore[return-value]

    def protocol(self, signal: Signal) -> Protocol:
        chosen = (
            self.otlp_protocol
            or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        if chosen not in ("http/protobuf", "grpc"):
            raise ValueError(f"unsupported OTLP protocol {chosen!r} (http/protobuf, grpc)")
        return chosen  # type: ignore[return-value]
