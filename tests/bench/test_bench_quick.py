"""The benchmark harness works: its smallest pieces run and its report renders.

Structure only (every call answered, every mode, workload, row and table present, the learned-shape
counts the report prints are counted); timings are the suite's business (`make bench`), never
asserted here.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import psutil
import psycopg
import pytest
from pglast import parser as pgparser

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the benchmark package lives beside tests/, not in the installed package
    sys.path.insert(0, str(REPO))

from bench import cache_pressure, e2e, pipeline_bench, suite  # noqa: E402
from bench import targets as T  # noqa: E402
from bench.database import BenchDatabase  # noqa: E402
from bench.guard_bench import _corpus  # noqa: E402
from pgwarden.proxy.guard.tokens import scan_sql  # noqa: E402

MACHINE = {"cpu": "x", "cores": 2, "memory_gib": 1.0, "os": "Linux", "python": "3.11", "postgres": "16",
           "node": "v20", "packages": {}, "load_at_start": [0, 0, 0], "load_at_end": [0, 0, 0]}


def test_harness_runs_direct_and_proxy_side_by_side_and_renders_the_report(demo_db, tmp_path: Path) -> None:
    server = T.server_command(T.PGWARDEN_SERVER, demo_db.reader_dsn)
    audit = tmp_path / "audit.jsonl"
    audit_off = tmp_path / "audit-off.jsonl"
    group = [
        T.Target(e2e.DIRECT, T.PGWARDEN_SERVER, "stdio", tuple(server), measured="pgwarden server"),
        T.Target(e2e.PROXY, T.PGWARDEN_SERVER, "stdio", tuple(T.proxy_command(
            server, policy="simple", catalog_dsn=demo_db.admin_dsn, audit=audit)), measured="pgwarden proxy"),
        T.Target(e2e.PROXY_OFF, T.PGWARDEN_SERVER, "stdio", tuple(T.proxy_command(
            server, policy="simple", catalog_dsn=demo_db.admin_dsn, audit=audit_off)),
            measured="pgwarden proxy", env=e2e.SHAPES_OFF_ENV),
        T.Target(e2e.BYTE_RELAY, T.PGWARDEN_SERVER, "stdio", tuple(T.byte_relay_command(server)),
                 measured="bench.byte_relay"),
        T.Target(e2e.ASYNCIO_RELAY, T.PGWARDEN_SERVER, "stdio", tuple(T.asyncio_relay_command(server)),
                 measured="bench.asyncio_relay"),
    ]
    measured = anyio.run(e2e.run_group, group, 3, 2)

    assert set(measured) == {t.key for t in group}
    for row in measured.values():
        assert row["errors"] == 0
        assert row["cpu_ms_per_call"] is not None  # the probe found the measured process
        for workload in e2e.WORKLOADS:
            assert row[workload]["n"] == 3
            assert 0 < row[workload]["median"] <= row[workload]["p99"]
            assert row[workload]["cpu_ms_per_call"] is not None
    # every proxied call (warm-up included) left one audit record, in both proxies
    for log in (audit, audit_off):
        records = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(records) == (3 + e2e.WARM_UP) * len(e2e.WORKLOADS)
        assert {r["decision"] for r in records} == {"allow"}

    data = {"calls": 3, "workloads": {w: make(0) for w, make in e2e.WORKLOADS.items()}, "targets": measured,
            "warm_up": e2e.WARM_UP, "coverage": e2e.coverage(3)}
    rows = e2e.rows(data)
    for label in (e2e.PROXY, e2e.PROXY_OFF):
        proxied = [r for r in rows if r["label"] == label]
        assert len(proxied) == len(e2e.WORKLOADS) and all("ratio" in r and "added_ms" in r for r in proxied)
    results = {"quick": True, "total_s": 1.0, "timings_s": {"e2e": 1.0}, "e2e": data, "machine": MACHINE}
    report = suite.markdown(results)
    assert "## 2. End to end, side by side" in report and "## Targets" in report
    assert "| new shape |" in report and "learned shapes off" in report
    prose = suite.analysis(results)  # generated from the run: the proxies' numbers appear in it
    proxy_new = next(r for r in rows if r["label"] == e2e.PROXY and r["workload"] == "new shape")
    assert f"{proxy_new['added_ms']:.2f} ms over stdio" in prose and "**Learned shapes.**" in prose
    targets = {name: (limit, met) for name, _, limit, met, _ in suite.targets(results)}
    assert targets["Proxy adds to the median call, stdio, pgwarden server (lookup)"][0] == "< 1.5 ms"
    # the new-shape workload and the proxy with learning off: informational rows, no verdict
    new_shape = "Proxy adds to the median call, stdio, pgwarden server (new shape every call)"
    assert targets[new_shape] == ("–", None)
    off = "Proxy with learned shapes off adds to the median call, stdio, pgwarden server (lookup)"
    assert targets[off] == ("–", None)
    # the relay that parses and routes answered every call like the others, each to its own request
    minimal = next(r for r in rows if r["label"] == e2e.ASYNCIO_RELAY and r["workload"] == "lookup")
    assert minimal["errors"] == 0 and minimal["added_ms"] is not None


def _measured(median_ms: float, cpu_ms: float = 0.5) -> dict[str, Any]:
    return {"errors": 0, **{w: {"median": median_ms, "p99": median_ms * 2, "cpu_ms_per_call": cpu_ms}
                            for w in e2e.WORKLOADS}}


def test_missed_targets_are_explained_from_the_runs_own_numbers() -> None:
    """The report's account of a missed target is arithmetic on the run's medians: the ratio's
    budget, the ladder of relays and the sync, and what was left for pgwarden's own work."""
    medians = {e2e.DIRECT: 3.0, e2e.BYTE_RELAY: 3.0, e2e.ASYNCIO_RELAY: 3.3, e2e.PW_RELAY: 3.7,
               e2e.PROXY_TMPFS: 4.4, e2e.PROXY: 4.6}
    data = {"calls": 3, "workloads": {w: make(0) for w, make in e2e.WORKLOADS.items()},
            "targets": {f"stdio|{T.PGWARDEN_SERVER}|{label}":
                        {"label": label, **_measured(ms, 2.0 if label == e2e.DIRECT else 0.5)}
                        for label, ms in medians.items()}}
    cold = {str(mib): {"gate_cpu_us": {"median": us}, "normalize_cpu_us": {"median": us / 40}}
            for mib, us in ((0, 250), (1, 260), (8, 330), (32, 625))}
    results = {"quick": True, "total_s": 1.0, "timings_s": {"e2e": 1.0}, "e2e": data, "machine": MACHINE,
               "pipeline": {"fsync_ms": {"median": 0.3, "p99": 0.9, "cpu_median": 0.2},
                            "cache_pressure": {"calls": 8, "learned_fills": 8, "sweeps": cold}}}
    why = suite.misses(results)
    assert why.startswith("3 of the end-to-end targets above are missed")  # stdio lookup, analytics, ratio
    assert "0.90 ms over stdio (direct 3.00 ms)" in why  # 0.3 × 3.0
    assert "asyncio added 0.30 ms, 33% of the ratio's budget" in why
    assert "added 0.70 ms, 0.40 ms more than the minimal relay" in why
    assert "the policy pipeline added 0.70 ms" in why and "sync added 0.20 ms (a write + fsync alone" in why
    assert "0.40 ms was left for pgwarden's relay work and the whole policy pipeline together; they took " \
        "1.10 ms" in why
    assert "takes 250 µs of CPU in a tight loop and 625 µs (2.50×) when 32 MiB of other memory" in why
    assert "the server used 2.00 ms of CPU time" in why and "the proxy 0.50 ms, 25% of that" in why
    without_guard = {k: v for k, v in results.items() if k != "pipeline"}
    assert "### Where the targets are missed, and why" in suite.markdown(without_guard)
    assert "in a tight loop" not in suite.misses(without_guard)  # no section 1: no claim about it
    ladder = suite.breakdown(results)
    assert "| lookup | 0.00 ms | 0.30 ms | 0.70 ms | 1.40 ms | 1.60 ms | – |" in ladder

    met = {**medians, e2e.PROXY_TMPFS: 3.75, e2e.PROXY: 3.8}  # adds 0.8 ms, ratio 1.27: all met
    data["targets"] = {f"stdio|{T.PGWARDEN_SERVER}|{label}": {"label": label, **_measured(ms)}
                       for label, ms in met.items()}
    assert suite.misses(results) == "" and "missed, and why" not in suite.markdown(without_guard)


