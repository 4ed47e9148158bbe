"""Fitting pgwarden's request span into the MCP SDK's server.

The SDK (mcp 2.x) ships `OpenTelemetryMiddleware` in every low-level `Server.middleware`: a
SERVER span per inbound message, continued from `_meta` only, without `mcp.session.id`, and
with the raw exception text as status description. pgwarden emits its own request span instead
(exactly one per MCP request, with the pgwarden attributes), so the proxy:

1. removes the SDK's middleware: `use_pgwarden_spans(server, telemetry)`, which also installs
   `RequestSpanMiddleware` so every inbound request gets its span, reachable from the handler
   with `current_request()`;
2. keeps the SDK's outbound `MCP send …` CLIENT span disabled (`TelemetryConfig.sdk_spans`
   False): its tracer yields a non-recording span carrying the current context, so the SDK's
   own `_meta` injection still hands the upstream our `pgwarden.upstream` span as parent.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from pgwarden.proxy.telemetry.request import RequestSpan
from pgwarden.proxy.telemetry.telemetry import Telemetry

_CURRENT: ContextVar[RequestSpan | None] = ContextVar("pgwarden_request_span", default=None)


def current_request() -> RequestSpan | None:
    """The `RequestSpan` of the request being handled (set by `RequestSpanMiddleware`)."""
    return _CURRENT.get()


def _headers(request: Any) -> Mapping[str, str] | None:
    headers = getattr(request, "headers", None)
    return headers if isinstance(headers, Mapping) else None


class RequestSpanMiddleware:
    """Server middleware (`(ctx, call_next)`) opening pgwarden's request span around each request."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        params = ctx.params or {}
        name = params.get("name") if isinstance(params, Mapping) else None
        target = name if isinstance(name, str) else None
        headers = _headers(getattr(ctx, "request", None))
        session_id = headers.get("mcp-session-id") if headers is not None else None
        with self.telemetry.request_span(
            method=ctx.method,
            tool=target if ctx.method == "tools/call" else None,
            prompt=target if ctx.method == "prompts/get" else None,
            request_id=ctx.request_id,
            protocol_version=ctx.protocol_version,
            session_id=session_id,
            parent_meta=ctx.meta,
            http_headers=headers,
            transport="pipe" if headers is None else "tcp",
        ) as req:
            token = _CURRENT.set(req)
            try:
                return await call_next(ctx)
            finally:
                _CURRENT.reset(token)


def remove_sdk_span_middleware(server: Any) -> None:
    """Drop the SDK's `OpenTelemetryMiddleware` from a low-level `Server`'s middleware list."""
    from mcp.server._otel import OpenTelemetryMiddleware

    server.middleware[:] = [m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)]


def use_pgwarden_spans(server: Any, telemetry: Telemetry) -> None:
    """Replace the SDK's span middleware with `RequestSpanMiddleware` (outermost)."""
    remove_sdk_span_middleware(server)
    server.middleware.insert(0, RequestSpanMiddleware(telemetry))
