"""The proxy's metrics: decisions by effect and reason, guard / upstream / request latency."""

from __future__ import annotations

from opentelemetry.metrics import Meter

from pgwarden.proxy.telemetry import attributes as A

# Bucket bounds in seconds: the guard runs in tens of microseconds to milliseconds.
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _labels(method: str, tool: str | None) -> dict[str, str]:
    labels = {A.MCP_METHOD_NAME: method}
    if tool is not None:
        labels[A.GEN_AI_TOOL_NAME] = tool
    return labels


class Metrics:
    def __init__(self, meter: Meter, *, enabled: bool = True) -> None:
        # Disabled when no reader can ever collect them: every method returns at once instead
        # of building attribute sets and measurements nobody reads.
        self.enabled = enabled
        self._decisions = meter.create_counter(
            A.METRIC_DECISIONS, unit="{decision}", description="Policy decisions by effect and reason code")
        self._guard = meter.create_histogram(
            A.METRIC_GUARD_DURATION, unit="s", description="Time in analyse + decide + rewrite",
            explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS)
        self._upstream = meter.create_histogram(
            A.METRIC_UPSTREAM_DURATION, unit="s", description="Time waiting for the upstream MCP server",
            explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS)
        self._operation = meter.create_histogram(
            A.METRIC_OPERATION_DURATION, unit="s", description="MCP request duration as seen by the proxy",
            explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS)
        self._audit_failures = meter.create_counter(
            A.METRIC_AUDIT_FAILURES, unit="{record}", description="Audit records that could not be written")

    def decision(self, effect: str, reason_code: str | None, method: str, tool: str | None) -> None:
        if not self.enabled:
            return
        labels = {**_labels(method, tool), A.DECISION: effect}
        if reason_code is not None:
            labels[A.REASON_CODE] = reason_code
        self._decisions.add(1, labels)

    def guard_duration(self, seconds: float, effect: str) -> None:
        if not self.enabled:
            return
        self._guard.record(seconds, {A.DECISION: effect})

    def upstream_duration(self, seconds: float, method: str, tool: str | None) -> None:
        if not self.enabled:
            return
        self._upstream.record(seconds, _labels(method, tool))

    def operation_duration(self, seconds: float, method: str, tool: str | None, error: str | None) -> None:
        if not self.enabled:
            return
        labels = _labels(method, tool)
        if error is not None:
            labels[A.ERROR_TYPE] = error
        self._operation.record(seconds, labels)

    def audit_failure(self) -> None:
        if not self.enabled:
            return
        self._audit_failures.add(1)
