"""A small upstream MCP server for the relay tests (run as a script, stdio or HTTP).

Tools: `echo(text)`, `slow(steps, delay)` (reports progress each step), `sleep(seconds, marker)`
(writes `marker` when it is cancelled, `marker.done` when it finishes), `crash()` (the process
exits at once) and `ask()` (asks the client to sample a message: a server-to-client request).
`--hang-after N` makes every call after the N-th never answer.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import SamplingMessage, TextContent

parser = argparse.ArgumentParser()
parser.add_argument("--http")
parser.add_argument("--hang-after", type=int, default=-1)
args = parser.parse_args()

server = MCPServer("relay-test-upstream")
calls = 0


async def _maybe_hang() -> None:
    global calls
    calls += 1
    if 0 <= args.hang_after < calls:
        await anyio.sleep_forever()


@server.tool()
async def echo(text: str) -> str:
    """Return the text."""
    await _maybe_hang()
    return text


@server.tool()
async def slow(steps: int, delay: float, ctx: Context) -> str:
    """Report progress `steps` times, `delay` seconds apart."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step}")
        await anyio.sleep(delay)
    return f"done after {steps} steps"


@server.tool()
async def sleep(seconds: float, marker: str) -> str:
    """Sleep; write `marker` if cancelled, `marker.done` if not."""
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        Path(marker).write_text("cancelled")  # noqa: ASYNC240 - no await possible while cancelled
        raise
    Path(marker + ".done").write_text("done")  # noqa: ASYNC240
    return "slept"


@server.tool()
async def crash() -> str:
    """Exit the process immediately."""
    os._exit(3)


@server.tool()
async def ask(ctx: Context) -> str:
    """Ask the client's model for a message (sampling)."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text="say hi"))],
        max_tokens=10,
    )
    content = result.content
    return content.text if isinstance(content, TextContent) else "?"


if __name__ == "__main__":
    if args.http:
        host, port = args.http.rsplit(":", 1)
        server.run("streamable-http", host=host, port=int(port))
    else:
        server.run()
