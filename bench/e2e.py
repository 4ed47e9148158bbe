"""End to end, side by side: the same tools/call sequence direct and through relays/proxies.

For each path (stdio or Streamable HTTP, in front of pgwarden's server or the reference
server-postgres) every target's session is opened at once, and calls are issued in small
interleaved batches (target A, B, C, A, B, C, ...), so machine noise hits every target alike.
The sequence of statements is the same for every target.

Workloads: `lookup` (one product by id: the hop dominates) and `analytics` (a typical
aggregate over orders: Postgres does real work) use a different literal on every call, so the
proxy's gate learns their shape on the warm-up's second call and serves every measured call
from the learned template (`coverage` checks that in-process, without timing); `new shape`
gives every call a column alias never sent before, so every call is a shape the gate has not
seen (the full guard path: its worst case). The target `pgwarden proxy, learned shapes off`
is the same proxy with `PGWARDEN_SHAPE_CACHE=off` in its environment; over HTTP,
`pgwarden proxy, JSON answers` is the proxy with `PGWARDEN_HTTP_RESPONSES=json` (one JSON body
per answer instead of an SSE stream; no progress or sampling during a call), compared with
`direct, JSON answers`: the server answering the same way.

Ratios are median(target) / median(direct). The "policy vs relay" ratio is
(proxy − direct) / (relay − direct) on the same path.

    python -m bench e2e [--quick] [--calls N]
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import psutil

from bench import targets as T
from bench.client import Session, cpu_seconds, open_session
from bench.database import BenchDatabase
from bench.stats import fmt, ratio, summary

WORKLOADS: dict[str, Callable[[int], str]] = {
    "lookup": lambda i: f"SELECT id, name, category, price FROM products WHERE id = {1 + i % 60}",
    "analytics": lambda i: (
        "SELECT status, count(*) AS orders, sum(total) AS revenue FROM orders "
        f"WHERE ordered_at >= '2024-{1 + i % 12:02d}-01' GROUP BY status "
        "ORDER BY revenue DESC"
    ),
    # A column alias is part of a statement's shape: every call is a shape never seen before.
    "new shape": lambda i: f"SELECT id AS c{i}, name, category, price FROM products WHERE id = {1 + i % 60}",
}
LEARNED_WORKLOADS = ("lookup", "analytics")  # the target rows; "new shape" is reported beside them
WARM_UP = 5  # calls of each workload per session before measuring (call indices WARM_UP_BASE + i)
QUICK_WARM_UP = 3  # still past the second call, where a shape is learned
WARM_UP_BASE = 10_000
DIRECT = "direct"
PROXY = "pgwarden proxy"
PROXY_TMPFS = "pgwarden proxy, audit on tmpfs"
PROXY_MASKED = "pgwarden proxy, masked policy"
PROXY_OFF = "pgwarden proxy, learned shapes off"
SHAPES_OFF_ENV = {"PGWARDEN_SHAPE_CACHE": "off"}
PROXY_JSON = "pgwarden proxy, JSON answers"
DIRECT_JSON = "direct, JSON answers"
JSON_ANSWERS_ENV = {"PGWARDEN_HTTP_RESPONSES": "json"}
PW_RELAY = "pgwarden relay, no policy"
BYTE_RELAY = "byte copy, no parsing"
ASYNCIO_RELAY = "asyncio relay, parse and route, no policy"
SDK_RELAY = "SDK relay, no policy"
MCP_PROXY = "mcp-proxy 0.13 (PyPI), no policy"


def _tmpfs() -> Path:
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="pgwarden-bench-", dir=shm if shm.is_dir() else None))


def build_targets(
    db: BenchDatabase,
    workdir: Path,
    *,
    include_reference: bool,
    include_mcp_proxy: bool,
) -> list[T.Target]:
    """Every target of the run, grouped by (transport, upstream) in the order they are reported."""
    out: list[T.Target] = []
    disk_audit = workdir / "audit"
    disk_audit.mkdir(parents=True, exist_ok=True)
    shm_audit = _tmpfs()
    upstreams = [T.PGWARDEN_SERVER] + ([T.REFERENCE] if include_reference else [])
    for up in upstreams:
        server = T.server_command(up, db.reader_dsn)
        tag = "pw" if up == T.PGWARDEN_SERVER else "ref"

        def proxy(
            policy: str, audit: Path, listen: str | None = None, server: list[str] = server
        ) -> tuple[str, ...]:
            return tuple(
                T.proxy_command(server, policy=policy, catalog_dsn=db.admin_dsn, audit=audit, listen=listen)
            )

        out.append(
            T.Target(
                DIRECT,
                up,
                "stdio",
                tuple(server),
                measured=server[1] if up == T.REFERENCE else "pgwarden server",
            )
        )
        out.append(
            T.Target(
                SDK_RELAY, up, "stdio", tuple(T.plain_relay_command(server)), measured="bench.plain_relay"
            )
        )
        if up == T.PGWARDEN_SERVER:
            for label, command, measured in (
                (BYTE_RELAY, T.byte_relay_command(server), "bench.byte_relay"),
                (ASYNCIO_RELAY, T.asyncio_relay_command(server), "bench.asyncio_relay"),
                (PW_RELAY, T.passthrough_command(server), "bench.passthrough_relay"),
            ):
                out.append(T.Target(label, up, "stdio", tuple(command), measured=measured))
        out.append(
            T.Target(
                PROXY,
                up,
                "stdio",
                proxy("simple", disk_audit / f"stdio-{tag}.jsonl"),
                measured="pgwarden proxy",
            )
        )
        if up == T.PGWARDEN_SERVER:
            out.append(
                T.Target(
                    PROXY_OFF,
                    up,
                    "stdio",
                    proxy("simple", disk_audit / "stdio-shapes-off.jsonl"),
                    measured="pgwarden proxy",
                    env=SHAPES_OFF_ENV,
                )
            )
            out.append(
                T.Target(
                    PROXY_TMPFS,
                    up,
                    "stdio",
                    proxy("simple", shm_audit / "stdio.jsonl"),
                    measured="pgwarden proxy",
                )
            )
            out.append(
                T.Target(
                    PROXY_MASKED,
                    up,
                    "stdio",
                    proxy("masked", disk_audit / "stdio-masked.jsonl"),
                    measured="pgwarden proxy",
                )
            )
        # Streamable HTTP front; the proxies and relays reach the server over stdio.
        if up == T.PGWARDEN_SERVER:
            for label, env in ((DIRECT, {}), (DIRECT_JSON, JSON_ANSWERS_ENV)):
                port = T.free_port()
                out.append(
                    T.Target(
                        label,
                        up,
                        "http",
                        (*server, "--transport", "http", "--host", "127.0.0.1", "--port", str(port)),
                        port=port,
                        env=dict(env),
                    )
                )
        if include_mcp_proxy:
            port = T.free_port()
            out.append(T.Target(MCP_PROXY, up, "http", tuple(T.mcp_proxy_command(server, port)), port=port))
        if up == T.PGWARDEN_SERVER:
            port = T.free_port()
            out.append(
                T.Target(
                    PW_RELAY,
                    up,
                    "http",
                    tuple(T.passthrough_command(server, listen=f"http://127.0.0.1:{port}/mcp")),
                    port=port,
                )
            )
        port = T.free_port()
        out.append(
            T.Target(
                PROXY,
                up,
                "http",
                proxy("simple", disk_audit / f"http-{tag}.jsonl", listen=f"http://127.0.0.1:{port}/mcp"),
                port=port,
            )
        )
        if up == T.PGWARDEN_SERVER:
            port = T.free_port()
            out.append(
                T.Target(
                    PROXY_JSON,
                    up,
                    "http",
                    proxy("simple", disk_audit / "http-json.jsonl", listen=f"http://127.0.0.1:{port}/mcp"),
                    port=port,
                    env=JSON_ANSWERS_ENV,
                )
            )
    return out


async def _interleaved(
    sessions: list[Session], calls: int, batch: int, warm_up: int = WARM_UP
) -> dict[str, dict[str, Any]]:
    """Per target and workload: latencies (ms), errors, and the measured process's CPU per call."""
    samples: dict[str, dict[str, list[float]]] = {s.target.key: {w: [] for w in WORKLOADS} for s in sessions}
    errors: dict[str, int] = {s.target.key: 0 for s in sessions}
    for session in sessions:  # warm up: imports, pools, the shapes of the learned workloads
        for make in WORKLOADS.values():
            for i in range(warm_up):
                await session.call("query", {"sql": make(WARM_UP_BASE + i)})
    cpu_start = {s.target.key: cpu_seconds(s.process) for s in sessions}
    # CPU of the measured process per workload: read around each workload's run of calls (the
    # process is idle between them, while the other targets take their turn).
    cpu_used: dict[str, dict[str, float | None]] = {
        s.target.key: dict.fromkeys(WORKLOADS, 0.0) for s in sessions
    }
    done = 0
    rotation = 0
    while done < calls:
        n = min(batch, calls - done)
        order = sessions[rotation % len(sessions) :] + sessions[: rotation % len(sessions)]
        rotation += 1
        for session in order:
            key = session.target.key
            for workload, make in WORKLOADS.items():
                before = cpu_seconds(session.process)
                for i in range(done, done + n):
                    elapsed, result = await session.call("query", {"sql": make(i)})
                    samples[key][workload].append(elapsed * 1000)
                    if result.is_error:
                        errors[key] += 1
                after = cpu_seconds(session.process)
                total = cpu_used[key][workload]
                cpu_used[key][workload] = (
                    total + (after - before)
                    if total is not None and before is not None and after is not None
                    else None
                )
        done += n
    out: dict[str, dict[str, Any]] = {}
    for session in sessions:
        key = session.target.key
        used = cpu_seconds(session.process)
        start = cpu_start[key]
        cpu_ms = (
            (used - start) * 1000 / (calls * len(WORKLOADS))
            if used is not None and start is not None
            else None
        )
        per_workload = {}
        for w, v in samples[key].items():
            spent = cpu_used[key][w]
            per_workload[w] = {
                **summary(v),
                "cpu_ms_per_call": spent * 1000 / calls if spent is not None else None,
            }
        out[key] = {
            "label": session.target.label,
            "upstream": session.target.upstream,
            "transport": session.target.transport,
            "errors": errors[key],
            "cpu_ms_per_call": cpu_ms,
            **per_workload,
        }
    return out


