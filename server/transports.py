"""Serving the MCP server over stdio or Streamable HTTP (uvicorn on loopback by default)."""

from __future__ import annotations

import sys
from typing import Any

from mcp.server import Server
from mcp.server.stdio import stdio_server

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
HTTP_PATH = "/mcp"


async def serve_stdio(server: Server[Any]) -> None:
    """Serve one client on this process's stdin/stdout until it closes stdin."""
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def serve_http(server: Server[Any], host: str, port: int, *, json_response: bool = False) -> None:
    """Serve Streamable HTTP at `http://host:port/mcp` until interrupted.

    `json_response` answers each request POST with one JSON body instead of an SSE stream
    (clients keep their connection; this server sends nothing during a call that needs a stream).

    On a loopback host the SDK's DNS-rebinding protection is on (Host and Origin must be
    loopback). The endpoint has no authentication of its own: bind it to loopback, or put the
    pgwarden proxy (which authenticates callers) in front of it. uvicorn parses HTTP with
    httptools when it is installed (the `fast` extra), else h11; no access log is written.
    """
    import uvicorn

    app = server.streamable_http_app(streamable_http_path=HTTP_PATH, host=host, json_response=json_response)
    config = uvicorn.Config(app, host=host, port=port, http="auto", log_level="warning", lifespan="on",
                            access_log=False, server_header=False)
    display = f"[{host}]" if ":" in host else host
    url = f"http://{display}:{port}{HTTP_PATH}"
    print(f"pgwarden server: Streamable HTTP on {url}", file=sys.stderr, flush=True)
    await uvicorn.Server(config).serve()
