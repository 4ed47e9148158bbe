"""The HTTP front's fast path: a session's plain requests answered without the SDK's machinery.

Once the SDK has opened a Streamable HTTP session and completed its handshake, every request
POSTed to it that reaches the relay is one of the relay's own routes; the SDK's machinery in
between (the session transport's memory streams and SSE writer, the message router, the
dispatcher, a context and session object, the envelope models) only carries it. This ASGI
layer sits inside the authentication middleware and in front of the SDK's app. It takes a
POST only when all of these hold, and otherwise passes the request to the SDK untouched
(with its body replayed when it was read):

- the MCP path, `Content-Type: application/json`, an `Accept` the SDK accepts for the answer
  framing in use, a body within the SDK's size limit;
- an `mcp-session-id` naming a live session of the SDK's session manager, owned by the same
  credential (the SDK's own comparison), whose handshake completed, and an
  `mcp-protocol-version` equal to the version that session negotiated;
- the Host/Origin check of the SDK's transport passes (its own `TransportSecurityMiddleware`
  with the same settings: the DNS-rebinding check when the proxy runs without authentication
  on loopback);
- the body is one plain JSON-RPC request for a method the relay routes, without a 2026-07-28
  envelope and without a `progressToken` (progress needs a stream);
- in SSE mode, the client did not declare sampling, elicitation or roots (the upstream could
  ask it something during the call, which only the SDK's per-request stream can carry).

It then runs the same `Relay.route` (so the gate checks, forwards and audits the call exactly
once) and writes what the SDK would write: the JSON-RPC answer as a JSON body, or as a
`text/event-stream` with one `message` event (no priming event: the proxy keeps no event
store), with the SDK's headers. Errors map as on the stdio fast path (`MCPError` as is,
anything else an internal error). A `notifications/cancelled` naming a call in flight here
(notifications still go through the SDK, which calls `Relay.on_client_cancelled`) cancels it
and answers it with the SDK's `Request cancelled` error, as this era's HTTP wire requires; a
client that disconnects cancels its call; a call whose session ends, or that is cancelled by
the server going down, is answered with CONNECTION_CLOSED when the client is still there.
While a call is in flight here it holds its session open against the idle timeout, as the
SDK's transport does for the requests it serves.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.connection import Connection
from mcp.server.streamable_http import check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.dispatcher import coerce_request_id
from mcp_types import CONNECTION_CLOSED, PROTOCOL_VERSION_META_KEY
from pydantic_core import from_json, to_json
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgwarden.proxy.relay.core import Call, Relay
from pgwarden.proxy.relay.fast import error_answer, new_cancel_scope, routed_answer, run_after_answer
from pgwarden.proxy.relay.wire import is_modern

logger = logging.getLogger(__name__)

REQUEST_CANCELLED = -32800
"""What the SDK's Streamable HTTP transport answers a request the client cancelled with."""

_ENVELOPE_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_HANDSHAKE = frozenset({"initialize", "server/discover"})
_BACK_CHANNEL_CAPABILITIES = ("sampling", "elicitation", "roots")
_SHUTDOWN_WRITE_TIMEOUT_S = 1.0
_DISCONNECT_WATCH_AFTER_S = 0.05  # a client that leaves earlier is noticed at this point
_WANTED = frozenset(
    {b"content-type", b"content-length", b"accept", b"mcp-session-id", b"mcp-protocol-version"}
)