async def run_group(
    group: list[T.Target], calls: int, batch: int, warm_up: int = WARM_UP
) -> dict[str, dict[str, Any]]:
    """Start and open every target of one path at once, then run the interleaved calls."""
    http = [t for t in group if t.transport == "http"]
    with T.launched_all(http) as procs:
        processes = {t.key: psutil.Process(p.pid) for t, p in zip(http, procs, strict=True)}
        sessions: dict[str, Session] = {}
        all_open, finished = anyio.Event(), anyio.Event()
        measured: dict[str, dict[str, Any]] = {}

        async def hold(target: T.Target) -> None:
            async with open_session(target) as session:
                if target.key in processes:
                    session.process = processes[target.key]
                sessions[target.key] = session
                if len(sessions) == len(group):
                    all_open.set()
                await finished.wait()

        async with anyio.create_task_group() as tg:
            for target in group:
                tg.start_soon(hold, target)
            await all_open.wait()
            measured = await _interleaved([sessions[t.key] for t in group], calls, batch, warm_up)
            finished.set()
        return measured


def run(
    db: BenchDatabase, workdir: Path, *, calls: int, batch: int = 10, warm_up: int = WARM_UP
) -> dict[str, Any]:
    include_reference = T.has_reference_server()
    include_mcp_proxy = T.has_mcp_proxy()
    all_targets = build_targets(
        db, workdir, include_reference=include_reference, include_mcp_proxy=include_mcp_proxy
    )
    groups: dict[tuple[str, str], list[T.Target]] = {}
    for target in all_targets:
        groups.setdefault((target.transport, target.upstream), []).append(target)
    results: dict[str, Any] = {
        "calls": calls,
        "workloads": {w: make(0) for w, make in WORKLOADS.items()},
        "warm_up": warm_up,
        "reference_server": include_reference,
        "mcp_proxy": include_mcp_proxy,
        "targets": {},
    }
    for group in groups.values():
        results["targets"].update(anyio.run(run_group, group, calls, batch, warm_up))
    results["coverage"] = coverage(calls, warm_up)
    return results


