"""A real OTLP receiver on loopback for the telemetry tests: HTTP/protobuf and gRPC.

It collects every export request (traces and logs) as sent, raw bytes included, so a test can
check the structure of what arrived and scan everything that left a process for secrets.
(Named uniquely: test modules import it, never `conftest`.)

    with http_receiver() as (endpoint, received):      # endpoint: http://127.0.0.1:PORT
        ... run something with OTEL_EXPORTER_OTLP_ENDPOINT=endpoint ...
        received.wait_for(lambda r: len(r.spans()) >= 3)
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def any_value(value: AnyValue) -> Any:
    """An OTLP `AnyValue` as a plain Python value (lists and maps recursively)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


@dataclass(frozen=True)
class ExportedSpan:
    """One span as a receiver got it, with the `service.name` of the process that sent it."""

    service: str
    scope: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    attributes: dict[str, Any]
    events: list[str]
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str = ""
    raw: Any = field(default=None, repr=False, compare=False)


class Received:
    """Everything the receiver was sent. Safe to read while exporters are still sending."""

    def __init__(self) -> None:
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.logs: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self.raw: list[bytes] = []
        self._changed = threading.Condition()

    def add_traces(self, message: trace_service_pb2.ExportTraceServiceRequest, raw: bytes) -> None:
        with self._changed:
            self.traces.append(message)
            self.raw.append(raw)
            self._changed.notify_all()

    def add_logs(self, message: logs_service_pb2.ExportLogsServiceRequest, raw: bytes) -> None:
        with self._changed:
            self.logs.append(message)
            self.raw.append(raw)
            self._changed.notify_all()

    def spans(self) -> list[Any]:
        with self._changed:
            traces = list(self.traces)
        return [s for req in traces for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]

    def exported_spans(self) -> list[ExportedSpan]:
        """Every span received, flattened (ids as lowercase hex)."""
        with self._changed:
            traces = list(self.traces)
        out = []
        for req in traces:
            for rs in req.resource_spans:
                resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append(ExportedSpan(
                            service=str(resource.get("service.name", "")),
                            scope=ss.scope.name,
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes={kv.key: any_value(kv.value) for kv in s.attributes},
                            events=[e.name for e in s.events],
                            status_code=s.status.code,
                            status_message=s.status.message,
                            raw=s,
                        ))
        return out

    def log_records(self) -> list[Any]:
        with self._changed:
            logs = list(self.logs)
        return [r for req in logs for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records]

    def resource_attributes(self) -> dict[str, str]:
        with self._changed:
            traces = list(self.traces)
        return {kv.key: kv.value.string_value for req in traces for rs in req.resource_spans
                for kv in rs.resource.attributes}

    def raw_bytes(self) -> bytes:
        """Every export request body received, concatenated (for scanning)."""
        with self._changed:
            return b"\n".join(self.raw)

    def wait_for(self, done: Callable[[Received], bool], timeout: float = 20.0) -> bool:
        """Block until `done(self)` holds (checked on every arrival) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if done(self):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.25))


@contextmanager
def http_receiver() -> Iterator[tuple[str, Received]]:
    """An OTLP/HTTP (protobuf) receiver on a free loopback port: `/v1/traces` and `/v1/logs`;
    other signals are answered 404. Yields the base endpoint and what it receives."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path == "/v1/traces":
                traces = trace_service_pb2.ExportTraceServiceRequest()
                traces.ParseFromString(body)
                received.add_traces(traces, body)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            elif self.path == "/v1/logs":
                logs = logs_service_pb2.ExportLogsServiceRequest()
                logs.ParseFromString(body)
                received.add_logs(logs, body)
                reply = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def grpc_receiver() -> Iterator[tuple[str, Received]]:
    """An OTLP/gRPC receiver (traces and logs) on a free loopback port. Yields `host:port`."""
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    received = Received()

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            received.add_traces(request, request.SerializeToString())
            return trace_service_pb2.ExportTraceServiceResponse()

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            received.add_logs(request, request.SerializeToString())
            return logs_service_pb2.ExportLogsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", received
    finally:
        server.stop(grace=None)