def test_e2e_workloads_learned_shapes_and_new_shapes_as_the_report_says() -> None:
    """`lookup` and `analytics` keep one shape (only constants change); `new shape` never repeats one;
    an in-process gate with the proxy's policy serves the former from a learned shape after two calls."""
    for workload in e2e.WORKLOADS:
        keys = []
        for sql in e2e.sequence(workload, 12):
            found = scan_sql(sql)
            assert found is not None
            keys.append(found.key)
        assert len(set(keys)) == (1 if workload in e2e.LEARNED_WORKLOADS else len(keys))
    found = e2e.coverage(6, warm_up=e2e.QUICK_WARM_UP)
    assert set(found) == set(e2e.WORKLOADS)
    for workload, counted in found.items():
        assert counted["calls"] == 6 and counted["allowed"] == 6 + e2e.QUICK_WARM_UP
        if workload in e2e.LEARNED_WORKLOADS:
            assert counted["on_learned_shape"] == 6 and counted["first_hit"] == 2  # the third call
        else:
            assert counted["on_learned_shape"] == 0 and counted["first_hit"] is None


def test_every_run_has_the_shapes_off_target_beside_the_proxy(demo_db, tmp_path: Path) -> None:
    built = e2e.build_targets(demo_db, tmp_path, include_reference=False, include_mcp_proxy=False)
    off = [t for t in built if t.label == e2e.PROXY_OFF]
    assert len(off) == 1 and off[0].transport == "stdio" and off[0].env == {"PGWARDEN_SHAPE_CACHE": "off"}
    proxy = next(t for t in built if t.label == e2e.PROXY and t.transport == "stdio")
    assert proxy.env == {} and off[0].command != proxy.command  # its own audit log


