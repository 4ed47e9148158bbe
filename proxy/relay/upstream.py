"""The upstream: one supervised MCP connection to the real Postgres MCP server.

One `Upstream` per configured server, shared by every front session of the process. It
connects (spawning the command for stdio, or opening a Streamable HTTP session), negotiates
the protocol generation the server speaks, and then forwards raw requests: params and
results stay plain dicts, so nothing is re-serialised beyond the JSON-RPC framing.

When the connection ends (the process crashed or was killed, the HTTP session died) calls
in flight fail with `UpstreamUnavailable`, and the supervisor reconnects with exponential
backoff; calls that arrive meanwhile wait a bounded time for the new connection.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TextIO

import anyio
import anyio.abc
import httpx2
import mcp_types as types
from mcp.client._probe import negotiate_auto
from mcp.client.session import ClientRequestContext, ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from pgwarden import __version__
from pgwarden.proxy.relay.pipe import PipeLink, pipe_client

logger = logging.getLogger(__name__)

ProtocolMode = Literal["auto", "legacy", "2026-07-28"]
CLIENT_INFO = types.Implementation(name="pgwarden-proxy", version=__version__)


class UpstreamUnavailable(Exception):
    """The upstream is not connected (crashed, restarting, unreachable). Safe to show clients."""


@dataclass(frozen=True)
class UpstreamSpec:
    """How to reach one upstream server. Exactly one of `command` / `url` is set."""

    name: str = "upstream"
    command: tuple[str, ...] = ()
    url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # sent to an HTTP upstream (its own credentials)
    protocol: ProtocolMode = "auto"
    call_timeout_s: float = 30.0
    connect_timeout_s: float = 20.0
    restart_initial_s: float = 0.2
    restart_max_s: float = 10.0
    reconnect_wait_s: float = 5.0  # how long a call waits for a restarting upstream

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.url):
            raise ValueError("an upstream needs exactly one of a command (stdio) or a URL (Streamable HTTP)")

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"


ServerRequestHandler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
NotificationHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


class _WatchedStream:
    """A read stream that sets `closed` when the transport ends (EOF, error or close)."""

    def __init__(self, inner: Any, closed: anyio.Event) -> None:
        self._inner = inner
        self._closed = closed

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._closed.set()
            raise
        return item

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._closed.set()
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


@dataclass
class _Connection:
    session: ClientSession
    dispatcher: JSONRPCDispatcher[Any]
    closed: anyio.Event
    generation: int
    link: PipeLink | None = None  # stdio: the pipes, for the raw request path


class Upstream:
    """A supervised connection to one upstream MCP server.

    Start it with `run()` in a task group (`await tg.start(upstream.run)` returns once the
    first connection is up or has failed); `request()` forwards one raw request.
    """

    def __init__(
        self,
        spec: UpstreamSpec,
        *,
        on_server_request: ServerRequestHandler | None = None,
        on_notification: NotificationHandler | None = None,
        errlog: TextIO | None = None,
    ) -> None:
        self.spec = spec
        self.on_server_request = on_server_request  # set before run(): decides what is advertised
        self.on_notification = on_notification
        self._errlog = errlog if errlog is not None else sys.stderr
        self._conn: _Connection | None = None
        self._changed = anyio.Event()
        self._generation = 0
        self.restarts = 0
        self.last_error: str | None = None

    # -- connection facts (valid once connected) ---------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed.is_set()

    def _session(self) -> ClientSession:
        if self._conn is None:
            raise UpstreamUnavailable(f"upstream {self.spec.name!r} is not connected")
        return self._conn.session

    @property
    def protocol_version(self) -> str | None:
        return self._conn.session.protocol_version if self._conn else None

    @property
    def modern(self) -> bool:
        return self.protocol_version in MODERN_PROTOCOL_VERSIONS

    @property
    def capabilities(self) -> types.ServerCapabilities | None:
        return self._conn.session.server_capabilities if self._conn else None

    @property
    def server_info(self) -> types.Implementation | None:
        return self._conn.session.server_info if self._conn else None

    @property
    def instructions(self) -> str | None:
        return self._conn.session.instructions if self._conn else None

    # -- supervision ---------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve until the connection ends, reconnect with backoff; forever.

        `task_status.started()` fires after the first connection attempt, successful or not,
        so a caller can refuse to start when the upstream is unreachable.
        """
        delay = self.spec.restart_initial_s
        started = False
        while True:
            began = time.monotonic()
            try:
                async with AsyncExitStack() as stack:
                    conn = await self._connect(stack)
                    self._set(conn)
                    if not started:
                        started = True
                        task_status.started()
                    await conn.closed.wait()
                    self.last_error = "the upstream closed the connection"
            except Exception as exc:  # a failed spawn/handshake is a state to report, not a crash
                self.last_error = _describe(exc)
                logger.warning("upstream %r: %s", self.spec.name, self.last_error)
            finally:
                self._set(None)
            if not started:
                started = True
                task_status.started()
            if time.monotonic() - began > 30:
                delay = self.spec.restart_initial_s  # it ran fine for a while: restart promptly
            logger.warning("upstream %r disconnected; reconnecting in %.1fs", self.spec.name, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, self.spec.restart_max_s)
            self.restarts += 1

    def _set(self, conn: _Connection | None) -> None:
        self._conn = conn
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _connect(self, stack: AsyncExitStack) -> _Connection:
        spec = self.spec
        if spec.command:
            params = StdioServerParameters(
                command=spec.command[0], args=list(spec.command[1:]), env=dict(spec.env) or None, cwd=spec.cwd
            )
            link: PipeLink | None = await stack.enter_async_context(pipe_client(params, self._errlog))
            assert link is not None
            read, write = link.read_stream, link.write_stream
        else:
            link = None
            assert spec.url is not None
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=dict(spec.headers), timeout=httpx2.Timeout(spec.call_timeout_s + 5)
                )
            )
            read, write = await stack.enter_async_context(streamable_http_client(spec.url, http_client=http))
        closed = anyio.Event()
        dispatcher: JSONRPCDispatcher[Any] = JSONRPCDispatcher(_WatchedStream(read, closed), write)
        session = ClientSession(
            dispatcher=dispatcher,
            client_info=CLIENT_INFO,
            sampling_callback=self._sampling if self.on_server_request else None,
            elicitation_callback=self._elicitation if self.on_server_request else None,
            list_roots_callback=self._roots if self.on_server_request else None,
            message_handler=self._message,
        )
        await stack.enter_async_context(session)
        with anyio.fail_after(spec.connect_timeout_s):
            if spec.protocol == "legacy":
                await session.initialize()
            elif spec.protocol == "auto":
                await negotiate_auto(session)
            else:
                await session.discover()
        self._generation += 1
        logger.info(
            "upstream %r connected (%s, protocol %s)", spec.name, spec.transport, session.protocol_version
        )
        return _Connection(session, dispatcher, closed, self._generation, link)

    async def wait_connected(self, within_s: float) -> bool:
        """Wait up to `within_s` seconds for a live connection; True when there is one."""
        with anyio.move_on_after(within_s):
            while not self.connected:
                await self._changed.wait()
        return self.connected

    # -- forwarding ----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        timeout_s: float | None = None,
        on_progress: ProgressFnT | None = None,
    ) -> dict[str, Any]:
        """Send one request upstream and return its raw result.

        Raises:
            UpstreamUnavailable: not connected within `reconnect_wait_s`, or the connection
                ended while the call was in flight.
            TimeoutError: no answer within `timeout_s` (default: the spec's per-call timeout);
                the upstream is sent `notifications/cancelled`.
            MCPError: the upstream answered with a JSON-RPC error.
        """
        conn = self._conn
        if conn is None or conn.closed.is_set():
            if not await self.wait_connected(self.spec.reconnect_wait_s):
                raise UpstreamUnavailable(self._unavailable_message())
            conn = self._conn
            assert conn is not None
        timeout = self.spec.call_timeout_s if timeout_s is None else timeout_s
        if conn.link is not None:  # stdio: straight onto the pipe
            try:
                return await conn.link.request(
                    method, _stamped_for_pipe(conn.session, method, params), timeout_s=timeout,
                    on_progress=on_progress,
                )
            except MCPError as exc:
                raise self._failure(exc, timeout) from None
        data: dict[str, Any] = {"method": method, "params": params or {}}
        opts: CallOptions = {}
        # The SDK's per-era envelope: 2026-07-28 `_meta` keys and Mcp-* headers, or the
        # handshake era's protocol-version header. Private, but the one place that knows it.
        conn.session._stamp(data, opts)
        try:
            opts["timeout"] = timeout
            if on_progress is not None:
                opts["on_progress"] = on_progress
            return await conn.dispatcher.send_raw_request(method, data["params"] or None, opts)
        except MCPError as exc:
            raise self._failure(exc, timeout) from None

    def _failure(self, exc: MCPError, timeout: float) -> Exception:
        """What `request` raises for the upstream's error `exc`."""
        if exc.code == CONNECTION_CLOSED:
            return UpstreamUnavailable(
                f"the upstream server {self.spec.name!r} went away during the call; it is being restarted"
            )
        if exc.code == REQUEST_TIMEOUT:
            return TimeoutError(f"the upstream server {self.spec.name!r} did not answer within {timeout:g} s")
        return exc

    async def notify(self, method: str, params: dict[str, Any] | None) -> None:
        """Forward one notification (best effort: dropped when not connected)."""
        conn = self._conn
        if conn is None or conn.closed.is_set():
            return
        data: dict[str, Any] = {"method": method, "params": params or {}}
        opts: CallOptions = {}
        conn.session._stamp(data, opts)
        await conn.dispatcher.notify(method, data["params"] or None, opts)

    def _unavailable_message(self) -> str:
        why = f" ({self.last_error})" if self.last_error else ""
        return f"the upstream server {self.spec.name!r} is not available{why}; retrying in the background"

    # -- server-to-client traffic --------------------------------------------------------------

    async def _server_request(self, method: str, params: Any) -> Any:
        assert self.on_server_request is not None
        raw = params.model_dump(by_alias=True, mode="json", exclude_none=True) if params is not None else {}
        try:
            return await self.on_server_request(method, raw)
        except MCPError as exc:
            return exc.error

    # The SDK validates what these return against the spec's result union, so the raw dict
    # the front client sent back is returned as is (or its JSON-RPC error).
    async def _sampling(self, context: ClientRequestContext, params: types.CreateMessageRequestParams) -> Any:
        return await self._server_request("sampling/createMessage", params)

    async def _elicitation(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> Any:
        return await self._server_request("elicitation/create", params)

    async def _roots(self, context: ClientRequestContext) -> Any:
        return await self._server_request("roots/list", None)

    async def _message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            logger.warning("upstream %r sent an unreadable message: %s", self.spec.name, _describe(message))
            return
        if self.on_notification is None or isinstance(message, types.ProgressNotification):
            return  # progress is routed per request by the dispatcher
        raw = message.model_dump(by_alias=True, mode="json", exclude_none=True)
        await self.on_notification(raw["method"], raw.get("params") or {})


def _describe(exc: BaseException) -> str:
    """A one-line description of a connection failure (no tracebacks, no secrets from argv)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def _stamped_for_pipe(
    session: ClientSession, method: str, params: dict[str, Any] | None
) -> dict[str, Any] | None:
    """`params` with the `_meta` keys the SDK's per-era stamp gives a request (2026-07-28: the
    protocol version, client info and capabilities; nothing in the handshake era).

    The stamp runs on a copy of the `_meta` alone, so it skips what only HTTP uses: the Mcp-*
    headers, whose tool-argument headers cost a walk of the tool's input schema per call.
    """
    probe: dict[str, Any] = {"method": method, "params": {"_meta": dict((params or {}).get("_meta") or {})}}
    session._stamp(probe, {})
    meta = probe["params"]["_meta"]
    if not meta:
        out = dict(params or {})
        out.pop("_meta", None)
        return out or None
    return {**(params or {}), "_meta": meta}
