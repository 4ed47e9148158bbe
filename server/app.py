"""The MCP server object: tools, resources and prompts wired to one `Database`.

Built on the SDK's low-level `Server`, which speaks both protocol generations (the
2025-11-25 initialize handshake and the stateless 2026-07-28 protocol) on stdio and
Streamable HTTP, and wraps each request in an OpenTelemetry span continued from `_meta`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from pgwarden import __version__
from pgwarden.server import prompts, resources, tools
from pgwarden.server.database import Database

logger = logging.getLogger(__name__)

SERVER_NAME = "pgwarden-server"

INSTRUCTIONS = """\
Read-only access to one PostgreSQL database.
Tools: list_tables, describe_table, query (one SELECT; rows capped; `truncated` tells when \
more exist), explain_query (plan without running).
Resources: postgres://<database>/<schema>/<table>/schema per table, postgres://<database>/schemas.
Every statement runs in a read-only transaction with a timeout and is rolled back; anything but \
a single plain SELECT is refused. Prefer aggregates in SQL over fetching many rows."""

_R = TypeVar("_R")


async def _guarded(what: str, work: Awaitable[_R]) -> _R:
    """Await `work`; let protocol errors through, turn anything else into a generic error."""
    try:
        return await work
    except MCPError:
        raise
    except Exception:
        logger.exception("%s failed", what)
        raise MCPError(code=types.INTERNAL_ERROR, message=f"internal error in {what}") from None


def build_server(db: Database) -> Server[Any]:
    """The MCP server for `db` (opened by the caller, which also closes it)."""
    tool_list = tools.tool_definitions(db.settings.max_rows)

    async def on_list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None,
                            ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list)

    async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams,
                           ) -> types.CallToolResult:
        return await tools.call_tool(db, params.name, params.arguments)

    async def on_list_resources(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None,
                                ) -> types.ListResourcesResult:
        cursor = params.cursor if params is not None else None
        return await _guarded("resources/list", resources.list_resources(db, cursor))

    async def on_list_resource_templates(ctx: ServerRequestContext[Any],
                                         params: types.PaginatedRequestParams | None,
                                         ) -> types.ListResourceTemplatesResult:
        return resources.list_templates(db)

    async def on_read_resource(ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams,
                               ) -> types.ReadResourceResult:
        return await _guarded("resources/read", resources.read_resource(db, str(params.uri)))

    async def on_list_prompts(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None,
                              ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=prompts.PROMPTS)

    async def on_get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams,
                            ) -> types.GetPromptResult:
        return await _guarded("prompts/get", prompts.get_prompt(db, params.name, params.arguments))

    def input_schema(name: str) -> dict[str, Any] | None:
        return next((dict(t.input_schema) for t in tool_list if t.name == name), None)

    return Server(
        SERVER_NAME,
        version=__version__,
        title="pgwarden PostgreSQL server",
        instructions=INSTRUCTIONS,
        get_tool_input_schema=input_schema,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
        on_list_resources=on_list_resources,
        on_list_resource_templates=on_list_resource_templates,
        on_read_resource=on_read_resource,
        on_list_prompts=on_list_prompts,
        on_get_prompt=on_get_prompt,
    )