@pytest.fixture(scope="module")
def reader(reader_dsn: str):
    with psycopg.connect(reader_dsn, autocommit=True) as conn:
        yield conn


def test_variants_keep_each_statement_valid_and_its_shape(reader: psycopg.Connection) -> None:
    """Each variant runs on the real database wherever the statement itself does, normalises to the
    same statement (only values changed) and has the same shape key; numbered variants differ."""
    corpus = _corpus()
    ran = varied = 0
    for sql in corpus:
        variants = [pipeline_bench.variant(sql, k) for k in (0, 1, 2, 31)]
        assert variants[0] == sql
        first, *_ = [scan_sql(v) for v in variants]
        assert first is not None
        for v in variants[1:]:
            assert pgparser.normalize(v) == pgparser.normalize(sql), v
            found = scan_sql(v)
            assert found is not None and found.key == first.key
        if variants[1] != sql:
            varied += 1
            assert len(set(variants)) == len(variants)  # each variant's constants are new
        try:
            reader.execute(sql).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            continue
        for v in variants[1:]:
            reader.execute(v).fetchall()
        ran += 1
    assert varied >= 20 and ran >= 50


def test_pipeline_modes_count_calls_verdicts_and_learned_shapes_and_render() -> None:
    measured = pipeline_bench.measure(1, learned_passes=1)
    corpus = measured["queries"]
    for policy in ("simple", "masked"):
        modes = measured[policy]["modes"]
        assert [m for m, _ in pipeline_bench.MODES] == list(modes)
        assert modes["new"]["calls"] == modes["learning"]["calls"] == corpus
        assert modes["learned"]["calls"] == modes["off"]["calls"] == corpus  # one learned pass
        allowed = measured[policy]["allowed"]
        assert 0 < allowed < corpus  # the corpus holds statements the policies deny
        assert all(m["allowed"] == allowed for m in modes.values())  # variants change no verdict
        assert [modes[m]["shape_hits"] for m in ("new", "learning", "off")] == [0, 0, 0]
        assert 0 < modes["learned"]["shape_hits"] <= allowed
        assert measured[policy]["learned_per_round"] >= modes["learned"]["shape_hits"]
        assert modes["learned"]["varied_cpu_us"]["n"] == measured["varied"] > 0
    data = {"rounds": 1, "builds": [measured, {**measured, "sqlglotc": False}],
            "fsync_ms": {"median": 0.1, "p99": 0.2}}
    table = pipeline_bench.markdown(data).split("\n\n")[0]  # the main table
    for _, label in pipeline_bench.MODES:
        assert table.count(f"| {label} |") == 4  # two builds x two policies
    results = {"quick": True, "total_s": 1.0, "timings_s": {"pipeline": 1.0}, "pipeline": data,
               "machine": MACHINE}
    rows = {name: (limit, met) for name, _, limit, met, _ in suite.targets(results)}
    name = "Guard cost per call, masks + row filters on every table (sqlglotc)"
    assert rows[f"{name}, new shape"][0] == rows[f"{name}, learned shape, other constants"][0] == "< 1 ms"
    assert rows[f"{name}, learning (2nd sighting of a shape)"] == ("–", None)
    report = suite.markdown(results)
    assert "proxy/guard/shapes.py" in report and "## 1. Guard cost per call" in report


def test_cache_pressure_times_learned_gate_calls_for_every_sweep_and_renders() -> None:
    """The gate measured with memory copied before each call: every sweep size gets every corpus
    statement of a pass, on learned shapes with new constants, and the table says so."""
    measured = cache_pressure.measure(1)
    corpus = len(_corpus())
    sweeps = measured["sweeps"]
    assert list(sweeps) == [str(mib) for mib in cache_pressure.SWEEPS_MIB]
    for row in sweeps.values():
        assert row["gate_cpu_us"]["n"] == row["normalize_cpu_us"]["n"] == corpus
        assert row["gate_cpu_us"]["median"] > 0 and row["normalize_cpu_us"]["median"] > 0
    assert measured["calls"] == corpus * len(sweeps)
    assert 0 < measured["learned_fills"] < measured["calls"]  # denied statements are never filled
    table = cache_pressure.markdown(measured)
    assert "| nothing (tight loop) |" in table and "| 32 MiB |" in table and "| 1.00 |" in table


def test_the_bench_database_stops_its_postgres_when_cleaned_up() -> None:
    """Deleting the data directory first used to leave the postmaster running after every run."""
    db = BenchDatabase.start(size="tiny")
    pid = int((db.server.data_dir / "postmaster.pid").read_text().split()[0])
    assert psutil.pid_exists(pid)
    db.cleanup()
    assert not db.data_dir.exists()
    with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
        psutil.Process(pid).wait(timeout=10)
    assert not psutil.pid_exists(pid), "the bench's Postgres is still running"