class HttpFastPath:
    """ASGI layer in front of the SDK's Streamable HTTP app (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, relay: Relay, manager: StreamableHTTPSessionManager, *, path: str
    ) -> None:
        self.app = app
        self.relay = relay
        self.path = path
        self.served = 0  # requests answered here (tests and benchmarks read it)
        self._json = manager.json_response
        self._sessions = _Sessions(manager)
        self._security = TransportSecurityMiddleware(manager.security_settings)
        self._limit = manager.max_request_body_size
        self._inflight: dict[tuple[str, str | int], _InFlight] = {}  # by session, request id
        self._watched: set[str] = set()  # sessions whose end cancels their calls here
        relay.on_client_cancelled = self._client_cancelled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        taken = await self._take(scope, receive)
        if taken is None:
            await self.app(scope, receive, send)
        elif isinstance(taken, _Replay):
            await self.app(scope, taken.receive, send)
        else:
            await self._serve(taken, receive, send)

    # -- deciding ------------------------------------------------------------------------------

    async def _take(self, scope: Scope, receive: Receive) -> _Taken | _Replay | None:
        """The request to serve here, or None (body unread) / `_Replay` (body read) for the SDK."""
        if scope.get("root_path"):
            return None
        headers: dict[bytes, bytes] = {}
        for key, value in scope["headers"]:
            if key in _WANTED and key not in headers:  # the first of each, as Starlette reads them
                headers[key] = value
        sid_raw, version_raw = headers.get(b"mcp-session-id"), headers.get(b"mcp-protocol-version")
        content_type = headers.get(b"content-type")
        if sid_raw is None or version_raw is None or content_type is None:
            return None
        if not _is_json_content_type(content_type.decode("latin-1")):
            return None
        length = headers.get(b"content-length")
        if length is not None and not (length.isdigit() and int(length) <= self._limit):
            return None
        sid, version = sid_raw.decode("latin-1"), version_raw.decode("latin-1")
        transport = self._sessions.live(sid, scope.get("user"))
        if transport is None:
            return None
        conn = self.relay.http_connections.get(sid)
        params = conn.client_params if conn is not None else None
        if conn is None or params is None or conn.protocol_version != version or is_modern(version):
            return None
        if not self._json and any(
            getattr(params.capabilities, name, None) is not None for name in _BACK_CHANNEL_CAPABILITIES
        ):
            return None
        request = Request(scope)
        has_json, has_sse = check_accept_headers(request)
        if not (has_json if self._json else has_json and has_sse):
            return None
        if await self._security.validate_request(request, is_post=True) is not None:
            return None

        body, complete, trailing = await _read_body(receive, self._limit)
        replay = _Replay(body, complete, trailing, receive)
        if not complete or trailing is not None:
            return replay  # too large, or the client went away: the SDK answers as it does
        try:
            message = from_json(body)
        except ValueError:
            return replay
        if not _is_plain_request(message, self.relay):
            return replay
        try:
            principal = self.relay.principal_for(_RequestContext(request))  # type: ignore[arg-type]
        except PermissionError:
            return replay
        return _Taken(sid, transport, conn, request, message, principal)

    # -- serving -------------------------------------------------------------------------------

    async def _serve(self, taken: _Taken, receive: Receive, send: Send) -> None:
        message = taken.message
        call = Call(
            message["method"],
            message.get("params"),
            message["id"],
            taken.connection.protocol_version,
            taken.connection,
            principal=taken.principal,
            request=taken.request,
            back_channel=False,
            after_answer=[],
        )
        try:
            await self._answer(taken, call, receive, send)
        finally:
            if call.after_answer:
                await run_after_answer(call.after_answer)

    async def _answer(self, taken: _Taken, call: Call, receive: Receive, send: Send) -> None:
        rid: str | int = taken.message["id"]
        state = _InFlight(new_cancel_scope())
        key = (taken.session_id, coerce_request_id(rid))
        self._inflight[key] = state  # a duplicate id replaces the older one (as the SDK)
        self._watch_session(taken.session_id, taken.connection)
        self.served += 1
        hold = _IdleHold(taken.transport)
        watch = _DisconnectWatch(receive, state)
        answer: dict[str, Any] | None = None
        try:
            with state.scope:
                answer = await routed_answer(self.relay, call, rid)
        except BaseException:
            # This request's own task is cancelled (the server is going down): answer if we can.
            with anyio.move_on_after(_SHUTDOWN_WRITE_TIMEOUT_S, shield=True):
                closed = error_answer(rid, {"code": CONNECTION_CLOSED, "message": "Connection closed"})
                await _quietly(self._respond(send, taken.session_id, closed))
            raise
        finally:
            watch.stop()
            hold.release()
            if self._inflight.get(key) is state:
                del self._inflight[key]
        if state.disconnected:
            return  # nobody to answer
        if state.peer_cancelled:
            answer = error_answer(rid, {"code": REQUEST_CANCELLED, "message": "Request cancelled"})
        elif answer is None:  # cancelled because its session ended
            answer = error_answer(rid, {"code": CONNECTION_CLOSED, "message": "Connection closed"})
        await _quietly(self._respond(send, taken.session_id, answer))

    async def _respond(self, send: Send, session_id: str, answer: Mapping[str, Any]) -> None:
        data = to_json(answer, inf_nan_mode="null")
        sid = session_id.encode("latin-1")
        if self._json:
            headers = [
                (b"content-type", b"application/json"),
                (b"mcp-session-id", sid),
                (b"content-length", str(len(data)).encode("latin-1")),
            ]
            body = data
        else:
            headers = [
                (b"cache-control", b"no-cache, no-transform"),
                (b"connection", b"keep-alive"),
                (b"content-type", b"text/event-stream"),
                (b"mcp-session-id", sid),
                (b"x-accel-buffering", b"no"),
            ]
            body = b"event: message\r\ndata: " + data + b"\r\n\r\n"
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    # -- cancellation --------------------------------------------------------------------------

    def _client_cancelled(self, conn: Connection, params: Mapping[str, Any] | None) -> None:
        sid = conn.session_id
        rid = params.get("requestId") if isinstance(params, Mapping) else None
        if sid is None or not (type(rid) is int or type(rid) is str):
            return
        state = self._inflight.get((sid, coerce_request_id(rid)))
        if state is not None:
            state.peer_cancelled = True
            state.scope.cancel()

    def _watch_session(self, sid: str, conn: Connection) -> None:
        if sid not in self._watched:
            self._watched.add(sid)
            conn.exit_stack.callback(self._session_ended, sid)

    def _session_ended(self, sid: str) -> None:
        self._watched.discard(sid)
        for (session, _), state in list(self._inflight.items()):
            if session == sid:
                state.scope.cancel()


@dataclass(slots=True)
class _Taken:
    session_id: str
    transport: Any
    connection: Connection
    request: Request
    message: dict[str, Any]
    principal: Any


@dataclass(slots=True)
class _InFlight:
    scope: anyio.CancelScope
    peer_cancelled: bool = False
    disconnected: bool = False


@dataclass(slots=True)
class _RequestContext:
    """What the relay's principal resolver reads of a request context: the HTTP request."""

    request: Request


