"""The stdio front's fast path: requests of an initialised connection answered without the SDK.

Once the SDK has completed the handshake of a stdio client (handshake era: `initialize`
answered, `client_params` set), every request that reaches the relay is one of the relay's
own routes or METHOD_NOT_FOUND; the SDK's generic machinery in between (a replay task, the
dispatcher's read loop, a context, a session object, a serialised envelope model, a writer
task) only carries it. The fast path takes such a request straight from the parsed line, runs
the same `Relay.route` in a task of its own, and writes the answer as JSON bytes.

What it keeps, as the SDK dispatcher does it:

- each request is answered exactly once, or never when the client cancelled it
  (`notifications/cancelled` interrupts the task; the relay's upstream leg then sends the
  upstream its own cancellation);
- progress for the client's `progressToken` is written live;
- handler errors become JSON-RPC errors (`MCPError` as is, anything else an internal error);
- requests in flight when the proxy shuts down are answered with CONNECTION_CLOSED.

What the call's exchange leaves for after the answer (`Call.after_answer`: a journaled call's
audit record) runs once the answer is written, or the client cancelled the call.

Everything else stays with the SDK: the handshake, a request that is not a plain well-formed
request object, a request carrying a 2026-07-28 envelope (the SDK refuses it on a handshake
connection), all notifications (cancellations are also seen here), responses to the SDK's own
requests (sampling, elicitation, roots) and every message before the handshake completed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, PROTOCOL_VERSION_META_KEY

from pgwarden.proxy.pipeline.gate import AfterAnswer
from pgwarden.proxy.relay.core import Call, ProgressSender, Relay
from pgwarden.proxy.relay.wire import encode_line, is_modern

logger = logging.getLogger(__name__)

Emit = Callable[[bytes], Awaitable[None]]

_ENVELOPE_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_HANDSHAKE = frozenset({"initialize", "server/discover"})
_SHUTDOWN_WRITE_TIMEOUT_S = 1.0
_SHUTDOWN_WAIT_S = 2.0


_scope_class: type[anyio.CancelScope] | None = None


def new_cancel_scope() -> anyio.CancelScope:
    """`anyio.CancelScope()` for the running event loop, made by its class directly: anyio's
    constructor looks up the running backend on every call, once per request here."""
    global _scope_class
    if _scope_class is None:
        _scope_class = type(anyio.CancelScope())
    return _scope_class()


def encode(message: Mapping[str, Any]) -> bytes:
    """One JSON-RPC line (NaN/Infinity as null, as the SDK's envelope models write them)."""
    return encode_line(message)


class StdioFastPath:
    """Takes the requests of one stdio front connection once its handshake is done."""

    def __init__(self, relay: Relay, principal: Any, emit: Emit) -> None:
        self._relay = relay
        self._principal = principal
        self._emit = emit
        self._inflight: dict[str | int, _InFlight] = {}  # by request id, for the client's cancels
        # Plain event-loop tasks (a task group's spawn costs several times more per request).
        # They are only ever cancelled through their anyio scope, so the gate's shielded work
        # (the audit write) stays shielded; `aclose` cancels and awaits them, as leaving a
        # task group would.
        self._tasks: dict[asyncio.Task[None], _InFlight] = {}
        self._closing = False

    def take(self, body: Any) -> bool:
        """Serve `body` (a parsed line) here and return True, or return False for the SDK."""
        if type(body) is not dict:
            return False
        method = body.get("method")
        if type(method) is not str:
            return False
        if "id" not in body:
            if method == "notifications/cancelled":
                self._peer_cancelled(body.get("params"))
            return False  # every notification also goes to the SDK
        conn = self._relay.stdio_connection
        if conn is None or conn.client_params is None or is_modern(conn.protocol_version):
            return False
        rid = body["id"]
        params = body.get("params")
        if (
            method in _HANDSHAKE
            or body.get("jsonrpc") != "2.0"
            or not (type(rid) is int or type(rid) is str)
            or not (params is None or type(params) is dict)
            or not _ENVELOPE_KEYS.issuperset(body)
            or _has_modern_envelope(params)
        ):
            return False
        call = Call(
            method,
            params,
            rid,
            conn.protocol_version,
            conn,
            principal=self._principal,
            progress=self._progress_sender(params),
            after_answer=[],
        )
        state = _InFlight(new_cancel_scope())
        self._inflight[coerce_request_id(rid)] = state  # a duplicate id replaces the older one (as the SDK)
        task = asyncio.get_running_loop().create_task(self._serve(call, state))
        self._tasks[task] = state
        task.add_done_callback(self._tasks.pop)
        if self._closing:
            state.scope.cancel()
        return True

    async def aclose(self) -> None:
        """Cancel what is in flight (each answers CONNECTION_CLOSED) and wait for it, bounded."""
        self._closing = True
        tasks = list(self._tasks)
        for state in self._tasks.values():
            state.scope.cancel()
        if tasks:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(tasks, timeout=_SHUTDOWN_WAIT_S)

    def _peer_cancelled(self, params: Any) -> None:
        rid = params.get("requestId") if isinstance(params, dict) else None
        if (type(rid) is int or type(rid) is str) and (state := self._inflight.get(coerce_request_id(rid))):
            state.peer_cancelled = True
            state.scope.cancel()

    def _progress_sender(self, params: dict[str, Any] | None) -> ProgressSender | None:
        token = progress_token_from_params(params)
        if token is None:
            return None
        emit = self._emit

        async def send(progress: float, total: float | None, message: str | None) -> None:
            out: dict[str, Any] = {"progressToken": token, "progress": progress}
            if total is not None:
                out["total"] = total
            if message is not None:
                out["message"] = message
            line = encode({"jsonrpc": "2.0", "method": "notifications/progress", "params": out})
            await _quietly(emit, line)

        return send

    async def _serve(self, call: Call, state: _InFlight) -> None:
        try:
            await self._answer(call, state)
        finally:
            if call.after_answer:
                await run_after_answer(call.after_answer)

    async def _answer(self, call: Call, state: _InFlight) -> None:
        rid = call.request_id
        assert rid is not None
        key = coerce_request_id(rid)
        answer: dict[str, Any] | None = None
        try:
            with state.scope:
                answer = await routed_answer(self._relay, call, rid)
        finally:
            if self._inflight.get(key) is state:
                del self._inflight[key]
        if state.peer_cancelled:
            return  # a request the client cancelled is never answered
        if answer is None:
            # Cancelled, not by the client: the proxy is shutting down. Answer so the client
            # is not left waiting.
            answer = error_answer(rid, {"code": CONNECTION_CLOSED, "message": "Connection closed"})
            with anyio.move_on_after(_SHUTDOWN_WRITE_TIMEOUT_S, shield=True):
                await _quietly(self._emit, encode(answer))
            return
        await _quietly(self._emit, encode(answer))


@dataclass(slots=True)
class _InFlight:
    scope: anyio.CancelScope
    peer_cancelled: bool = False


async def routed_answer(relay: Relay, call: Call, rid: str | int) -> dict[str, Any]:
    """The JSON-RPC answer to request `rid`: the relay's result, or its failure mapped as the
    SDK's dispatcher maps a handler's (`MCPError` as is, anything else an internal error)."""
    try:
        return {"jsonrpc": "2.0", "id": rid, "result": await relay.route(call)}
    except MCPError as exc:
        return error_answer(rid, exc.error.model_dump(mode="json", exclude_unset=True))
    except Exception:
        logger.exception("the relay failed on %s", call.method)
        return error_answer(rid, {"code": INTERNAL_ERROR, "message": "Internal error"})


def error_answer(rid: str | int, error: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC error answer to request `rid`."""
    return {"jsonrpc": "2.0", "id": rid, "error": error}


def _has_modern_envelope(params: dict[str, Any] | None) -> bool:
    meta = params.get("_meta") if params else None
    return isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta


async def run_after_answer(work: list[AfterAnswer]) -> None:
    """What the call's exchange left for after its answer (its audit record): run to the end,
    shielded like the gate's own audit writes, whatever happens to the task."""
    with anyio.CancelScope(shield=True):
        for step in work:
            try:
                await step()
            except Exception:
                logger.exception("work after an answer failed")


async def _quietly(emit: Emit, data: bytes) -> None:
    gone = (anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError, ConnectionResetError)
    with suppress(*gone):
        await emit(data)  # dropped when the client went away
