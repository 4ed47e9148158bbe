"""A minimal MCP relay with no policy, written with the MCP SDK: the cost of a bare hop.

    python -m bench.plain_relay -- COMMAND ARGS...

Serves stdio and forwards `tools/list` and `tools/call` to one stdio upstream, as a
no-policy relay written in the obvious way would (`mcp-proxy` from PyPI bridges stdio and
HTTP but cannot relay stdio to stdio, so this stands in for it on the stdio path).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server import Server
from mcp.server.stdio import stdio_server


def build(upstream_command: list[str]) -> Server[Any]:
    @asynccontextmanager
    async def lifespan(_server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        params = StdioServerParameters(command=upstream_command[0], args=upstream_command[1:], env=None)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield {"upstream": session}

    def upstream(ctx: Any) -> ClientSession:
        session: ClientSession = ctx.lifespan_context["upstream"]
        return session

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return await upstream(ctx).list_tools()

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        request = types.CallToolRequest(
            params=types.CallToolRequestParams(name=params.name, arguments=params.arguments)
        )
        return await upstream(ctx).send_request(request, types.CallToolResult)

    return Server("bench-plain-relay", lifespan=lifespan, on_list_tools=list_tools, on_call_tool=call_tool)


async def serve(upstream_command: list[str]) -> None:
    server = build(upstream_command)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main(argv: list[str]) -> None:
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    if not command:
        raise SystemExit("usage: python -m bench.plain_relay -- COMMAND ARGS...")
    anyio.run(serve, command)


if __name__ == "__main__":
    main(sys.argv[1:])
