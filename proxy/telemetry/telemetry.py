"""`Telemetry`: the proxy's single entry point to spans, metrics and audit log records."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import Token
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry import context as otel_context
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

from pgwarden import __version__
from pgwarden.proxy.telemetry import attributes as A
from pgwarden.proxy.telemetry.config import TelemetryConfig
from pgwarden.proxy.telemetry.metrics import Metrics
from pgwarden.proxy.telemetry.propagation import extract_context
from pgwarden.proxy.telemetry.providers import Providers, build_providers
from pgwarden.proxy.telemetry.request import RequestSpan

log = logging.getLogger(__name__)
SCOPE = "pgwarden.proxy"


def _without_nulls(value: Mapping[str, Any]) -> dict[str, Any]:
    """OTLP `AnyValue` maps cannot hold null: drop None values, recursively."""
    return {k: _without_nulls(v) if isinstance(v, Mapping) else v for k, v in value.items() if v is not None}


class Telemetry:
    """Tracer, meter and logger of the proxy, built once at start-up from a `TelemetryConfig`."""

    def __init__(self, config: TelemetryConfig, providers: Providers) -> None:
        self.config = config
        self.providers = providers
        self.tracer = providers.tracer_provider.get_tracer(SCOPE, __version__)
        self.metrics = Metrics(providers.meter_provider.get_meter(SCOPE, __version__),
                               enabled=providers.exports_metrics)
        self.logger = providers.logger_provider.get_logger(SCOPE, __version__)
        self._open_requests = 0  # request spans open right now (`open_requests`)
        self._open_lock = threading.Lock()
        # With no span exporter, request spans are made by `_unexported_span` from this tracer.
        self._unexported_tracer = (
            self.tracer if not providers.exports_spans and isinstance(self.tracer, SdkTracer) else None
        )

    @classmethod
    def from_config(
        cls,
        config: TelemetryConfig | None = None,
        *,
        span_exporters: Sequence[SpanExporter] = (),
        log_exporters: Sequence[LogRecordExporter] = (),
        metric_readers: Sequence[MetricReader] = (),
        synchronous: bool = False,
    ) -> Telemetry:
        """Build providers per `config` and the `OTEL_*` environment (extra exporters: for tests)."""
        config = config or TelemetryConfig()
        providers = build_providers(config, span_exporters=span_exporters, log_exporters=log_exporters,
                                    metric_readers=metric_readers, synchronous=synchronous)
        if config.set_global or config.sdk_spans:
            trace.set_tracer_provider(providers.tracer_provider)
            metrics.set_meter_provider(providers.meter_provider)
            _logs.set_logger_provider(providers.logger_provider)
        return cls(config, providers)

    @contextmanager
    def request_span(
        self,
        *,
        method: str,
        tool: str | None = None,
        prompt: str | None = None,
        resource_uri: str | None = None,
        request_id: str | int | None = None,
        protocol_version: str | None = None,
        session_id: str | None = None,
        parent_meta: Mapping[str, Any] | None = None,
        http_headers: Mapping[str, str] | None = None,
        transport: str | None = None,
    ) -> Iterator[RequestSpan]:
        """The one SERVER span of an MCP request, named `{mcp.method.name} {target}`.

        Continues the client's W3C trace context from `parent_meta` (the request's `_meta`),
        else from `http_headers`, else the ambient context. An exception leaving the block sets
        `error.type` to its class name (never its message) and propagates.
        """
        target = tool if tool is not None else prompt
        name = f"{method} {target}" if target else method
        parent = extract_context(parent_meta, http_headers)
        if self._unexported_tracer is not None:
            span_cm: AbstractContextManager[Span] = _Current(
                _unexported_span(self._unexported_tracer, name, parent), parent)
        else:
            span_cm = self.tracer.start_as_current_span(
                name, context=parent, kind=SpanKind.SERVER,
                attributes=self._start_attributes(method, tool, prompt, resource_uri, request_id,
                                                  protocol_version, session_id, transport),
                record_exception=False, set_status_on_exception=False,
            )
        with self._open_lock:
            self._open_requests += 1
        try:
            with span_cm as span:
                req = RequestSpan(self, span, method, target,
                                  None if request_id is None else str(request_id), session_id)
                try:
                    yield req
                except BaseException as exc:
                    if req.error_type is None:
                        req.set_error(type(exc).__qualname__)
                    raise
                finally:
                    if req.outcome.decision is not None and req.audit_record is None \
                            and not req.audit_deferred:
                        log.debug("%s finished with a decision but no audit record", name)
                    req._finish()
        finally:
            with self._open_lock:
                self._open_requests -= 1

    @property
    def open_requests(self) -> int:
        """How many request spans are open right now (requests being handled)."""
        return self._open_requests

    def _start_attributes(
        self, method: str, tool: str | None, prompt: str | None, resource_uri: str | None,
        request_id: str | int | None, protocol_version: str | None, session_id: str | None,
        transport: str | None,
    ) -> dict[str, Any]:
        attrs: dict[str, Any] = {A.MCP_METHOD_NAME: method}
        if request_id is not None:
            attrs[A.JSONRPC_REQUEST_ID] = str(request_id)
        if protocol_version is not None:
            attrs[A.MCP_PROTOCOL_VERSION] = protocol_version
        if session_id is not None:
            attrs[A.MCP_SESSION_ID] = session_id
        if method == "tools/call":
            attrs[A.GEN_AI_OPERATION_NAME] = A.EXECUTE_TOOL
        if tool is not None:
            attrs[A.GEN_AI_TOOL_NAME] = tool
        if prompt is not None:
            attrs[A.GEN_AI_PROMPT_NAME] = prompt
        if resource_uri is not None:
            attrs[A.MCP_RESOURCE_URI] = resource_uri
        if transport is not None:
            attrs[A.NETWORK_TRANSPORT] = transport
        if self.config.instance_id is not None:
            attrs[A.INSTANCE_ID] = self.config.instance_id
        return attrs

    def emit_audit_record(self, record: Mapping[str, Any], span: Span | None = None) -> None:
        """Emit an audit record as an OpenTelemetry log record (event `pgwarden.audit`); nothing
        when no log exporter is configured (no one could receive it)."""
        if not self.providers.exports_logs:
            return
        context = trace.set_span_in_context(span) if span is not None else None
        body = _without_nulls(record)
        deny = record.get("decision") != "allow"
        self.logger.emit(
            event_name=A.AUDIT_EVENT,
            body=body,
            context=context,
            severity_number=SeverityNumber.WARN if deny else SeverityNumber.INFO,
            severity_text="WARN" if deny else "INFO",
            attributes={
                A.INSTANCE_ID: str(record.get("instance_id")),
                A.AUDIT_SEQ: int(record.get("seq", 0)),
                A.DECISION: str(record.get("decision")),
            },
        )

    def audit_sink(self, record: dict[str, Any]) -> None:
        """An `AuditLog` sink that emits each record as a log record (for writers without a span)."""
        self.emit_audit_record(record, trace.get_current_span())

    def force_flush(self) -> None:
        self.providers.force_flush()

    def shutdown(self) -> None:
        self.providers.shutdown()


def _unexported_span(tracer: SdkTracer, name: str, parent: Context | None) -> Span:
    """The request span when no exporter could ever receive it: only its identity.

    The same trace id, span id, sampling flags and trace state as the SDK would give the span
    (from the tracer's id generator and sampler, the client's context as parent), but no
    recording span, attributes, events or processors.
    """
    parent_context = trace.get_current_span(parent).get_span_context()
    if parent_context.is_valid:
        trace_id = parent_context.trace_id
        random_trace_id = getattr(parent_context.trace_flags, "random_trace_id", False)
    else:
        trace_id = tracer.id_generator.generate_trace_id()
        random_trace_id = tracer.id_generator.is_trace_id_random()
    sampling = tracer.sampler.should_sample(parent, trace_id, name, SpanKind.SERVER)
    flags = TraceFlags.SAMPLED if sampling.decision.is_sampled() else TraceFlags.DEFAULT
    if random_trace_id:
        flags |= getattr(TraceFlags, "RANDOM_TRACE_ID", 0)
    return NonRecordingSpan(SpanContext(trace_id, tracer.id_generator.generate_span_id(), is_remote=False,
                                        trace_flags=TraceFlags(flags), trace_state=sampling.trace_state))


class _Current:
    """Makes `span` the current span (child of `parent`) inside the block, like `use_span`
    without ending anything: stages and the upstream's `traceparent` descend from it."""

    __slots__ = ("_parent", "_span", "_token")

    def __init__(self, span: Span, parent: Context | None) -> None:
        self._span = span
        self._parent = parent
        self._token: Token[Context] | None = None

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span, self._parent))
        return self._span

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
