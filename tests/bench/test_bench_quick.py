"""The benchmark harness works: its smallest end-to-end piece runs and its report renders.

Structure only (every call answered, every row and table present); timings are the suite's
business (`make bench`), never asserted here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the benchmark package lives beside tests/, not in the installed package
    sys.path.insert(0, str(REPO))

from bench import e2e, suite  # noqa: E402
from bench import targets as T  # noqa: E402


def test_harness_runs_direct_and_proxy_side_by_side_and_renders_the_report(demo_db, tmp_path: Path) -> None:
    server = T.server_command(T.PGWARDEN_SERVER, demo_db.reader_dsn)
    audit = tmp_path / "audit.jsonl"
    group = [
        T.Target(e2e.DIRECT, T.PGWARDEN_SERVER, "stdio", tuple(server), measured="pgwarden server"),
        T.Target(e2e.PROXY, T.PGWARDEN_SERVER, "stdio", tuple(T.proxy_command(
            server, policy="simple", catalog_dsn=demo_db.admin_dsn, audit=audit)), measured="pgwarden proxy"),
    ]
    measured = anyio.run(e2e.run_group, group, 3, 2)

    assert set(measured) == {t.key for t in group}
    for row in measured.values():
        assert row["errors"] == 0
        assert row["cpu_ms_per_call"] is not None  # the probe found the measured process
        for workload in e2e.WORKLOADS:
            assert row[workload]["n"] == 3
            assert 0 < row[workload]["median"] <= row[workload]["p99"]
    # every proxied call (warm-up included) left one audit record
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len(records) == (3 + 5) * len(e2e.WORKLOADS)
    assert {r["decision"] for r in records} == {"allow"}

    data = {"calls": 3, "workloads": {w: make(0) for w, make in e2e.WORKLOADS.items()}, "targets": measured}
    rows = e2e.rows(data)
    proxied = [r for r in rows if r["label"] == e2e.PROXY]
    assert len(proxied) == len(e2e.WORKLOADS) and all("ratio" in r and "added_ms" in r for r in proxied)
    results = {"quick": True, "total_s": 1.0, "timings_s": {"e2e": 1.0}, "e2e": data,
               "machine": {"cpu": "x", "cores": 2, "memory_gib": 1.0, "os": "Linux", "python": "3.11",
                           "postgres": "16", "node": "v20", "packages": {}, "load_at_start": [0, 0, 0]}}
    report = suite.markdown(results)
    assert "## 2. End to end, side by side" in report and "## Targets" in report
    names = [name for name, *_ in suite.targets(results)]
    assert "Proxy adds to the median call, stdio, pgwarden server (lookup)" in names
