"""Soak: many calls through one proxy session; RSS of the proxy and the server over time.

10,000 tools/call (1,000 with --quick) through `pgwarden proxy` (stdio, masked policy, audit
on disk) in front of pgwarden's server, cycling through distinct statements; RSS is sampled
every 1/20th of the run after a warm-up of 200 calls.

    python -m bench soak [--quick] [--calls N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bench import targets as T
from bench.client import find_process, open_session, rss_mib
from bench.database import BenchDatabase
from bench.stats import fmt, summary

STATEMENTS = (
    "SELECT id, name, category, price FROM products WHERE id = {n}",
    "SELECT status, count(*) FROM orders WHERE customer_id = {n} GROUP BY status",
    "SELECT c.country, count(*) FROM customers c WHERE c.id < {n} GROUP BY c.country",
    "SELECT o.id, o.total, p.card_number FROM orders o JOIN payments p ON p.order_id = o.id WHERE o.id = {n}",
)
WARM_UP = 200


async def _soak(target: T.Target, calls: int) -> dict[str, Any]:
    async with open_session(target) as session:
        proxy = session.process
        server = find_process("pgwarden server", proxy) if proxy is not None else None
        for i in range(WARM_UP):
            await session.call("query", {"sql": STATEMENTS[i % len(STATEMENTS)].format(n=1 + i % 400)})
        every = max(1, calls // 20)
        samples = [{"calls": 0, "proxy": rss_mib(proxy), "server": rss_mib(server)}]
        latencies: list[float] = []
        errors = 0
        started = time.perf_counter()
        for i in range(calls):
            sql = STATEMENTS[i % len(STATEMENTS)].format(n=1 + i % 400)
            elapsed, result = await session.call("query", {"sql": sql})
            latencies.append(elapsed * 1000)
            errors += bool(result.is_error)
            if (i + 1) % every == 0:
                samples.append({"calls": i + 1, "proxy": rss_mib(proxy), "server": rss_mib(server)})
        return {
            "calls": calls,
            "seconds": time.perf_counter() - started,
            "errors": errors,
            "latency_ms": summary(latencies),
            "rss_mib": samples,
        }


def run(db: BenchDatabase, workdir: Path, *, calls: int) -> dict[str, Any]:
    server = T.server_command(T.PGWARDEN_SERVER, db.reader_dsn)
    target = T.Target(
        "pgwarden proxy",
        T.PGWARDEN_SERVER,
        "stdio",
        tuple(
            T.proxy_command(
                server, policy="masked", catalog_dsn=db.admin_dsn, audit=workdir / "soak-audit.jsonl"
            )
        ),
        measured="pgwarden proxy",
    )
    return anyio.run(_soak, target, calls)


def growth(data: dict[str, Any], who: str) -> tuple[float | None, float | None]:
    samples = [s[who] for s in data["rss_mib"] if s[who] is not None]
    if not samples:
        return None, None
    return samples[0], samples[-1]


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "| process | RSS at start MiB | RSS at end MiB | growth MiB | calls | errors | median ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for who in ("proxy", "server"):
        start, end = growth(data, who)
        grew = end - start if start is not None and end is not None else None
        lines.append(
            f"| {who} | {fmt(start, 1)} | {fmt(end, 1)} | {fmt(grew, 1)} | {data['calls']:,} "
            f"| {data['errors']} | {fmt(data['latency_ms']['median'])} | {fmt(data['latency_ms']['p99'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    calls = (
        int(argv[argv.index("--calls") + 1]) if "--calls" in argv else (1000 if "--quick" in argv else 10_000)
    )
    db = BenchDatabase.start()
    with tempfile.TemporaryDirectory(prefix="pgwarden-bench-") as tmp:
        print(markdown(run(db, Path(tmp), calls=calls)))


if __name__ == "__main__":
    main(sys.argv[1:])
