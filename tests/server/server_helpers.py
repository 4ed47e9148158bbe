"""Helpers for the server's integration tests: real server processes, real MCP clients."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import psycopg
from listening_process import ListeningProcess
from mcp import Client, StdioServerParameters

T = TypeVar("T")

LEGACY = "legacy"          # initialize handshake; negotiates 2025-11-25
MODERN = "2026-07-28"      # stateless protocol, no handshake
SERVER_MODULE = ["-m", "pgwarden.server"]

# The attack tests use this timeout so that pg_sleep past it returns quickly.
ATTACK_TIMEOUT_MS = 1000


def server_env(dsn: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server process: ours minus PGWARDEN_* and OTEL_*, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGWARDEN_", "OTEL_"))}
    if dsn is not None:
        env["PGWARDEN_DSN"] = dsn
    env.update(extra or {})
    return env


def stdio_params(dsn: str | None, *args: str, extra_env: dict[str, str] | None = None,
                 command: str | None = None) -> StdioServerParameters:
    if command is None:
        return StdioServerParameters(command=sys.executable, args=[*SERVER_MODULE, *args],
                                     env=server_env(dsn, extra_env))
    return StdioServerParameters(command=command, args=list(args), env=server_env(dsn, extra_env))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpServer(ListeningProcess):
    """`python -m pgwarden.server --transport http` on a free loopback port."""

    def __init__(self, dsn: str, *args: str, log_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        port = free_port()
        super().__init__(
            [sys.executable, *SERVER_MODULE, "--transport", "http", "--port", str(port), *args],
            env=server_env(dsn, extra_env), log_path=log_dir / f"server-{port}.log", port=port,
            name="server", ready_timeout=30.0,
        )

    def peak_rss_kb(self) -> int:
        """The process's peak resident memory so far (VmHWM), in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(fn)


def session(target: str | StdioServerParameters, mode: str = LEGACY) -> Client:
    return Client(target, mode=mode, read_timeout_seconds=60)


def call_tool(target: str | StdioServerParameters, name: str, arguments: dict[str, Any],
              mode: str = LEGACY) -> Any:
    """One tools/call in a fresh session; returns the CallToolResult."""
    async def go() -> Any:
        async with session(target, mode) as client:
            return await client.call_tool(name, arguments)
    return run(go)


def text_of(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def query(target: str | StdioServerParameters, sql: str, **extra: Any) -> Any:
    return call_tool(target, "query", {"sql": sql, **extra})


def fingerprint(admin_dsn: str) -> dict[str, Any]:
    """What an attack must not change: demo table contents, relations, roles, large objects."""
    tables = ["public.secrets", "public.customers", "public.orders", "public.tenants", "hr.salaries"]
    out: dict[str, Any] = {}
    with psycopg.connect(admin_dsn) as conn:
        for table in tables:
            row = conn.execute(
                "SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) "
                f"FROM {table} t"
            ).fetchone()
            out[table] = row
        out["relations"] = conn.execute(
            "SELECT string_agg(c.oid::regclass::text, ',' ORDER BY c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', "
            "'information_schema', 'pg_toast')").fetchone()
        out["large_objects"] = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
        out["roles"] = conn.execute(
            "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles").fetchone()
    return out


def parse_console_spans(text: str) -> list[dict[str, Any]]:
    """Spans the OpenTelemetry console exporter wrote (concatenated JSON objects) among other lines."""
    decoder = json.JSONDecoder()
    spans, index = [], 0
    while True:
        start = text.find("{", index)
        if start < 0:
            return spans
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        if isinstance(obj, dict) and "context" in obj and "name" in obj:
            spans.append(obj)
        index = end
