"""OpenTelemetry for the server: one CLIENT span per Postgres execution.

The MCP SDK already opens a SERVER span per request (continuing the client's trace from
`_meta.traceparent`) and makes it current while the handler runs; `db_span` starts as a
child of whatever span is current, so a trace reaches from the MCP client down to Postgres.
Span attributes follow the database semantic conventions and never carry SQL text or values.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

tracer = trace.get_tracer("pgwarden.server")

EXPORTER_ENV = "OTEL_TRACES_EXPORTER"


@contextmanager
def db_span(operation: str, database: str) -> Iterator[Span]:
    """A span `"<operation> <database>"` (e.g. `SELECT pgwarden_demo`) around one execution."""
    attributes = {
        "db.system.name": "postgresql",
        "db.namespace": database,
        "db.operation.name": operation,
    }
    with tracer.start_as_current_span(
        f"{operation} {database}", kind=SpanKind.CLIENT, attributes=attributes,
        record_exception=False, set_status_on_exception=False,
    ) as span:
        yield span


def mark_error(span: Span, error_type: str, sqlstate: str | None = None) -> None:
    """Record a failed execution on `span` (the SQLSTATE, never the message: it can hold values)."""
    span.set_attribute("error.type", error_type)
    if sqlstate:
        span.set_attribute("db.response.status_code", sqlstate)
    span.set_status(StatusCode.ERROR)


def configure_tracing_from_env() -> object | None:
    """Install an SDK TracerProvider when OTEL_TRACES_EXPORTER is `otlp` or `console`.

    Returns the provider (call `.shutdown()` at exit to flush) or None when tracing stays off
    (the default, `none` or unset). The console exporter writes to stderr, never stdout, which
    carries the stdio transport. Raises ValueError for an unknown exporter name.
    """
    names = [n.strip() for n in os.environ.get(EXPORTER_ENV, "none").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    service = os.environ.get("OTEL_SERVICE_NAME", "pgwarden-server")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    for name in names:
        if name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            raise ValueError(f"{EXPORTER_ENV}={name!r} is not supported (use otlp, console or none)")
    trace.set_tracer_provider(provider)
    return provider
