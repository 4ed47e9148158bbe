"""Throughput and concurrency over Streamable HTTP: N concurrent clients, direct vs proxy.

Each client is its own MCP session calling `query` in a loop for a fixed time. Reported per
level: calls/s, median and p99 latency, and the CPU time the proxy process (or, direct, the
server process) spent per call, read from psutil (user + system). The clients, the proxy,
the server and Postgres share the same 2 cores, so the client side is part of the load.

    python -m bench throughput [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import psutil

from bench import targets as T
from bench.client import cpu_seconds, open_session
from bench.database import BenchDatabase
from bench.stats import fmt, summary

LEVELS = (1, 8, 32, 128)
SQL = "SELECT id, name, category, price FROM products WHERE id = {n}"


async def _level(target: T.Target, process: psutil.Process, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    async with anyio.create_task_group() as tg:
        sessions = []
        ready = anyio.Event()
        stop_at = [0.0]
        counts = {"started": 0}

        async def client(index: int) -> None:
            nonlocal errors
            async with open_session(target, http_timeout=120) as session:
                sessions.append(session)
                await session.call("query", {"sql": SQL.format(n=1 + index % 60)})  # warm
                counts["started"] += 1
                if counts["started"] == clients:
                    ready.set()
                await ready.wait()
                i = index
                while time.perf_counter() < stop_at[0]:
                    i += clients
                    elapsed, result = await session.call("query", {"sql": SQL.format(n=1 + i % 60)})
                    latencies.append(elapsed * 1000)
                    errors += bool(result.is_error)

        stop_at[0] = float("inf")
        for index in range(clients):
            tg.start_soon(client, index)
        await ready.wait()
        cpu0, t0 = cpu_seconds(process), time.perf_counter()
        stop_at[0] = t0 + seconds
    wall = time.perf_counter() - t0
    cpu1 = cpu_seconds(process)
    calls = len(latencies)
    return {
        "clients": clients,
        "calls": calls,
        "errors": errors,
        "seconds": wall,
        "calls_per_s": calls / wall if wall else 0.0,
        "cpu_ms_per_call": (cpu1 - cpu0) * 1000 / calls
        if calls and cpu0 is not None and cpu1 is not None
        else None,
        "latency_ms": summary(latencies),
    }


def run(
    db: BenchDatabase, workdir: Path, *, seconds: float, levels: tuple[int, ...] = LEVELS
) -> dict[str, Any]:
    server = T.server_command(T.PGWARDEN_SERVER, db.reader_dsn)
    port_direct, port_proxy = T.free_port(), T.free_port()
    targets = [
        T.Target(
            "direct",
            T.PGWARDEN_SERVER,
            "http",
            (*server, "--transport", "http", "--host", "127.0.0.1", "--port", str(port_direct)),
            port=port_direct,
        ),
        T.Target(
            "pgwarden proxy",
            T.PGWARDEN_SERVER,
            "http",
            tuple(
                T.proxy_command(
                    server,
                    policy="simple",
                    catalog_dsn=db.admin_dsn,
                    audit=workdir / "throughput-audit.jsonl",
                    listen=f"http://127.0.0.1:{port_proxy}/mcp",
                )
            ),
            port=port_proxy,
        ),
    ]
    out: dict[str, Any] = {
        "seconds": seconds,
        "levels": list(levels),
        "sql": SQL.format(n="<1..60>"),
        "results": {},
    }
    for target in targets:
        with T.launched(target) as proc:
            process = psutil.Process(proc.pid)
            rows = []
            for clients in levels:
                rows.append(anyio.run(_level, target, process, clients, seconds))
            out["results"][target.label] = rows
    return out


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "| clients | target | calls/s | median ms | p99 ms | CPU ms per call (proxy; direct: server) "
        "| errors |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    results = data["results"]
    for i, clients in enumerate(data["levels"]):
        for label, rows in results.items():
            r = rows[i]
            lines.append(
                f"| {clients} | {label} | {fmt(r['calls_per_s'], 0)} | {fmt(r['latency_ms']['median'])} "
                f"| {fmt(r['latency_ms']['p99'])} | {fmt(r['cpu_ms_per_call'])} | {r['errors']} |"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    seconds = (
        float(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else (1.5 if "--quick" in argv else 6)
    )
    db = BenchDatabase.start()
    with tempfile.TemporaryDirectory(prefix="pgwarden-bench-") as tmp:
        print(markdown(run(db, Path(tmp), seconds=seconds)))


if __name__ == "__main__":
    main(sys.argv[1:])
