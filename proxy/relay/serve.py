"""Running the proxy: one upstream, one gate, a stdio or Streamable HTTP front.

The HTTP front is the SDK's Streamable HTTP app (sessions, Host/Origin checks) under uvicorn.
Its speed comes from choices that leave that app as it is: uvicorn's httptools parser when
installed (the `fast` extra; h11 otherwise), no access log, uvloop as the event loop when
installed (`loop_options`, for `anyio.run`), and, when the operator opts in, one JSON body per
answer instead of an SSE stream (`HTTP_RESPONSES_ENV`; see `http_app` for what that gives up).
In front of that app (inside the authentication) the fast path answers the plain requests of
initialised sessions itself (`http_fast.py`; `HTTP_FAST_PATH_ENV=off` turns it off).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, Literal, TextIO

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.types import ASGIApp

from pgwarden.proxy.pipeline.gate import Gate
from pgwarden.proxy.relay.core import PrincipalResolver, Relay
from pgwarden.proxy.relay.fast import StdioFastPath
from pgwarden.proxy.relay.http_fast import HttpFastPath
from pgwarden.proxy.relay.server import RelayServer
from pgwarden.proxy.relay.stdio_front import Emit, stdio_front
from pgwarden.proxy.relay.upstream import Upstream, UpstreamSpec

logger = logging.getLogger(__name__)

HTTP_RESPONSES_ENV = "PGWARDEN_HTTP_RESPONSES"
"""`sse` (the default) or `json`: how the HTTP front answers a request POST (see `http_app`)."""
HttpResponses = Literal["sse", "json"]
HTTP_FAST_PATH_ENV = "PGWARDEN_HTTP_FAST_PATH"
"""`on` (the default) or `off`: whether the HTTP front's fast path runs (`off`: every request
goes through the SDK's Streamable HTTP machinery; see `http_fast.py`)."""


class UpstreamStartError(RuntimeError):
    """The upstream could not be reached at start: the proxy refuses to serve without it."""


def build(
    spec: UpstreamSpec,
    gate: Gate,
    principal_for: PrincipalResolver,
    *,
    transport: str,
    errlog: TextIO | None = None,
    forward_upstream_logs: bool = True,
) -> tuple[Upstream, Relay, RelayServer]:
    """Wire an upstream, the relay and the front server together (nothing started)."""
    upstream = Upstream(spec, errlog=errlog)
    relay = Relay(
        upstream, gate, principal_for, transport=transport, forward_upstream_logs=forward_upstream_logs
    )
    upstream.on_server_request = relay.on_server_request
    upstream.on_notification = relay.on_notification
    return upstream, relay, RelayServer(relay)


OnConnected = Callable[[Upstream], Awaitable[None]]
"""Runs once the upstream is first connected, before the front serves (e.g. tool-map detection)."""


async def _start_upstream(
    tg: anyio.abc.TaskGroup, upstream: Upstream, on_connected: OnConnected | None
) -> None:
    await tg.start(upstream.run)
    if not upstream.connected:
        why = upstream.last_error or "unknown error"
        raise UpstreamStartError(f"cannot reach the upstream MCP server {upstream.spec.name!r}: {why}")
    if on_connected is not None:
        await on_connected(upstream)


async def serve_stdio(
    spec: UpstreamSpec,
    gate: Gate,
    principal: Any,
    *,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    errlog: TextIO | None = None,
    on_connected: OnConnected | None = None,
    forward_upstream_logs: bool = True,
) -> None:
    """Serve one client on stdin/stdout until it closes stdin."""
    upstream, relay, server = build(
        spec,
        gate,
        lambda _ctx: principal,
        transport="stdio",
        errlog=errlog,
        forward_upstream_logs=forward_upstream_logs,
    )

    def fast_path(emit: Emit) -> StdioFastPath:
        return StdioFastPath(relay, principal, emit)

    async with anyio.create_task_group() as tg:
        await _start_upstream(tg, upstream, on_connected)
        async with stdio_front(stdin, stdout, taker=fast_path) as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
        tg.cancel_scope.cancel()


def http_app(
    server: RelayServer,
    *,
    path: str = "/mcp",
    host: str = "127.0.0.1",
    checks_origin: bool = False,
    json_response: bool = False,
) -> Starlette:
    """The Streamable HTTP front as an ASGI app (stateful sessions for the handshake era; the
    2026-07-28 per-request exchange is served on the same path).

    On loopback the SDK's own Host/Origin check guards against DNS rebinding, unless the app is
    wrapped by middleware that `checks_origin` itself (the authentication, configured with the
    deployment's allowed hosts and origins): two checks with different lists would refuse what
    the operator allowed.

    `json_response` answers each request POST with one JSON body instead of an SSE stream
    (Python SDK clients then keep their connection alive instead of opening one per call: the
    cheapest hop). A JSON body carries only the answer, so nothing tied to a call in flight
    reaches the client: the upstream's progress notifications are dropped, and its sampling,
    elicitation and roots requests during a call fail (the upstream gets an error). Upstream
    log messages and list-changed notifications still go out on the client's GET stream. The
    session, Host/Origin and authentication checks are the same in both modes.
    """
    security = None
    if checks_origin:
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    elif host in ("127.0.0.1", "localhost", "::1"):
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
    return server.streamable_http_app(
        streamable_http_path=path, host=host, transport_security=security, json_response=json_response
    )


