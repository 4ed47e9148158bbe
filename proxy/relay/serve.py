"""Running the proxy: one upstream, one gate, a stdio or Streamable HTTP front."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, TextIO

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.types import ASGIApp

from pgwarden.proxy.pipeline.gate import Gate
from pgwarden.proxy.relay.core import PrincipalResolver, Relay
from pgwarden.proxy.relay.fast import StdioFastPath
from pgwarden.proxy.relay.server import RelayServer
from pgwarden.proxy.relay.stdio_front import Emit, stdio_front
from pgwarden.proxy.relay.upstream import Upstream, UpstreamSpec

logger = logging.getLogger(__name__)


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
    server: RelayServer, *, path: str = "/mcp", host: str = "127.0.0.1", checks_origin: bool = False
) -> Starlette:
    """The Streamable HTTP front as an ASGI app (stateful sessions for the handshake era; the
    2026-07-28 per-request exchange is served on the same path).

    On loopback the SDK's own Host/Origin check guards against DNS rebinding, unless the app is
    wrapped by middleware that `checks_origin` itself (the authentication, configured with the
    deployment's allowed hosts and origins): two checks with different lists would refuse what
    the operator allowed.
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
    return server.streamable_http_app(streamable_http_path=path, host=host, transport_security=security)


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
) -> None:
    """Serve many clients over Streamable HTTP until cancelled.

    `wrap` (an ASGI middleware factory, e.g. the bearer-token authentication) wraps the app and
    takes over the Host/Origin checks.
    """
    upstream, _relay, server = build(
        spec,
        gate,
        principal_for,
        transport="http",
        errlog=errlog,
        forward_upstream_logs=forward_upstream_logs,
    )
    app: ASGIApp = http_app(server, path=path, host=host, checks_origin=wrap is not None)
    if wrap is not None:
        app = wrap(app)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    web = uvicorn.Server(config)
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
