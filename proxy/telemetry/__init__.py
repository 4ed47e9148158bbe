"""OpenTelemetry for the proxy: one span per MCP request, metrics, audit records as log records.

    telemetry = Telemetry.from_config(TelemetryConfig(traces="otlp", logs="otlp"))
    with telemetry.request_span(method="tools/call", tool="query", ...) as req:
        with req.child(SPAN_ANALYSE): ...
        req.record_decision(decision="allow", ...)
        req.audit(audit_log)
"""

from pgwarden.proxy.telemetry.attributes import (
    AUDIT_WRITE_FAILED,
    SPAN_ANALYSE,
    SPAN_DECIDE,
    SPAN_REWRITE,
    SPAN_UPSTREAM,
)
from pgwarden.proxy.telemetry.config import TelemetryConfig
from pgwarden.proxy.telemetry.propagation import extract_context, inject_meta
from pgwarden.proxy.telemetry.request import RequestSpan
from pgwarden.proxy.telemetry.sdk import (
    RequestSpanMiddleware,
    current_request,
    remove_sdk_span_middleware,
    use_pgwarden_spans,
)
from pgwarden.proxy.telemetry.telemetry import Telemetry

__all__ = [
    "AUDIT_WRITE_FAILED",
    "SPAN_ANALYSE",
    "SPAN_DECIDE",
    "SPAN_REWRITE",
    "SPAN_UPSTREAM",
    "RequestSpan",
    "RequestSpanMiddleware",
    "Telemetry",
    "TelemetryConfig",
    "current_request",
    "extract_context",
    "inject_meta",
    "remove_sdk_span_middleware",
    "use_pgwarden_spans",
]