def http_responses(value: str | None = None) -> HttpResponses:
    """How the HTTP front answers: `value`, else `$PGWARDEN_HTTP_RESPONSES`, else `sse`.
    Anything but `sse` or `json` is refused (ValueError), not guessed."""
    return "json" if _switch(HTTP_RESPONSES_ENV, ("sse", "json"), value) == "json" else "sse"


def http_fast_path_enabled() -> bool:
    """Whether the HTTP front's fast path runs: on unless `$PGWARDEN_HTTP_FAST_PATH` is `off`.
    Anything but `on` or `off` is refused (ValueError), not guessed."""
    return _switch(HTTP_FAST_PATH_ENV, ("on", "off")) == "on"


def _switch(name: str, choices: tuple[str, str], value: str | None = None) -> str:
    """`value`, else `$name`, lower-cased; empty means the first choice. Anything not among
    `choices` is refused (ValueError), not guessed."""
    chosen = (value if value is not None else os.environ.get(name, "")).strip().lower() or choices[0]
    if chosen not in choices:
        raise ValueError(f"{name} is {' or '.join(choices)}, not {chosen!r}")
    return chosen


def http_front(
    server: RelayServer,
    *,
    path: str = "/mcp",
    host: str = "127.0.0.1",
    wrap: Any = None,
    json_response: bool = False,
    fast_path: bool | None = None,
) -> tuple[ASGIApp, HttpFastPath | None]:
    """The whole HTTP front as served: the SDK's app (`http_app`), the fast path in front of it
    (unless `fast_path` is False; None: `http_fast_path_enabled()`), and `wrap` (the
    authentication) around both. Returns the app and the fast path layer."""
    app: ASGIApp = http_app(
        server, path=path, host=host, checks_origin=wrap is not None, json_response=json_response
    )
    fast: HttpFastPath | None = None
    if fast_path if fast_path is not None else http_fast_path_enabled():
        fast = HttpFastPath(app, server.relay, server.session_manager, path=path)
        app = fast
    if wrap is not None:
        app = wrap(app)
    return app, fast


def loop_options(transport: str = "http") -> dict[str, Any]:
    """`backend_options` for `anyio.run` of a proxy on `transport`: uvloop for the HTTP front
    when it is installed (measured: less CPU and latency per call there; no gain on stdio)."""
    if transport == "http" and importlib.util.find_spec("uvloop") is not None:
        return {"use_uvloop": True}
    return {}


def uvicorn_config(app: ASGIApp, *, host: str, port: int) -> uvicorn.Config:
    """uvicorn for the HTTP front: httptools when installed (`http="auto"`), no access log
    (requests are audited by the proxy itself), no `Server` header."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="auto",
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="on",
    )


async def serve_http(
    spec: UpstreamSpec,
    gate: Gate,
    principal_for: PrincipalResolver,
    *,
    host: str = "127.0.0.1",
    port: int = 8808,
    path: str = "/mcp",
    wrap: Any = None,
    errlog: TextIO | None = None,
    ready: anyio.Event | None = None,
    on_connected: OnConnected | None = None,
    forward_upstream_logs: bool = True,
    responses: HttpResponses | None = None,
) -> None:
    """Serve many clients over Streamable HTTP until cancelled.

    `wrap` (an ASGI middleware factory, e.g. the bearer-token authentication) wraps the app and
    takes over the Host/Origin checks. `responses` (default: `http_responses()`, so `sse`
    unless `$PGWARDEN_HTTP_RESPONSES` says `json`) picks SSE streams or JSON bodies (`http_app`).
    The fast path runs unless `$PGWARDEN_HTTP_FAST_PATH` is `off` (`http_front`).
    """
    json_response = http_responses(responses) == "json"
    upstream, _relay, server = build(
        spec,
        gate,
        principal_for,
        transport="http",
        errlog=errlog,
        forward_upstream_logs=forward_upstream_logs,
    )
    app, _fast = http_front(server, path=path, host=host, wrap=wrap, json_response=json_response)
    web = uvicorn.Server(uvicorn_config(app, host=host, port=port))
    async with anyio.create_task_group() as tg:
        await _start_upstream(tg, upstream, on_connected)
        if ready is not None:
            tg.start_soon(_signal_started, web, ready)
        await web.serve()
        tg.cancel_scope.cancel()


async def _signal_started(web: uvicorn.Server, ready: anyio.Event) -> None:
    while not web.started:  # noqa: ASYNC110 - uvicorn offers no event for this
        await anyio.sleep(0.01)
    ready.set()
