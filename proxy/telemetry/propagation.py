"""W3C trace context in and out of MCP `_meta` (and HTTP headers).

Only `traceparent`/`tracestate` cross the proxy: a client's `baggage` is not forwarded to the
upstream (it is untrusted input and may carry anything).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def _valid(ctx: Context) -> bool:
    return trace.get_current_span(ctx).get_span_context().is_valid


def extract_context(
    meta: Mapping[str, Any] | None, http_headers: Mapping[str, str] | None = None
) -> Context | None:
    """The client's trace context: from `_meta` first, else from the HTTP headers; None if neither."""
    if meta:
        carrier = {k: v for k, v in meta.items() if k in ("traceparent", "tracestate") and isinstance(v, str)}
        if carrier:
            ctx = _PROPAGATOR.extract(carrier)
            if _valid(ctx):
                return ctx
    if http_headers:
        carrier = {}
        for key in ("traceparent", "tracestate"):
            value = http_headers.get(key)
            if value is None:  # a plain dict may keep the sender's capitalisation
                value = next((v for k, v in http_headers.items() if k.lower() == key), None)
            if isinstance(value, str):
                carrier[key] = value
        if carrier:
            ctx = _PROPAGATOR.extract(carrier)
            if _valid(ctx):
                return ctx
    return None


def inject_meta(meta: dict[str, Any] | None = None, context: Context | None = None) -> dict[str, Any]:
    """`meta` (or a new dict) with `traceparent`/`tracestate` of `context` (default: the current one)."""
    out = {} if meta is None else meta
    _PROPAGATOR.inject(out, context=context)
    return out