class _Replay:
    """The body already read, handed to the SDK as if it had not been."""

    def __init__(self, body: bytes, complete: bool, trailing: Message | None, receive: Receive) -> None:
        self._queue: deque[Message] = deque()
        self._queue.append({"type": "http.request", "body": body, "more_body": not complete})
        if trailing is not None:
            self._queue.append(trailing)
        self._receive = receive

    async def receive(self) -> Message:
        if self._queue:
            return self._queue.popleft()
        return await self._receive()


class _Sessions:
    """The SDK session manager's live sessions and their owners.

    mcp 2.3 keeps them in the manager's `_server_instances` and `_session_owners` (no public
    accessor); the check below is the one its `_handle_stateful_request` makes. Should those
    attributes be missing, no session is ever live here and every request goes to the SDK.
    """

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self._instances: Mapping[str, Any] = getattr(manager, "_server_instances", {})
        self._owners: Mapping[str, Any] = getattr(manager, "_session_owners", {})
        if manager.stateless or not hasattr(manager, "_server_instances"):
            self._instances = {}

    def live(self, sid: str, user: Any) -> Any:
        transport = self._instances.get(sid)
        if transport is None or transport.is_terminated:
            return None
        requestor = authorization_context(user) if isinstance(user, AuthenticatedUser) else None
        if requestor != self._owners.get(sid):
            return None
        idle = getattr(transport, "idle_scope", None)
        if idle is not None and idle.cancel_called:
            return None  # its idle time ran out: the SDK answers for a session going away
        return transport


class _IdleHold:
    """Hold a session open against its idle timeout while a call is in flight, as the SDK's
    transport does around each request it serves (`handle_request`)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._timeout: float | None = getattr(transport, "_idle_timeout", None)
        self._held = transport.idle_scope is not None and self._timeout is not None
        if self._held:
            transport._requests_in_flight += 1
            transport.idle_scope.deadline = math.inf

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        transport = self._transport
        transport._requests_in_flight -= 1
        if not transport._requests_in_flight and self._timeout is not None:
            transport.idle_scope.deadline = anyio.current_time() + self._timeout


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool, Message | None]:
    """(body, complete, trailing message): stops past `limit` or at a non-body message."""
    chunks = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(chunks), False, message
        chunks.extend(message.get("body", b""))
        if len(chunks) > limit:
            return bytes(chunks), False, None
        if not message.get("more_body", False):
            return bytes(chunks), True, None


class _DisconnectWatch:
    """Watches for the client going away during a call that is still running after
    `_DISCONNECT_WATCH_AFTER_S` (most calls are answered sooner, and need no watching task)."""

    def __init__(self, receive: Receive, state: _InFlight) -> None:
        self._receive, self._state = receive, state
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(_DISCONNECT_WATCH_AFTER_S, self._start)

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(_watch_disconnect(self._receive, self._state))

    def stop(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


async def _watch_disconnect(receive: Receive, state: _InFlight) -> None:
    """Cancel the call when the client goes away before it is answered."""
    with suppress(Exception):
        while (await receive())["type"] != "http.disconnect":
            pass
        state.disconnected = True
        state.scope.cancel()


def _is_json_content_type(value: str) -> bool:
    """Both of the SDK's Content-Type checks (its security middleware's and its transport's)."""
    parts = [part.strip() for part in value.split(";")[0].split(",")]
    return value.lower().startswith("application/json") and "application/json" in parts


def _is_plain_request(message: Any, relay: Relay) -> bool:
    if type(message) is not dict or not _ENVELOPE_KEYS.issuperset(message):
        return False
    method, rid, params = message.get("method"), message.get("id"), message.get("params")
    if message.get("jsonrpc") != "2.0" or type(method) is not str or method in _HANDSHAKE:
        return False
    if not (type(rid) is int or type(rid) is str) or not relay.routes(method):
        return False
    if params is None:
        return True
    if type(params) is not dict:
        return False
    meta = params.get("_meta")
    if meta is None:
        return True
    return type(meta) is dict and PROTOCOL_VERSION_META_KEY not in meta and meta.get("progressToken") is None


async def _quietly(sending: Any) -> None:
    gone = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, RuntimeError)
    with suppress(*gone):
        await sending  # dropped when the client went away
