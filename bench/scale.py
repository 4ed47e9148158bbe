"""Scale curves: policy size, catalog size, result size.

- rules: `PolicySet.decide` for 10 → 1,000 rules (indexed by tool and table, and the
  unindexed worst case where every rule must be evaluated), with the policy's load time;
- catalog: the whole gate's cost per call with 10 → 10,000 tables in the catalog
  (`Catalog.from_mapping`), and the time `Catalog.from_dsn(...).refresh()` takes to introspect a
  scratch database holding that many tables (created here, dropped afterwards);
- result size: a 1,000,000-row table queried through the proxy with a row cap of 1,000:
  RSS and peak RSS of the proxy and of the server, against the same query on a 1,000-row table.

    python -m bench scale [--quick]
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import psycopg

from bench import targets as T
from bench.client import find_process, open_session, peak_rss_mib, rss_mib
from bench.database import BenchDatabase, grant_reader, reader_of, scratch_database
from bench.pipeline_bench import CATALOG, POLICIES, PRINCIPAL, one_call, scratch_dir
from bench.stats import fmt, summary

# -- rules ----------------------------------------------------------------------------------------


def rules_curve(sizes: tuple[int, ...], calls: int) -> list[dict[str, Any]]:
    from bench.policy_bench import PRINCIPAL as P_PRINCIPAL
    from bench.policy_bench import REQUEST, STATEMENT, indexed_policy, unindexed_policy
    from pgwarden.proxy.policy import PolicySet, load_policy_texts

    def timed(fn: Any, n: int) -> dict[str, Any]:
        for _ in range(min(100, n)):
            fn()
        samples = []
        for _ in range(n):
            start = time.perf_counter_ns()
            fn()
            samples.append((time.perf_counter_ns() - start) / 1000)
        return summary(samples)

    def fresh(n: int) -> Any:
        """Each call with its own principal and analysis objects: the engine reuses a decision
        only for the same objects (a learned statement shape), so this is the evaluation cost."""
        pairs = iter([(PolicySet.prepare_principal(P_PRINCIPAL), dataclasses.replace(STATEMENT))
                      for _ in range(n + min(100, n))])
        return lambda: next(pairs)

    def _with_request(pair: Any) -> tuple[Any, Any, Any]:
        return pair[0], REQUEST, pair[1]

    out = []
    prepared = PolicySet.prepare_principal(P_PRINCIPAL)
    for n in sizes:
        started = time.perf_counter()
        policy = load_policy_texts([(f"bench-{n}.yaml", indexed_policy(n))])
        load_ms = (time.perf_counter() - started) * 1000
        decision = policy.decide(prepared, REQUEST, STATEMENT)
        assert decision.allowed, decision
        pairs = fresh(calls)
        indexed = timed(lambda p=policy, pairs=pairs: p.decide(*_with_request(pairs())), calls)
        reused = timed(lambda p=policy: p.decide(prepared, REQUEST, STATEMENT), calls)
        started = time.perf_counter()
        worst = load_policy_texts([(f"unindexed-{n}.yaml", unindexed_policy(n))])
        worst_load_ms = (time.perf_counter() - started) * 1000
        worst_calls = max(50, calls // max(1, n // 10))
        worst_pairs = fresh(worst_calls)
        unindexed = timed(lambda p=worst, pairs=worst_pairs: p.decide(pairs()[0], REQUEST, None), worst_calls)
        out.append(
            {
                "rules": n,
                "load_ms": load_ms,
                "decide_us": indexed,
                "reused_decide_us": reused,
                "unindexed_load_ms": worst_load_ms,
                "unindexed_decide_us": unindexed,
            }
        )
    return out


# -- catalog --------------------------------------------------------------------------------------


def _synthetic_catalog(tables: int) -> dict[str, tuple[str, ...]]:
    mapping: dict[str, tuple[str, ...]] = {
        f"public.t{i:05d}": ("id", "tenant_id", "name", "email", "amount", "created_at")
        for i in range(tables)
    }
    mapping.update(CATALOG)
    return mapping


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def catalog_per_call(sizes: tuple[int, ...], rounds: int) -> list[dict[str, Any]]:
    """Whole-gate CPU per call (masked policy, the analytics corpus) with N extra tables."""
    from bench.guard_bench import _corpus
    from pgwarden.proxy.audit.log import AuditLog
    from pgwarden.proxy.auth import principal_from_mapping
    from pgwarden.proxy.guard.catalog import Catalog
    from pgwarden.proxy.pipeline.guarded import GuardedGate
    from pgwarden.proxy.policy import load_policy
    from pgwarden.proxy.telemetry import Telemetry
    from pgwarden.proxy.telemetry.config import TelemetryConfig
    from pgwarden.proxy.toolmaps.presets import PRESETS

    corpus = _corpus()[:20]
    principal = principal_from_mapping(PRINCIPAL)
    directory = scratch_dir()
    out = []
    for n in sizes:
        started = time.perf_counter()
        catalog = Catalog.from_mapping(_synthetic_catalog(n))
        build_ms = (time.perf_counter() - started) * 1000
        policy = load_policy([POLICIES / "masked.yaml"], catalog=catalog)
        audit = AuditLog(directory / f"catalog-{n}.jsonl", strict=True)
        telemetry = Telemetry.from_config(TelemetryConfig())

        def fresh_gate(
            policy: Any = policy, catalog: Catalog = catalog, telemetry: Any = telemetry, audit: Any = audit
        ) -> GuardedGate:
            # a new gate: every statement is a new shape to it, as in section 1's "new shape"
            return GuardedGate(
                _constant(policy),
                tool_map=PRESETS["pgwarden"],
                catalog=catalog,
                telemetry=telemetry,
                audit=audit,
            )

        for i, sql in enumerate(corpus):
            one_call(fresh_gate(), principal, sql, i)
        cpu = []
        for r in range(rounds):
            gate = fresh_gate()
            for i, sql in enumerate(corpus):
                start = time.thread_time()
                one_call(gate, principal, sql, r * 1000 + i)
                cpu.append((time.thread_time() - start) * 1e6)
        audit.close()
        out.append({"tables": n, "mapping_build_ms": build_ms, "cpu_us": summary(cpu)})
    return out


def catalog_load(db: BenchDatabase, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """`Catalog.from_dsn(dsn).refresh()` against a scratch database with N tables."""
    from pgwarden.proxy.guard.catalog import Catalog

    out = []
    with scratch_database(db, "catalog") as dsn:
        created = 0
        for n in sizes:
            started = time.perf_counter()
            with psycopg.connect(dsn) as conn:
                for i in range(created, n):
                    conn.execute(
                        f"CREATE TABLE public.t{i:05d} (id integer PRIMARY KEY, tenant_id integer, "
                        "name text, email text, amount numeric(12, 2), created_at timestamptz)"
                    )
                    if i % 500 == 499:  # one transaction cannot lock 10,000 new tables
                        conn.commit()
                conn.commit()
            create_s = time.perf_counter() - started
            created = n
            samples = []
            for _ in range(3):
                started = time.perf_counter()
                catalog = Catalog.from_dsn(dsn)
                catalog.refresh()
                samples.append((time.perf_counter() - started) * 1000)
            assert catalog.knows(f"public.t{n - 1:05d}")
            out.append({"tables": n, "load_ms": statistics.median(samples), "create_s": create_s})
    return out


# -- result size ----------------------------------------------------------------------------------


async def _memory_run(target: T.Target, sql: str, calls: int) -> dict[str, Any]:
    async with open_session(target) as session:
        proxy = session.process
        server = find_process("pgwarden server", proxy) if proxy is not None else None
        elapsed, result = await session.call("query", {"sql": sql})
        before = {"proxy": rss_mib(proxy), "server": rss_mib(server)}
        latencies = [elapsed * 1000]
        for _ in range(calls):
            elapsed, result = await session.call("query", {"sql": sql})
            latencies.append(elapsed * 1000)
        text = str(getattr(result.content[0], "text", "")) if result.content else ""
        return {
            "rss_before_mib": before,
            "rss_after_mib": {"proxy": rss_mib(proxy), "server": rss_mib(server)},
            "peak_mib": {"proxy": peak_rss_mib(proxy), "server": peak_rss_mib(server)},
            "latency_ms": summary(latencies),
            "is_error": bool(result.is_error),
            "rows_returned": (result.structured_content or {}).get("row_count"),
            "truncation_noted": "truncat" in text.lower() or "cut" in text.lower(),
        }


def result_size(db: BenchDatabase, workdir: Path, rows: int, calls: int) -> dict[str, Any]:
    with scratch_database(db, "result") as dsn:
        started = time.perf_counter()
        with psycopg.connect(dsn) as conn:
            conn.execute(
                f"CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS label, g % 97 AS bucket, "
                f"now() - make_interval(secs => g) AS at FROM generate_series(1, {rows}) AS g"
            )
            conn.execute("CREATE TABLE public.small AS SELECT * FROM public.big WHERE id <= 1000")
            conn.commit()
        grant_reader(dsn)
        create_s = time.perf_counter() - started
        server = T.server_command(T.PGWARDEN_SERVER, reader_of(dsn))
        out: dict[str, Any] = {"rows": rows, "create_s": create_s, "cap": 1000, "calls": calls}
        for table in ("small", "big"):
            target = T.Target(
                "pgwarden proxy",
                T.PGWARDEN_SERVER,
                "stdio",
                tuple(
                    T.proxy_command(
                        server, policy="scratch", catalog_dsn=dsn, audit=workdir / f"result-{table}.jsonl"
                    )
                ),
                measured="pgwarden proxy",
            )
            out[table] = anyio.run(_memory_run, target, f"SELECT * FROM {table}", calls)
        return out


# -- report ---------------------------------------------------------------------------------------


def run(db: BenchDatabase, workdir: Path, *, quick: bool) -> dict[str, Any]:
    rule_sizes = (10, 100, 1000)
    catalog_sizes = (10, 100, 1000, 10000)
    load_sizes = (10, 100, 1000) if quick else (10, 100, 1000, 10000)
    return {
        "rules": rules_curve(rule_sizes, 300 if quick else 3000),
        "catalog_per_call": catalog_per_call(catalog_sizes, 1 if quick else 5),
        "catalog_load": catalog_load(db, load_sizes),
        "result_size": result_size(db, workdir, 1_000_000, 5 if quick else 30),
    }


def markdown(data: dict[str, Any]) -> str:
    out = [
        "**Policy size** (`PolicySet.decide`, one tools/call with a three-table statement, every "
        "call with principal and analysis objects of its own, so every rule involved is evaluated; "
        "`reused`: the same objects again, as for a learned statement shape, when no rule reads "
        "`request` or `now`, the engine returns the decision it made):",
        "",
        "| rules | load ms | decide median µs | decide p99 µs | reused: median µs | unindexed: load ms "
        "| unindexed: decide median µs | unindexed: p99 µs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["rules"]:
        out.append(
            f"| {r['rules']} | {fmt(r['load_ms'], 0)} | {fmt(r['decide_us']['median'], 1)} "
            f"| {fmt(r['decide_us']['p99'], 1)} | {fmt(r['reused_decide_us']['median'], 1)} "
            f"| {fmt(r['unindexed_load_ms'], 0)} "
            f"| {fmt(r['unindexed_decide_us']['median'], 1)} | {fmt(r['unindexed_decide_us']['p99'], 1)} |"
        )
    out += [
        "",
        "**Catalog size**: whole-gate CPU per call (masked policy, 20 corpus queries, each a new shape "
        "to a fresh gate) with N synthetic tables in the catalog, and the time to introspect a database "
        "holding N tables:",
        "",
        "| tables | gate CPU median µs | gate CPU p99 µs | from_dsn + refresh ms |",
        "|---:|---:|---:|---:|",
    ]
    loads = {r["tables"]: r for r in data["catalog_load"]}
    for r in data["catalog_per_call"]:
        load = loads.get(r["tables"])
        out.append(
            f"| {r['tables']} | {fmt(r['cpu_us']['median'], 0)} | {fmt(r['cpu_us']['p99'], 0)} "
            f"| {fmt(load['load_ms'], 0) if load else '–'} |"
        )
    rs = data["result_size"]
    out += [
        "",
        f"**Result size**: `SELECT * FROM <table>` through `pgwarden proxy` (stdio, row cap {rs['cap']}) "
        f"in front of pgwarden's server, {rs['calls']} calls; RSS in MiB:",
        "",
        "| table rows | rows returned | median ms | proxy RSS before → after (peak) "
        "| server RSS before → after "
        "(peak) |",
        "|---:|---:|---:|---|---|",
    ]
    for table, n in (("small", 1000), ("big", rs["rows"])):
        r = rs[table]

        def mem(who: str, r: dict[str, Any] = r) -> str:
            return (
                f"{fmt(r['rss_before_mib'][who], 1)} → {fmt(r['rss_after_mib'][who], 1)} "
                f"({fmt(r['peak_mib'][who], 1)})"
            )

        out.append(
            f"| {n:,} | {r['rows_returned']} | {fmt(r['latency_ms']['median'])} | {mem('proxy')} "
            f"| {mem('server')} |"
        )
    return "\n".join(out)


def main(argv: list[str]) -> None:
    db = BenchDatabase.start()
    with tempfile.TemporaryDirectory(prefix="pgwarden-bench-") as tmp:
        print(markdown(run(db, Path(tmp), quick="--quick" in argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
