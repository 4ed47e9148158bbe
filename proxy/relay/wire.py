"""Reshaping params and results between the front client's and the upstream's protocol era.

Params are rebuilt, never forwarded verbatim: the inbound `_meta` is dropped except the W3C
trace context (the progress token is replaced by the upstream dispatcher's own and progress
is relayed per request). A 2026-era client's reserved `io.modelcontextprotocol/*` keys would
make a handshake-era upstream reject the request, and a client must not be able to smuggle
envelope keys (protocol version, client capabilities) past the proxy.

Results are adapted to the front's era with a few key edits on the dict: handshake-era
clients do not get 2026 result keys; 2026-era clients get the required `resultType`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic_core import to_json

FORWARDED_META_KEYS = ("traceparent", "tracestate")
"""The only inbound `_meta` keys passed upstream (W3C trace context)."""

MODERN_ONLY_PARAMS = frozenset({"inputResponses", "requestState"})
"""Request params that exist only in the 2026-07-28 protocol (multi-round-trip retries)."""

MODERN_RESULT_KEYS = ("resultType", "ttlMs", "cacheScope")
"""Result keys a handshake-era client does not know."""


def trace_meta(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The trace-context subset of the inbound `_meta` (string values only)."""
    meta = (params or {}).get("_meta")
    if not isinstance(meta, Mapping):
        return {}
    return {k: meta[k] for k in FORWARDED_META_KEYS if isinstance(meta.get(k), str)}


def rebuild_params(
    params: Mapping[str, Any] | None, *, upstream_modern: bool, **overrides: Any
) -> dict[str, Any]:
    """Params to send upstream: the client's fields minus `_meta` (trace context kept),
    minus 2026-only fields for a handshake-era upstream, with `overrides` applied."""
    out: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if key == "_meta" or (not upstream_modern and key in MODERN_ONLY_PARAMS):
            continue
        out[key] = value
    out.update(overrides)
    meta = trace_meta(params)
    if meta:
        out["_meta"] = meta
    return out


def split_lines(partial: bytearray, data: bytes) -> list[bytes]:
    """The lines `data` completes: `partial` (bytes of a line whose end has not come yet) is
    joined in front of it, and keeps what follows the last newline."""
    if b"\n" not in data:
        partial += data
        return []
    if partial:
        partial += data
        data = bytes(partial)
        partial.clear()
    lines = data.split(b"\n")
    partial += lines.pop()
    return lines


def encode_line(message: Mapping[str, Any]) -> bytes:
    """One JSON-RPC line: `message` as compact JSON and a newline, NaN/Infinity as null (as the
    SDK's envelope models write them).

    orjson writes the plain JSON values a message holds byte for byte as pydantic_core's
    `to_json(..., inf_nan_mode="null")` does, in about a quarter of the time; what orjson
    refuses (an integer beyond 64 bits, a key that is not a string, a type it does not know)
    is written by `to_json`, so every message comes out as before.
    """
    try:
        return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return to_json(message, inf_nan_mode="null") + b"\n"


def is_modern(protocol_version: str | None) -> bool:
    return protocol_version in MODERN_PROTOCOL_VERSIONS


def adapt_result(result: dict[str, Any], front_version: str | None) -> dict[str, Any]:
    """Shape an upstream result for the front client's era (in place; returns it)."""
    meta = result.get("_meta")
    if isinstance(meta, dict):
        # Never pass on the upstream's envelope keys (its identity, its protocol facts).
        cleaned = {k: v for k, v in meta.items() if not str(k).startswith("io.modelcontextprotocol/")}
        if cleaned:
            result["_meta"] = cleaned
        else:
            del result["_meta"]
    if is_modern(front_version):
        result.setdefault("resultType", "complete")
    else:
        for key in MODERN_RESULT_KEYS:
            result.pop(key, None)
    return result


def tool_error(text: str) -> dict[str, Any]:
    """A tool result the model can read and act on: `isError` with one text item."""
    return {"content": [{"type": "text", "text": text}], "isError": True}
