"""Drive many concurrent MCP sessions against a proxy and account for every call.

Each call carries a unique marker (`SELECT <n> AS marker`) that its answer must echo, so a lost,
duplicated or crossed-over response is seen. Calls that fail are counted by kind, never retried.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from security_harness import RAW


@dataclass
class LoadStats:
    attempts: int = 0
    ok: int = 0
    refused: int = 0  # isError results (a clear error from the proxy or the upstream)
    rpc_errors: int = 0  # JSON-RPC errors (timeouts, upstream unavailable)
    mixed: int = 0  # an answer that does not echo its own marker
    sessions_failed: int = 0
    slowest_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def note(self, text: str) -> None:
        key = text[:120]
        self.errors[key] = self.errors.get(key, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "errors"} | {"errors": dict(self.errors)}


def marker_sql(n: int) -> str:
    return f"SELECT {n} AS marker"


async def call_marker(client: Client, n: int, stats: LoadStats,
                      sql: Callable[[int], str] = marker_sql) -> None:
    request = types.CallToolRequest(
        params=types.CallToolRequestParams(name="query", arguments={"sql": sql(n)})
    )
    stats.attempts += 1
    started = time.perf_counter()
    try:
        raw = await client.session.send_request(request, RAW)
    except MCPError as exc:
        stats.rpc_errors += 1
        stats.note(f"rpc {exc.error.code}: {exc.error.message}")
        return
    finally:
        stats.slowest_s = max(stats.slowest_s, time.perf_counter() - started)
    if raw.get("isError"):
        stats.refused += 1
        stats.note(" ".join(str(c.get("text", "")) for c in raw.get("content", [])))
        return
    rows = (raw.get("structuredContent") or {}).get("rows")
    if rows == [[n]]:
        stats.ok += 1
    else:
        stats.mixed += 1
        stats.note(f"marker {n} answered with {json.dumps(rows)[:60]}")


async def run_load(
    target: str | StdioServerParameters,
    *,
    sessions: int,
    seconds: float,
    stats: LoadStats | None = None,
    sql: Callable[[int], str] = marker_sql,
    read_timeout_s: float = 60.0,
) -> LoadStats:
    """`sessions` concurrent client sessions calling in a loop for `seconds`."""
    stats = stats or LoadStats()
    counter = itertools.count(1)
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        try:
            client = Client(target, mode="legacy", read_timeout_seconds=read_timeout_s)  # type: ignore[arg-type]
            async with client:
                while time.monotonic() < deadline:
                    await call_marker(client, next(counter), stats, sql)
        except Exception as exc:  # a session that could not be opened or broke: counted, not hidden
            while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            stats.sessions_failed += 1
            stats.note(f"session: {type(exc).__name__}: {exc}")

    async with anyio.create_task_group() as tg:
        for _ in range(sessions):
            tg.start_soon(worker)
    return stats


def audit_records(path: Path, method: str = "tools/call") -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("method") == method]
