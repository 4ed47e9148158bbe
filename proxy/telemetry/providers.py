"""Build the tracer, meter and logger providers from a `TelemetryConfig`.

Console exporters write to stderr: on stdio, the proxy's stdout is the MCP channel.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    ConsoleLogRecordExporter,
    LogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from pgwarden.proxy.telemetry.config import Signal, TelemetryConfig

SDK_TRACER_SCOPE = "mcp-python-sdk"  # the MCP SDK's tracer (mcp/shared/_otel.py)
_HTTP_PATHS: dict[Signal, str] = {"traces": "v1/traces", "logs": "v1/logs", "metrics": "v1/metrics"}


@dataclass(frozen=True, slots=True)
class Providers:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    # False only when nothing can ever see them: no span (log) exporter was configured and the
    # providers are not installed globally, where other code could add processors later.
    exports_spans: bool = True
    exports_logs: bool = True
    # Likewise for metrics: False only when no metric reader was configured and the providers
    # are not installed globally.
    exports_metrics: bool = True

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        self.meter_provider.shutdown()

    def force_flush(self) -> None:
        self.tracer_provider.force_flush()
        self.logger_provider.force_flush()
        self.meter_provider.force_flush()


def _otlp_exporter(config: TelemetryConfig, signal: Signal) -> Any:
    """The OTLP exporter of `signal` over the configured protocol (HTTP or gRPC)."""
    endpoint = config.otlp_endpoint
    headers = config.otlp_headers
    if config.protocol(signal) == "grpc":
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
        elif signal == "logs":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (  # type: ignore[assignment]
                OTLPLogExporter as Grpc,
            )
        else:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[assignment]
                OTLPMetricExporter as Grpc,
            )
        return Grpc(endpoint=endpoint, headers=headers, insecure=config.otlp_insecure)
    if endpoint is not None:
        endpoint = endpoint.rstrip("/") + "/" + _HTTP_PATHS[signal]
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http
    elif signal == "logs":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
            OTLPLogExporter as Http,
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter as Http,
        )
    return Http(endpoint=endpoint, headers=headers)


def _sampler(config: TelemetryConfig) -> sampling.Sampler:
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return sampling._get_from_env_or_default()
    if config.honor_client_sampling:
        return sampling.ParentBased(sampling.ALWAYS_ON)
    # A client cannot switch tracing of its own requests off with a "not sampled" traceparent.
    return sampling.ParentBased(sampling.ALWAYS_ON, remote_parent_not_sampled=sampling.ALWAYS_ON)


def _tracer_provider(config: TelemetryConfig, resource: Resource) -> TracerProvider:
    kwargs: dict[str, Any] = {}
    if not config.sdk_spans:
        try:
            from opentelemetry.sdk.trace import _TracerConfig

            def configurator(scope: InstrumentationScope) -> _TracerConfig:
                return _TracerConfig(is_enabled=scope.name != SDK_TRACER_SCOPE)

            kwargs["_tracer_configurator"] = configurator
        except ImportError:  # an SDK without tracer configurators: the SDK's spans stay on
            pass
    return TracerProvider(resource=resource, sampler=_sampler(config), shutdown_on_exit=False, **kwargs)


def build_providers(
    config: TelemetryConfig,
    *,
    span_exporters: Sequence[SpanExporter] = (),
    log_exporters: Sequence[LogRecordExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    synchronous: bool = False,
) -> Providers:
    """Providers with the configured exporters plus any given ones (tests pass in-memory ones).

    `synchronous` exports each span and log record as it ends (tests); otherwise batched.
    """
    attributes: dict[str, str] = dict(config.resource_attributes)
    attributes.setdefault("service.name", config.service_name or os.environ.get("OTEL_SERVICE_NAME")
                          or "pgwarden-proxy")
    if config.instance_id:
        attributes.setdefault("service.instance.id", config.instance_id)
    resource = Resource.create(attributes)

    tracer_provider = _tracer_provider(config, resource)
    span_out: list[SpanExporter] = list(span_exporters)
    match config.exporter("traces"):
        case "otlp":
            span_out.append(_otlp_exporter(config, "traces"))
        case "console":
            span_out.append(ConsoleSpanExporter(out=sys.stderr))
    for span_exporter in span_out:
        tracer_provider.add_span_processor(
            SimpleSpanProcessor(span_exporter) if synchronous else BatchSpanProcessor(span_exporter)
        )

    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    log_out: list[LogRecordExporter] = list(log_exporters)
    match config.exporter("logs"):
        case "otlp":
            log_out.append(_otlp_exporter(config, "logs"))
        case "console":
            log_out.append(ConsoleLogRecordExporter(out=sys.stderr))
    for log_exporter in log_out:
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(log_exporter) if synchronous else BatchLogRecordProcessor(log_exporter)
        )

    readers: list[MetricReader] = list(metric_readers)
    metric_exporter: MetricExporter | None = None
    match config.exporter("metrics"):
        case "otlp":
            metric_exporter = _otlp_exporter(config, "metrics")
        case "console":
            metric_exporter = ConsoleMetricExporter(out=sys.stderr)
    if metric_exporter is not None:
        readers.append(PeriodicExportingMetricReader(
            metric_exporter, export_interval_millis=config.metric_export_interval_ms))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
    shared = config.set_global or config.sdk_spans
    return Providers(tracer_provider, meter_provider, logger_provider,
                     exports_spans=bool(span_out) or shared, exports_logs=bool(log_out) or shared,
                     exports_metrics=bool(readers) or shared)
