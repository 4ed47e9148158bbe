"""MCP client sessions for the benchmarks, and process probes (CPU, RSS).

Each session times one `tools/call` from sending the request to holding the parsed result.
Results are parsed into `CallToolResult` but not validated against an output schema, so the
client does the same work whatever it talks to.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import mcp_types as types
import psutil
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from bench.targets import Target, child_env


@dataclass
class Session:
    target: Target
    mcp: ClientSession
    process: psutil.Process | None  # the measured process (proxy/relay/server), when found

    async def call(self, tool: str, arguments: dict[str, Any]) -> tuple[float, types.CallToolResult]:
        request = types.CallToolRequest(params=types.CallToolRequestParams(name=tool, arguments=arguments))
        started = time.perf_counter()
        result = await self.mcp.send_request(request, types.CallToolResult)
        return time.perf_counter() - started, result


def find_process(marker: str | None, root: psutil.Process | None = None) -> psutil.Process | None:
    """The newest descendant of `root` (this process by default) whose command line holds `marker`."""
    if marker is None:
        return None
    root = root or psutil.Process()
    found = None
    for child in root.children(recursive=True):
        try:
            if marker in " ".join(child.cmdline()) and (
                found is None or child.create_time() >= found.create_time()
            ):
                found = child
        except psutil.Error:
            continue
    return found


def own_child(command: tuple[str, ...], root: psutil.Process | None = None) -> psutil.Process | None:
    """The direct child of `root` (this process by default) running exactly `command` (a script
    started through its interpreter shows as `python3 <script> ARGS...`)."""
    root = root or psutil.Process()
    for child in root.children(recursive=False):
        try:
            argv = tuple(child.cmdline())
        except psutil.Error:
            continue
        if argv == tuple(command) or (argv[-len(command):] == tuple(command)):
            return child
    return None


@asynccontextmanager
async def open_session(
    target: Target, *, http_timeout: float = 60.0, root: psutil.Process | None = None
) -> AsyncIterator[Session]:
    """An initialised MCP session with `target` (spawned for stdio; by URL for HTTP)."""
    async with AsyncExitStack() as stack:
        if target.transport == "stdio":
            params = StdioServerParameters(
                command=target.command[0], args=list(target.command[1:]), env={**child_env(), **target.env}
            )
            read, write = await stack.enter_async_context(stdio_client(params))
        else:
            http = await stack.enter_async_context(httpx2.AsyncClient(timeout=httpx2.Timeout(http_timeout)))
            read, write = await stack.enter_async_context(
                streamable_http_client(target.url, http_client=http)
            )
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        process = find_process(target.measured, root)
        if target.transport == "stdio" and target.measured is not None:
            # the process this session spawned: our direct child running exactly its command
            process = own_child(target.command, root) or process
        yield Session(target, session, process)


def rss_mib(process: psutil.Process | None) -> float | None:
    if process is None:
        return None
    try:
        return float(process.memory_info().rss) / 2**20
    except psutil.Error:
        return None


def peak_rss_mib(process: psutil.Process | None) -> float | None:
    """The process's peak resident set (VmHWM) in MiB."""
    if process is None:
        return None
    try:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(process: psutil.Process | None) -> float | None:
    if process is None:
        return None
    try:
        times = process.cpu_times()
        return float(times.user + times.system)
    except psutil.Error:
        return None
