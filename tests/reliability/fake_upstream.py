"""A Postgres-MCP-shaped upstream whose `query` tool misbehaves on request, for fault tests.

The proxy forwards the rewritten SQL; its text decides the behaviour: a string literal `'hang'`
never answers, `'slow'` answers after a second, anything else echoes the statement as one row.
Run: python fake_upstream.py (stdio).
"""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("pgwarden")  # named like pgwarden's server, so the proxy uses its tool map


@server.tool()
async def query(sql: str) -> str:
    """Echo the statement (or hang, or be slow)."""
    if "'hang'" in sql:
        await anyio.sleep_forever()
    if "'slow'" in sql:
        await anyio.sleep(1.0)
    return sql


if __name__ == "__main__":
    server.run("stdio")