def sequence(workload: str, calls: int, warm_up: int = WARM_UP) -> list[str]:
    """The statements one session sends for `workload`: the warm-up's, then the measured calls'."""
    make = WORKLOADS[workload]
    return [make(WARM_UP_BASE + i) for i in range(warm_up)] + [make(i) for i in range(calls)]


def coverage(calls: int, warm_up: int = WARM_UP) -> dict[str, dict[str, Any]]:
    """Per workload: how many measured calls a gate with the proxy's policy (`simple`) served
    from a learned shape, the same statements sent in the same order in this process (evidence
    that does not depend on time; the proxy runs the same gate)."""
    from bench.pipeline_bench import shape_coverage

    out = {}
    for workload in WORKLOADS:
        found = shape_coverage(sequence(workload, calls, warm_up))
        measured = found["served"][warm_up:]
        out[workload] = {
            "calls": len(measured),
            "on_learned_shape": sum(measured),
            "allowed": found["allowed"],
            "first_hit": found["first_hit"],
        }
    return out


def coverage_text(data: dict[str, Any]) -> str:
    found = data.get("coverage")
    if not found:
        return ""
    parts = [
        f"`{w}` {c['on_learned_shape']} / {c['calls']}"
        + (
            f" (from call {c['first_hit'] + 1} of the session, warm-up included)"
            if c["first_hit"] is not None
            else ""
        )
        for w, c in found.items()
    ]
    return (
        "Measured calls served from a learned shape, checked by sending each workload's statements in the "
        "same order to an in-process gate with the proxy's policy (no timing involved): "
        + "; ".join(parts)
        + "."
    )


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (path, target, workload) with medians, p99 and the ratios against direct/relays."""
    targets = data["targets"]
    out = []
    for key, r in targets.items():
        transport, upstream, label = key.split("|")
        # JSON answers are compared with the server answering the same way, when it was measured.
        json_direct = f"{transport}|{upstream}|{DIRECT_JSON}" in targets
        baseline = DIRECT_JSON if label == PROXY_JSON and json_direct else DIRECT
        direct = targets.get(f"{transport}|{upstream}|{baseline}")
        if direct is None:
            direct = targets.get(f"stdio|{upstream}|{DIRECT}")
        direct_note = "" if f"{transport}|{upstream}|{baseline}" in targets else " (vs stdio direct)"
        if baseline == DIRECT_JSON:
            direct_note = " (vs direct, JSON answers)"
        relays = [targets.get(f"{transport}|{upstream}|{name}") for name in (SDK_RELAY, MCP_PROXY, PW_RELAY)]
        for workload in WORKLOADS:
            med, p99 = r[workload]["median"], r[workload]["p99"]
            row: dict[str, Any] = {
                "transport": transport,
                "upstream": upstream,
                "label": label,
                "workload": workload,
                "median": med,
                "p99": p99,
                "cpu_ms_per_call": r[workload].get("cpu_ms_per_call", r.get("cpu_ms_per_call")),
                "errors": r["errors"],
                "direct_note": direct_note,
            }
            if direct is not None and label not in (DIRECT, DIRECT_JSON):
                base = direct[workload]["median"]
                row["ratio"] = ratio(med, base)
                row["added_ms"] = med - base
                if label in (PROXY, PROXY_TMPFS, PROXY_OFF, PROXY_JSON):
                    for relay in relays:
                        if relay is not None:
                            added = relay[workload]["median"] - base
                            row[f"vs {relay['label']}"] = ratio(med - base, added)
            out.append(row)
    return out


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "| path | upstream | target | workload | median ms | p99 ms | added ms (median) | ratio to direct "
        "| middle process CPU ms/call |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows(data):
        cpu = row["cpu_ms_per_call"]
        lines.append(
            f"| {row['transport']} | {row['upstream']} | {row['label']} | {row['workload']} "
            f"| {fmt(row['median'])} | {fmt(row['p99'])} | {fmt(row.get('added_ms'))}{row['direct_note']} "
            f"| {fmt(row.get('ratio'))} "
            f"| {fmt(cpu) if row['label'] not in (DIRECT, DIRECT_JSON) else '(server) ' + fmt(cpu)} |"
        )
    cover = coverage_text(data)
    if cover:
        lines.append("\n" + cover)
    errors = {k: v["errors"] for k, v in data["targets"].items() if v["errors"]}
    if errors:
        lines.append(f"\nCalls that returned isError: {errors}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    calls = int(argv[argv.index("--calls") + 1]) if "--calls" in argv else (30 if "--quick" in argv else 200)
    db = BenchDatabase.start()
    with tempfile.TemporaryDirectory(prefix="pgwarden-bench-") as tmp:
        print(markdown(run(db, Path(tmp), calls=calls)))


if __name__ == "__main__":
    main(sys.argv[1:])
