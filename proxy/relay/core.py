"""The relay: every request a front client sends, routed through the gate to the upstream.

It runs as the only middleware of the front `Server` (see `server.py`), so it sees each
request as raw params before the SDK validates or serialises anything, and answers with raw
dicts. The SDK keeps what it is good at: framing, the handshake (`initialize`,
`server/discover`), cancellation and progress plumbing, Streamable HTTP sessions. On stdio,
once the handshake is done, the fast path (`fast.py`) calls `Relay.route` directly with a
`Call` it builds from the parsed line; over HTTP the fast path (`http_fast.py`) does the same
for a POST of an initialised session; all ways meet in `route`.

Routing, written down once:

- policed: `tools/call` (check → forward → finish), `tools/list`, `resources/list`,
  `resources/templates/list`, `prompts/list` (filtered per principal), `resources/read`,
  `resources/subscribe`, `prompts/get`, `completion/complete` (checked like a call);
- passed through: `ping`, `resources/unsubscribe`, `logging/setLevel`;
- everything else is METHOD_NOT_FOUND: a method the proxy does not know is not relayed.

Upstream traffic towards clients (server-to-client requests, notifications) is routed to
the one front connection it can belong to, or refused when that is ambiguous.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, REQUEST_TIMEOUT
from pydantic import BaseModel, ConfigDict

from pgwarden.proxy.pipeline.gate import AfterAnswer, Allowed, CallContext, Denied, Gate, ListKind, Outcome
from pgwarden.proxy.relay.upstream import Upstream, UpstreamUnavailable
from pgwarden.proxy.relay.wire import FORWARDED_META_KEYS, adapt_result, is_modern, rebuild_params, trace_meta

logger = logging.getLogger(__name__)

PrincipalResolver = Callable[[ServerRequestContext[Any, Any]], Any]
"""Who is calling, from the request context (configured principal on stdio; the validated
token's principal on HTTP). Raises `PermissionError` when there is none."""

UPSTREAM_UNAVAILABLE = -32002  # implementation-defined server error range
_SUBSCRIPTIONS = "pgwarden.subscriptions"
_LIST_METHODS: dict[str, ListKind] = {
    "tools/list": "tools",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
    "prompts/list": "prompts",
}
_CHECKED_METHODS = frozenset({"resources/read", "resources/subscribe", "prompts/get", "completion/complete"})
_PASSTHROUGH = frozenset({"ping", "resources/unsubscribe", "logging/setLevel"})
_CHANGE_NOTIFICATIONS = frozenset(
    {
        "notifications/tools/list_changed",
        "notifications/resources/list_changed",
        "notifications/prompts/list_changed",
    }
)
_FORWARDED_CLIENT_NOTIFICATIONS = frozenset({"notifications/roots/list_changed"})
_SERVER_REQUESTS: dict[str, tuple[type[Any], types.ClientCapabilities]] = {
    "sampling/createMessage": (
        types.CreateMessageRequest,
        types.ClientCapabilities(sampling=types.SamplingCapability()),
    ),
    "elicitation/create": (
        types.ElicitRequest,
        types.ClientCapabilities(elicitation=types.ElicitationCapability()),
    ),
    "roots/list": (types.ListRootsRequest, types.ClientCapabilities(roots=types.RootsCapability())),
}


class _AnyResult(BaseModel):
    """A client's answer to a relayed server request, kept as the client sent it."""

    model_config = ConfigDict(extra="allow")


def _connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection:
    # The SDK exposes the per-connection object to handlers only through the session; the
    # relay needs it to push upstream notifications to the right client.
    connection: Connection = ctx.session._connection
    return connection


ProgressSender = ProgressFnT


@dataclass(slots=True)
class Call:
    """One front request as the routes see it, from the SDK's context or the stdio fast path."""

    method: str
    params: Mapping[str, Any] | None
    request_id: str | int | None
    protocol_version: str | None
    connection: Connection
    ctx: ServerRequestContext[Any, Any] | None = None  # None: served by a fast path
    principal: Any = None  # fast path: the caller's principal (the SDK path resolves it)
    progress: ProgressSender | None = None  # fast path: sends progress for the client's token
    request: Any = None  # HTTP fast path: the request (its headers: session id, trace context)
    back_channel: bool = True  # False: nothing can ask the client anything during this call
    after_answer: list[AfterAnswer] | None = None  # fast path: run once the answer is written

    @classmethod
    def of(cls, ctx: ServerRequestContext[Any, Any]) -> Call:
        return cls(ctx.method, ctx.params, ctx.request_id, ctx.protocol_version, _connection_of(ctx), ctx)


class Relay:
    """The front server's middleware. One per proxy process, shared by all front sessions."""

    def __init__(
        self,
        upstream: Upstream,
        gate: Gate,
        principal_for: PrincipalResolver,
        *,
        transport: str = "stdio",
        forward_upstream_logs: bool = True,
    ) -> None:
        self.upstream = upstream
        self.gate = gate
        self.principal_for = principal_for
        self.transport = transport
        self.forward_upstream_logs = forward_upstream_logs
        self._fronts: dict[int, Connection] = {}  # live handshake-era front connections
        self._inflight: dict[int, list[Call]] = {}  # per connection
        self.stdio_connection: Connection | None = None  # the one front connection of a stdio proxy
        # HTTP: each session's connection by session id, from its `initialize` until it closes
        # (for the HTTP fast path, see http_fast.py), and who hears of the client's cancels.
        self.http_connections: dict[str, Connection] = {}
        self.on_client_cancelled: Callable[[Connection, Mapping[str, Any] | None], None] | None = None
        self._routes: dict[str, Callable[[Call], Awaitable[dict[str, Any]]]] = {
            "tools/call": self._tools_call,
            **{m: self._list for m in _LIST_METHODS},
            **{m: self._checked for m in _CHECKED_METHODS},
            **{m: self._passthrough for m in _PASSTHROUGH},
        }

    # -- the middleware ------------------------------------------------------------------------

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        method = ctx.method
        if ctx.request_id is None:
            await self._client_notification(ctx, call_next)
            return None
        if method in ("initialize", "server/discover"):
            if self.transport == "stdio":
                self.stdio_connection = _connection_of(ctx)  # for the fast path (see fast.py)
            else:
                self._register_http(_connection_of(ctx))
            return await call_next(ctx)  # the SDK owns the handshake; capabilities come from us
        legacy = not is_modern(ctx.protocol_version)
        if legacy and ctx.session.client_params is None and method != "ping":
            return await call_next(ctx)  # not initialised yet: the SDK answers with its error
        return await self.route(Call.of(ctx))

    def routes(self, method: str) -> bool:
        """Whether `route` has a route for `method` (anything else is METHOD_NOT_FOUND)."""
        return method in self._routes

    async def route(self, call: Call) -> dict[str, Any]:
        """Answer one request of an initialised (or modern) front connection."""
        route = self._routes.get(call.method)
        if route is None:
            raise MCPError(code=METHOD_NOT_FOUND, message="Method not found", data=call.method)
        if not is_modern(call.protocol_version):
            self._register(call.connection)
        return await route(call)

    async def _client_notification(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> None:
        await call_next(ctx)  # initialized / cancelled bookkeeping stays with the SDK
        if ctx.method == "notifications/cancelled" and self.on_client_cancelled is not None:
            self.on_client_cancelled(_connection_of(ctx), ctx.params)  # a fast-path call it may name
        if ctx.method in _FORWARDED_CLIENT_NOTIFICATIONS and not self.upstream.modern:
            await self.upstream.notify(ctx.method, rebuild_params(ctx.params, upstream_modern=False))

    # -- routes --------------------------------------------------------------------------------

    def _context(self, call: Call) -> CallContext:
        ctx = call.ctx
        if ctx is None:
            principal = call.principal
        else:
            try:
                principal = self.principal_for(ctx)
            except PermissionError as exc:
                raise MCPError(code=INVALID_REQUEST, message=str(exc) or "not authenticated") from None
        session_id = None
        meta = trace_meta(call.params)
        request = ctx.request if ctx is not None else call.request
        if request is not None:
            headers = getattr(request, "headers", {})
            session_id = headers.get("mcp-session-id")
            if "traceparent" not in meta:  # over HTTP the trace context may come as headers instead
                meta = {k: headers[k] for k in FORWARDED_META_KEYS if isinstance(headers.get(k), str)}
        return CallContext(
            principal=principal,
            upstream=self.upstream.spec.name,
            method=call.method,
            request_id=call.request_id,
            session_id=session_id,
            protocol_version=call.protocol_version,
            transport=self.transport,
            meta=meta,
            after_answer=call.after_answer,
        )

    async def _tools_call(self, call: Call) -> dict[str, Any]:
        params = call.params or {}
        name, arguments = params.get("name"), params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise MCPError(
                code=INVALID_PARAMS, message="tools/call needs a string name and an object of arguments"
            )
        with self.gate.open(self._context(call), tool=name) as exchange:
            verdict = exchange.check_tool_call(name, arguments)
            outcome = Outcome()
            if isinstance(verdict, Allowed):
                args = verdict.arguments if verdict.arguments is not None else arguments
                with exchange.upstream():
                    outcome = await self._forward(call, "tools/call", name=name, arguments=dict(args))
            result = await exchange.finish(verdict, outcome)
        return self._answer(call, result, outcome)

    async def _checked(self, call: Call) -> dict[str, Any]:
        params = call.params or {}
        uri = params.get("uri") if isinstance(params.get("uri"), str) else None
        raw_ref = params.get("ref")
        ref: Mapping[str, Any] = raw_ref if isinstance(raw_ref, dict) else {}
        prompt = params.get("name") if call.method == "prompts/get" else ref.get("name")
        with self.gate.open(
            self._context(call), prompt=prompt if isinstance(prompt, str) else None, uri=uri or ref.get("uri")
        ) as exchange:
            verdict = exchange.check_request(params)
            outcome = Outcome()
            if isinstance(verdict, Allowed):
                with exchange.upstream():
                    outcome = await self._forward(call, call.method)
            result = await exchange.finish(verdict, outcome)
        if isinstance(verdict, Denied) and result is None:
            raise MCPError(code=INVALID_REQUEST, message=f"pgwarden denied this request: {verdict.message}")
        answer = self._answer(call, result, outcome)
        if call.method == "resources/subscribe" and uri is not None and outcome.result is not None:
            call.connection.state.setdefault(_SUBSCRIPTIONS, set()).add(uri)
        return answer

    async def _list(self, call: Call) -> dict[str, Any]:
        kind = _LIST_METHODS[call.method]
        with self.gate.open(self._context(call)) as exchange:
            with exchange.upstream():
                outcome = await self._forward(call, call.method)
            result = outcome.result
            if result is not None:
                items = result.get(kind)
                if not isinstance(items, list):
                    raise MCPError(
                        code=INTERNAL_ERROR, message=f"the upstream's {call.method} result has no {kind} list"
                    )
                result[kind] = exchange.visible(kind, [i for i in items if isinstance(i, dict)])
                if is_modern(call.protocol_version):
                    # Filtered for this caller, and policies reload: private, and not to be reused.
                    result["cacheScope"] = "private"
                    result["ttlMs"] = 0
            await exchange.finish(None, outcome)
        return self._answer(call, result, outcome)

    async def _passthrough(self, call: Call) -> dict[str, Any]:
        if call.method == "resources/unsubscribe":
            uri = (call.params or {}).get("uri")
            call.connection.state.get(_SUBSCRIPTIONS, set()).discard(uri)
        outcome = await self._forward(call, call.method)
        return self._answer(call, None, outcome)

    # -- forwarding ----------------------------------------------------------------------------

    async def _forward(self, call: Call, method: str, **overrides: Any) -> Outcome:
        """Send the request upstream; an upstream error or failure becomes an `Outcome.error`."""
        params = rebuild_params(call.params, upstream_modern=self.upstream.modern, **overrides)
        meta = (call.params or {}).get("_meta")
        wants_progress = isinstance(meta, Mapping) and meta.get("progressToken") is not None
        on_progress: ProgressSender | None = None
        if wants_progress:
            if call.ctx is not None:
                session = call.ctx.session

                async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                    await session.report_progress(progress, total, message)

            else:
                on_progress = call.progress

        key = id(call.connection)
        inflight = self._inflight.setdefault(key, [])
        inflight.append(call)
        started = time.perf_counter()
        try:
            result = await self.upstream.request(method, params, on_progress=on_progress)
            return Outcome(result=result, duration_s=time.perf_counter() - started)
        except MCPError as exc:
            error = exc.error.model_dump(mode="json", exclude_none=True)
            return Outcome(error=error, duration_s=time.perf_counter() - started)
        except UpstreamUnavailable as exc:
            error = {"code": UPSTREAM_UNAVAILABLE, "message": str(exc)}
            return Outcome(error=error, duration_s=time.perf_counter() - started)
        except TimeoutError as exc:
            error = {"code": REQUEST_TIMEOUT, "message": str(exc)}
            return Outcome(error=error, duration_s=time.perf_counter() - started)
        finally:
            inflight.remove(call)
            if not inflight:
                self._inflight.pop(key, None)

    def _answer(self, call: Call, result: dict[str, Any] | None, outcome: Outcome) -> dict[str, Any]:
        if result is None:
            result = outcome.result
        if result is None:
            error = outcome.error or {"code": INTERNAL_ERROR, "message": "no result"}
            raise MCPError(
                code=int(error.get("code", INTERNAL_ERROR)),
                message=str(error.get("message", "")),
                data=error.get("data"),
            )
        if result.get("resultType") == "input_required" and not is_modern(call.protocol_version):
            # A 2026-07-28 upstream asks for client input inside the result; a handshake-era
            # client has no way to answer it, and must not mistake it for a final result.
            raise MCPError(
                code=INVALID_REQUEST,
                message="the upstream server needs input from the client (sampling, elicitation or roots) "
                "in a form this client's protocol version cannot carry",
            )
        return adapt_result(result, call.protocol_version)

    # -- front connections (for upstream-initiated traffic) ------------------------------------

    def _register_http(self, conn: Connection) -> None:
        sid = conn.session_id
        if sid is not None and sid not in self.http_connections:
            self.http_connections[sid] = conn
            conn.exit_stack.callback(self.http_connections.pop, sid, None)

    def _register(self, conn: Connection) -> None:
        key = id(conn)
        if key not in self._fronts:
            self._fronts[key] = conn
            conn.exit_stack.callback(self._fronts.pop, key, None)

    async def on_server_request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """An upstream asks the client something (sampling, elicitation, roots): ask the one
        client it can be for, on that client's request stream when a call is in flight."""
        request_type, capability = _SERVER_REQUESTS.get(method, (None, None))
        if request_type is None or capability is None:
            raise MCPError(code=METHOD_NOT_FOUND, message="Method not found", data=method)
        busy = [calls for calls in self._inflight.values() if calls]
        if len(busy) == 1:
            call: Call | None = busy[0][-1]
        elif not busy and len(self._fronts) == 1:
            call = None
        else:
            raise MCPError(
                code=INVALID_REQUEST, message="pgwarden cannot tell which client this request is for"
            )
        request = request_type.model_validate({"method": method, "params": params or None})
        ctx = call.ctx if call is not None else None
        if ctx is not None:
            if not ctx.session.check_client_capability(capability):
                raise MCPError(code=INVALID_REQUEST, message=f"the client does not support {method}")
            try:
                answer = await ctx.session.send_request(
                    request, _AnyResult, metadata=ServerMessageMetadata(related_request_id=ctx.request_id)
                )
            except NoBackChannelError:
                raise MCPError(
                    code=INVALID_REQUEST, message=f"the client's protocol cannot carry {method}"
                ) from None
            return answer.model_dump(by_alias=True, mode="json", exclude_none=True)
        # no SDK context (nothing in flight, or a fast-path call): the connection's own channel
        conn = call.connection if call is not None else next(iter(self._fronts.values()))
        if not conn.check_capability(capability):
            raise MCPError(code=INVALID_REQUEST, message=f"the client does not support {method}")
        if call is not None and not call.back_channel:
            raise MCPError(code=INVALID_REQUEST, message=f"the client's protocol cannot carry {method}")
        data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
        return await conn.send_raw_request(method, data.get("params"))

    async def on_notification(self, method: str, params: dict[str, Any]) -> None:
        """An upstream notification: to the clients it concerns, or nowhere."""
        fronts = list(self._fronts.values())
        if method in _CHANGE_NOTIFICATIONS:
            targets = fronts
        elif method == "notifications/resources/updated":
            uri = params.get("uri")
            targets = [c for c in fronts if uri in c.state.get(_SUBSCRIPTIONS, ())]
        elif method == "notifications/message":
            # Log lines can carry data: only when there is exactly one client they can be for.
            targets = fronts if self.forward_upstream_logs and len(fronts) == 1 else []
        else:
            targets = []
        out = rebuild_params(params, upstream_modern=False)
        for conn in targets:
            with anyio.move_on_after(5):
                await conn.notify(method, out)
