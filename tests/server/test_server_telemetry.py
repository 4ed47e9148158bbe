"""A trace continued from the request's `_meta.traceparent` reaches the Postgres span."""

from __future__ import annotations

import time

from server_helpers import HttpServer, parse_console_spans, run, session

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


def test_db_span_is_a_child_of_the_request_span(reader_dsn: str, server_logs) -> None:
    server = HttpServer(reader_dsn, log_dir=server_logs, extra_env={"OTEL_TRACES_EXPORTER": "console"})
    try:
        async def go():
            async with session(server.url) as client:
                meta = {"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"}
                return await client.call_tool("query", {"sql": "SELECT 'secret-literal' AS v"}, meta=meta)

        result = run(go)
        assert not result.is_error
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            spans = [s for s in parse_console_spans(server.stderr())
                     if s["context"]["trace_id"] == f"0x{TRACE_ID}"]
            if any(s["name"] == "SELECT pgwarden_demo" for s in spans):
                break
            time.sleep(0.1)
        log = server.stderr()
    finally:
        server.stop()

    by_name = {s["name"]: s for s in spans}
    request = by_name["tools/call query"]
    db = by_name["SELECT pgwarden_demo"]
    assert request["parent_id"] == f"0x{PARENT_SPAN_ID}"
    assert db["parent_id"] == request["context"]["span_id"]
    assert db["kind"] == "SpanKind.CLIENT"
    assert db["attributes"] == {"db.system.name": "postgresql", "db.namespace": "pgwarden_demo",
                                "db.operation.name": "SELECT"}
    assert "secret-literal" not in log  # never the SQL or its values


def test_no_exporter_means_no_spans(reader_http) -> None:
    async def go():
        async with session(reader_http.url) as client:
            return await client.call_tool("query", {"sql": "SELECT 1"})

    run(go)
    assert parse_console_spans(reader_http.stderr()) == []
