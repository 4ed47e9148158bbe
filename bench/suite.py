"""The whole benchmark suite: run every section, write BENCHMARKS.md and the plots.

    python -m bench                 # full suite (make bench)
    python -m bench --quick         # every section, fewer calls (make bench-quick)
    python -m bench suite --only pipeline --out B.md --plots plots   # a subset

Sections run one after the other on a fresh embedded PostgreSQL seeded with the small demo
database. The numbers in the report are the ones this run measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import e2e, machine, pipeline_bench, plots, scale, soak, throughput
from bench.stats import fmt

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("pipeline", "guard", "e2e", "throughput", "scale", "soak")

SHAPES = (
    "The gate learns *statement shapes* (`proxy/guard/shapes.py`). A shape is the statement as "
    "Postgres's scanner tokenises it, with every plain quoted string and plain number replaced by a hole; "
    "row counts (LIMIT / OFFSET / FETCH), interval texts and any constant the guard itself rewrites (such "
    "as `date_trunc`'s unit) are *pinned*: part of the shape, compared by their exact text. The second "
    "time an allowed statement of a shape comes by (same search path and catalog), the gate runs the whole "
    "guard once more on a copy with sentinel constants and keeps the rewritten SQL as a template per set "
    "of obligations; from then on a statement of that shape still gets its own policy decision and audit "
    "record, and its constants are filled into the template, a fill being sent only if Postgres's "
    "normalisation of it equals that of the rewrite the template was learned from (which passed the full "
    "re-validation). A statement of a new shape takes the full path; `PGWARDEN_SHAPE_CACHE=off` in the "
    "proxy's environment turns learning off."
)


def _guard_breakdown(rounds: int) -> list[dict[str, Any]]:
    """bench/guard_bench.py's parse_statement/enforce split, both sqlglot builds."""
    rows = []
    for extra in ([], ["--pure"]):
        out = subprocess.run(
            [sys.executable, "-m", "bench.guard_bench", "--json", "--rounds", str(rounds), *extra],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def _run_section(section: str, db: Any, workdir: Path, quick: bool) -> Any:
    if section == "pipeline":
        return pipeline_bench.run(1 if quick else 10)
    if section == "guard":
        return _guard_breakdown(1 if quick else 10)
    if section not in SECTIONS:
        raise SystemExit(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
    assert db is not None
    if section == "e2e":
        return (
            e2e.run(db, workdir, calls=10, warm_up=e2e.QUICK_WARM_UP)
            if quick
            else e2e.run(db, workdir, calls=200)
        )
    if section == "throughput":
        return throughput.run(
            db, workdir, seconds=1.0 if quick else 6.0, levels=(1, 8, 32) if quick else throughput.LEVELS
        )
    if section == "scale":
        return scale.run(db, workdir, quick=quick)
    return soak.run(db, workdir, calls=500 if quick else 10_000)


def run(sections: tuple[str, ...], *, quick: bool, log: Any = sys.stderr) -> dict[str, Any]:
    """Run `sections`; the results as one JSON-able mapping."""
    from bench.database import BenchDatabase

    results: dict[str, Any] = {"quick": quick, "sections": list(sections), "timings_s": {}}
    started = time.perf_counter()
    db = None
    needs_db = any(s in sections for s in ("e2e", "throughput", "scale", "soak"))
    if needs_db:
        db = BenchDatabase.start()
        results["database_s"] = db.seed_seconds
    results["machine"] = machine.describe(db.version() if db is not None else None)
    with tempfile.TemporaryDirectory(prefix="pgwarden-bench-") as tmp:
        workdir = Path(tmp)
        for section in sections:
            print(f"bench: {section} ...", file=log, flush=True)
            t0 = time.perf_counter()
            try:
                results[section] = _run_section(section, db, workdir, quick)
            except Exception as exc:  # one broken section must not lose the others' numbers
                results.setdefault("failed", {})[section] = f"{type(exc).__name__}: {exc}"[:500]
                print(f"bench: {section} failed: {exc}", file=log, flush=True)
            results["timings_s"][section] = time.perf_counter() - t0
    if db is not None:
        db.cleanup()
    results["machine"]["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_s"] = time.perf_counter() - started
    return results


# -- targets --------------------------------------------------------------------------------------


def _e2e_row(data: dict[str, Any], transport: str, label: str, workload: str) -> dict[str, Any] | None:
    for row in e2e.rows(data):
        if (row["transport"], row["upstream"], row["label"], row["workload"]) == (
            transport,
            "pgwarden server",
            label,
            workload,
        ):
            return row
    return None


RATIO_LIMIT = 1.3  # proxy/direct on the analytics workload
ADDED_LIMIT_MS = {"stdio": 1.5, "http": 2.0}  # the proxy's added median, per front
NOISE_MS = 0.05  # differences of medians below this are reported as nothing measurable
E2E_TARGETS = ("Proxy adds to the median call", "Ratio proxy", "Proxy with JSON answers adds")
"""How the summary's end-to-end target rows begin (the rows `misses` explains)."""


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None, str]]:
    """(target, measured, limit, met, note) rows for the summary table."""
    out: list[tuple[str, str, str, bool | None, str]] = []
    if "pipeline" in results:
        data = results["pipeline"]
        name = "Guard cost per call, masks + row filters on every table (sqlglotc)"
        for mode, label, limit in (
            ("new", "new shape", 1000.0),
            ("learned", "learned shape, other constants", 1000.0),
            ("learning", "learning (2nd sighting of a shape)", None),
        ):
            m = pipeline_bench.mode_row(data, True, "masked", mode)
            if m is None:
                continue
            wall, cpu = m["wall_us"]["median"], m["cpu_us"]["median"]
            hits = f"{m['shape_hits']} / {m['calls']} calls on a learned shape"
            if m["allowed"] < m["calls"]:
                hits += f" ({m['calls'] - m['allowed']} denied)"
            note = f"median, whole gate incl. audit record; {hits}"
            if limit is None:
                note = "informational: paid once per shape and set of obligations; " + note
            out.append(
                (
                    f"{name}, {label}",
                    f"{fmt(wall / 1000)} ms (CPU {fmt(cpu / 1000)} ms)",
                    f"< {limit / 1000:g} ms" if limit is not None else "–",
                    wall < limit if limit is not None else None,
                    note,
                )
            )
    if "scale" in results:
        r100 = next(r for r in results["scale"]["rules"] if r["rules"] == 100)
        out.append(
            (
                "Policy decision at 100 rules",
                f"{fmt(r100['decide_us']['median'], 0)} µs",
                "< 200 µs",
                r100["decide_us"]["median"] < 200,
                f"indexed; unindexed worst case {fmt(r100['unindexed_decide_us']['median'], 0)} µs",
            )
        )
    if "e2e" in results:
        data = results["e2e"]
        for transport, limit in ADDED_LIMIT_MS.items():
            for workload in e2e.LEARNED_WORKLOADS:
                row = _e2e_row(data, transport, e2e.PROXY, workload)
                if row and row.get("added_ms") is not None:
                    out.append(
                        (
                            f"Proxy adds to the median call, {transport}, pgwarden server ({workload})",
                            f"{fmt(row['added_ms'])} ms",
                            f"< {limit} ms",
                            row["added_ms"] < limit,
                            f"direct {fmt(row['median'] - row['added_ms'])} ms → "
                            f"proxy {fmt(row['median'])} ms",
                        )
                    )
            row = _e2e_row(data, transport, e2e.PROXY, "analytics")
            if row and row.get("ratio") is not None:
                out.append(
                    (
                        f"Ratio proxy/direct, typical analytics query, {transport}",
                        fmt(row["ratio"]),
                        f"< {RATIO_LIMIT}",
                        row["ratio"] < RATIO_LIMIT,
                        "",
                    )
                )
        json_note = "opt-in `--http-responses json`: no upstream progress or server requests during a call"
        for workload in e2e.LEARNED_WORKLOADS:
            row = _e2e_row(data, "http", e2e.PROXY_JSON, workload)
            if row and row.get("added_ms") is not None:
                out.append(
                    (
                        "Proxy with JSON answers adds to the median call, http, pgwarden server "
                        f"({workload})",
                        f"{fmt(row['added_ms'])} ms",
                        f"< {ADDED_LIMIT_MS['http']} ms",
                        row["added_ms"] < ADDED_LIMIT_MS["http"],
                        f"{json_note}; direct {fmt(row['median'] - row['added_ms'])} ms → "
                        f"proxy {fmt(row['median'])} ms",
                    )
                )
        row = _e2e_row(data, "http", e2e.PROXY_JSON, "analytics")
        if row and row.get("ratio") is not None:
            out.append(
                (
                    "Ratio proxy with JSON answers/direct, typical analytics query, http",
                    fmt(row["ratio"]),
                    f"< {RATIO_LIMIT}",
                    row["ratio"] < RATIO_LIMIT,
                    json_note,
                )
            )
        for transport in ("stdio", "http"):
            row = _e2e_row(data, transport, e2e.PROXY, "new shape")
            if row and row.get("added_ms") is not None:
                out.append(
                    (
                        f"Proxy adds to the median call, {transport}, pgwarden server (new shape every call)",
                        f"{fmt(row['added_ms'])} ms",
                        "–",
                        None,
                        "informational, the worst case: every call a statement the gate has not seen; "
                        f"direct {fmt(row['median'] - row['added_ms'])} ms → proxy {fmt(row['median'])} ms",
                    )
                )
        for workload in e2e.LEARNED_WORKLOADS:
            row = _e2e_row(data, "stdio", e2e.PROXY_OFF, workload)
            if row and row.get("added_ms") is not None:
                out.append(
                    (
                        f"Proxy with learned shapes off adds to the median call, stdio, pgwarden server "
                        f"({workload})",
                        f"{fmt(row['added_ms'])} ms",
                        "–",
                        None,
                        "informational: the same proxy with PGWARDEN_SHAPE_CACHE=off; "
                        f"direct {fmt(row['median'] - row['added_ms'])} ms → proxy {fmt(row['median'])} ms",
                    )
                )
        for transport, relay in (("stdio", e2e.SDK_RELAY), ("http", e2e.MCP_PROXY)):
            row = _e2e_row(data, transport, e2e.PROXY, "lookup")
            key = f"vs {relay}"
            if row and row.get(key) is not None:
                out.append(
                    (
                        f"Policy proxy's added latency / plain relay's, {transport} ({relay})",
                        f"{fmt(row[key])}×",
                        "≤ 1.5×",
                        row[key] <= 1.5,
                        "lookup workload",
                    )
                )
    if "scale" in results:
        rs = results["scale"]["result_size"]
        grow = max(
            (rs["big"]["peak_mib"][w] or 0) - (rs["small"]["peak_mib"][w] or 0) for w in ("proxy", "server")
        )
        out.append(
            (
                "Memory flat under the 1M-row capped query",
                f"peak +{fmt(grow, 1)} MiB vs 1k rows",
                "flat (< 5 MiB)",
                grow < 5,
                "proxy and server peak RSS",
            )
        )
    if "soak" in results:
        data = results["soak"]
        start, end = soak.growth(data, "proxy")
        half = [
            s["proxy"] for s in data["rss_mib"] if s["calls"] >= data["calls"] // 2 and s["proxy"] is not None
        ]
        if start is not None and end is not None:
            late = end - half[0] if half else None
            out.append(
                (
                    f"Memory flat across the soak ({data['calls']:,} calls)",
                    f"proxy {fmt(start, 1)} → {fmt(end, 1)} MiB",
                    "no growth beyond noise",
                    late is not None and late < 2,
                    f"second half: {fmt(late, 1)} MiB",
                )
            )
    return out


def _ms(value: float | None) -> str:
    return f"{fmt(value)} ms"


def _cpu_ms(data: dict[str, Any], sqlglotc: bool, policy: str, mode: str) -> float | None:
    m = pipeline_bench.mode_row(data, sqlglotc, policy, mode)
    return m["cpu_us"]["median"] / 1000 if m is not None else None


LADDER = (
    (e2e.BYTE_RELAY, "the process hop"),
    (e2e.ASYNCIO_RELAY, "+ parse and route on asyncio"),
    (e2e.PW_RELAY, "+ pgwarden's relay"),
    (e2e.PROXY_TMPFS, "+ policy pipeline"),
    (e2e.PROXY, "+ durable audit"),
)
"""The stdio targets that add one layer each, from nothing parsed to the shipped proxy: `label`
(its added latency is cumulative) and what its step adds over the one before."""


def breakdown(results: dict[str, Any]) -> str:
    """Where the proxy's added latency goes on the stdio path, from this run's numbers."""
    if "e2e" not in results:
        return ""
    data = results["e2e"]
    header = " | ".join(f"{label} ({step})" for label, step in LADDER)
    lines = [
        f"| workload | {header} | proxy, learned shapes off | CPU ms/call: asyncio relay / pgwarden relay / "
        "proxy / proxy, learned shapes off |",
        "|---|" + "---:|" * (len(LADDER) + 2),
    ]
    for workload in e2e.WORKLOADS:
        rows = [row for label, _ in LADDER if (row := _e2e_row(data, "stdio", label, workload))]
        off = _e2e_row(data, "stdio", e2e.PROXY_OFF, workload)
        if len(rows) != len(LADDER):
            return ""
        cells = [_ms(row["added_ms"]) for row in rows]
        cpus = [row["cpu_ms_per_call"] if row else None for row in (rows[1], rows[2], rows[-1], off)]
        lines.append(
            f"| {workload} | {' | '.join(cells)} | {_ms(off['added_ms']) if off else '–'} "
            f"| {' / '.join(fmt(c) if c is not None else '–' for c in cpus)} |"
        )
    out = [
        "Added median latency over stdio in front of pgwarden's server, each column one layer more than "
        "the one before it (measured side by side in this run; differences of medians are noisy, but the "
        "order of magnitude holds): an extra process copying bytes (`bench/byte_relay.py`); a minimal "
        "relay that parses, routes and re-encodes every message on asyncio (`bench/asyncio_relay.py`); "
        "pgwarden's relay with a gate that checks nothing; the proxy with its audit log on tmpfs; the "
        "proxy as shipped (audit on disk). `lookup` and `analytics` run on learned shapes, `new shape` "
        "never does; CPU is the middle process's, per call of that workload:",
        "",
        *lines,
    ]
    if "pipeline" in results:
        p = results["pipeline"]
        cpu = {
            (policy, mode): _cpu_ms(p, True, policy, mode)
            for policy in ("simple", "masked")
            for mode, _ in pipeline_bench.MODES
        }
        if all(v is not None for v in cpu.values()):
            out += [
                "",
                "For scale, the gate alone (section 1, sqlglotc, CPU per call, simple policy; masked in "
                f"brackets): new shape {fmt(cpu['simple', 'new'])} ms ({fmt(cpu['masked', 'new'])} ms), "
                f"learning {fmt(cpu['simple', 'learning'])} ms ({fmt(cpu['masked', 'learning'])} ms) once "
                f"per shape, learned shape {fmt(cpu['simple', 'learned'])} ms "
                f"({fmt(cpu['masked', 'learned'])} ms), learning off {fmt(cpu['simple', 'off'])} ms "
                f"({fmt(cpu['masked', 'off'])} ms).",
            ]
    return "\n".join(out)


def analysis(results: dict[str, Any]) -> str:
    """What the numbers of this run say about the end-to-end targets (generated, so it stays true)."""
    if "e2e" not in results:
        return ""
    data = results["e2e"]

    def added(transport: str, label: str, workload: str) -> float | None:
        row = _e2e_row(data, transport, label, workload)
        return row.get("added_ms") if row else None

    bullets = []
    learned = {w: added("stdio", e2e.PROXY, w) for w in e2e.LEARNED_WORKLOADS}
    off = {w: added("stdio", e2e.PROXY_OFF, w) for w in e2e.LEARNED_WORKLOADS}
    gate = ""
    if "pipeline" in results:
        p = results["pipeline"]
        new_cpu, learned_cpu = _cpu_ms(p, True, "simple", "new"), _cpu_ms(p, True, "simple", "learned")
        if new_cpu is not None and learned_cpu is not None:
            gate = (
                f" The gate alone costs {fmt(learned_cpu)} ms CPU for a statement of a learned shape and "
                f"{fmt(new_cpu)} ms for a new shape (section 1, simple policy, sqlglotc)."
            )
    bullets.append(
        "- **Learned shapes.** The `lookup` and `analytics` workloads repeat one query with other values, "
        "so after their second call the gate fills a learned template instead of parsing, rewriting and "
        "re-validating the statement. Over stdio the proxy added "
        + " and ".join(f"{_ms(learned[w])} to `{w}`" for w in e2e.LEARNED_WORKLOADS)
        + " with learned shapes; with learning off (the same proxy, `PGWARDEN_SHAPE_CACHE=off`), "
        + " and ".join(_ms(off[w]) for w in e2e.LEARNED_WORKLOADS)
        + " respectively."
        + gate
    )
    new_stdio, new_http = added("stdio", e2e.PROXY, "new shape"), added("http", e2e.PROXY, "new shape")
    bullets.append(
        "- **New shapes pay the full guard.** A statement of a shape the gate has not seen is parsed "
        "(pglast and sqlglot), analysed, rewritten into secure views, generated and re-validated with "
        f"Postgres's grammar: the `new shape` workload, where the proxy added {_ms(new_stdio)} over stdio "
        f"and {_ms(new_http)} over HTTP. An agent that writes every query afresh pays this on every call; "
        "one that repeats queries with other values pays it once per shape, plus the learning on the "
        "shape's second call."
    )

    def disk_minus_tmpfs(workload: str) -> float | None:
        tmpfs, disk = added("stdio", e2e.PROXY_TMPFS, workload), added("stdio", e2e.PROXY, workload)
        return disk - tmpfs if disk is not None and tmpfs is not None else None

    fsync = ""
    if "pipeline" in results:
        fsync = (
            f" (the disk's write + fsync alone: median {fmt(results['pipeline']['fsync_ms']['median'])} ms)"
        )
    bullets.append(
        "- **Strict audit.** With the shipped default, no answer goes out before its decision is "
        "durable. An allowed call's decision is journaled and synced while the upstream works, and "
        "its chained record follows (written right after the answer on the fast paths) and is synced "
        "within 50 ms (`proxy/audit/journal.py`), so the disk's sync is "
        "mostly off the call's path. In this run, the audit log on disk instead of tmpfs changed the "
        "proxy's median by "
        + ", ".join(f"{_ms(disk_minus_tmpfs(w))} for `{w}`" for w in e2e.WORKLOADS)
        + f"{fsync}. What remains is the sync competing for the two cores with the server and "
        "Postgres, which are working at that moment."
    )
    sse = {w: added("http", e2e.PROXY, w) for w in e2e.LEARNED_WORKLOADS}
    json_answers = {w: added("http", e2e.PROXY_JSON, w) for w in e2e.LEARNED_WORKLOADS}
    if all(v is not None for v in (*sse.values(), *json_answers.values())):
        bullets.append(
            "- **HTTP answers.** By default the proxy answers each call as an SSE stream (which carries "
            "the upstream's progress and its requests to the client during the call); the MCP SDK's client "
            "leaves such a stream unread to its end, so it opens a new connection per call, to the proxy "
            "and to the server alike. An initialised session's plain requests are answered by the proxy's "
            "HTTP fast path (`proxy/relay/http_fast.py`), not the SDK's transport machinery. The proxy added "
            + " and ".join(f"{_ms(sse[w])} to `{w}`" for w in e2e.LEARNED_WORKLOADS)
            + " that way (against the server answering with SSE streams too); with JSON answers "
            "(`--http-responses json`), against the server also answering with JSON bodies, "
            + " and ".join(_ms(json_answers[w]) for w in e2e.LEARNED_WORKLOADS)
            + " respectively."
        )
    hop, sdk = added("stdio", e2e.PW_RELAY, "lookup"), added("stdio", e2e.SDK_RELAY, "lookup")
    floor, minimal = added("stdio", e2e.BYTE_RELAY, "lookup"), added("stdio", e2e.ASYNCIO_RELAY, "lookup")
    bullets.append(
        f"- **The hop.** An extra process that only copies the bytes (`byte copy, no parsing`) added "
        f"{_ms(floor)} to the `lookup` median over stdio: the floor of any relay. A minimal relay that "
        f"parses and routes each message on asyncio added {_ms(minimal)}; pgwarden's relay without any "
        f"policy {_ms(hop)} (a minimal relay written with the MCP SDK: {_ms(sdk)}). The difference to the "
        "byte copy is the relay's own work per message (parsing, routing, event loop steps), which on this "
        "shared 2-core machine costs several times what the same code takes in a tight loop: each call "
        "runs after the client, the server and Postgres have had the CPUs."
    )
    m = results.get("machine", {})
    start, end, cores = m.get("load_at_start"), m.get("load_at_end"), m.get("cores")
    if start and end and cores:
        busy = max(start[0], end[0]) >= cores / 2
        bullets.append(
            f"- **The machine.** Load average (1 min) {fmt(start[0])} at start and {fmt(end[0])} at end, on "
            f"{cores} cores"
            + (
                ": other processes used the CPUs during the run, which inflates every median and most of "
                "all the p99s; the CPU columns are less affected."
                if busy
                else "."
            )
        )
    return "What the end-to-end numbers say:\n\n" + "\n".join(bullets)


def misses(results: dict[str, Any]) -> str:
    """Which end-to-end targets this run missed, and what its own numbers say about why."""
    if "e2e" not in results:
        return ""
    rows = targets(results)
    missed = [name for name, _, _, met, _ in rows if met is False and name.startswith(E2E_TARGETS)]
    if not missed:
        return ""
    data = results["e2e"]
    analytics: dict[tuple[str, str], dict[str, Any]] = {
        (row["transport"], row["label"]): row
        for row in e2e.rows(data)
        if row["upstream"] == "pgwarden server" and row["workload"] == "analytics"
    }

    def added(transport: str, label: str) -> float:
        return float(analytics[transport, label]["added_ms"])

    out = [
        f"{len(missed)} of the end-to-end targets above are missed in this run. What this run's own "
        "numbers say about why:",
        "",
    ]
    budget = {
        t: (RATIO_LIMIT - 1) * analytics[t, e2e.DIRECT]["median"]
        for t in ("stdio", "http")
        if (t, e2e.DIRECT) in analytics
    }
    out.append(
        f"- **The ratio's budget.** A ratio under {RATIO_LIMIT} on `analytics` leaves the proxy "
        f"{fmt(RATIO_LIMIT - 1)} × the direct call: "
        + " and ".join(
            f"{_ms(b)} over {t} (direct {_ms(analytics[t, e2e.DIRECT]['median'])})" for t, b in budget.items()
        )
        + ". The limit on the added median ("
        + ", ".join(f"{limit:g} ms over {t}" for t, limit in ADDED_LIMIT_MS.items())
        + ") is the looser one whenever the direct call takes more than "
        + " or ".join(f"{limit / (RATIO_LIMIT - 1):.1f} ms ({t})" for t, limit in ADDED_LIMIT_MS.items())
        + "."
    )
    ladder = [label for label, _ in LADDER]
    if "stdio" in budget and all(("stdio", label) in analytics for label in ladder):
        floor, minimal, relay, tmpfs, proxy = (added("stdio", label) for label in ladder)
        sync = max(proxy - tmpfs, 0.0)
        out.append(
            "- **A hop in Python, before any policy.** Over stdio the extra process alone (`byte copy, no "
            f"parsing`) added {_ms(floor)} to `analytics`; a minimal relay that parses, routes and "
            f"re-encodes each message on asyncio added {_ms(minimal)}"
            + (f", {minimal / budget['stdio']:.0%} of the ratio's budget" if minimal > NOISE_MS else
               ", nothing measurable")
            + f", with nothing checked. pgwarden's relay with no policy added {_ms(relay)}, "
            f"{_ms(relay - minimal)} more than the minimal relay: its own work per message, which keeps "
            "what a drop-in MCP relay needs per request (a task with a cancel scope so that the client's "
            "cancellation reaches the upstream, progress forwarding, the envelope and `_meta` of the "
            "upstream's protocol version, the result adapted to the client's version, in-flight "
            "bookkeeping) and reads both pipes through asyncio's transports."
        )
        fsync = results.get("pipeline", {}).get("fsync_ms", {})
        sync_alone = ""
        if fsync.get("median") is not None and fsync.get("cpu_median") is not None:
            sync_alone = (
                f" (a write + fsync alone: median {_ms(fsync['median'])}, of which "
                f"{_ms(fsync['cpu_median'])} is CPU time on this machine's virtual disk)"
            )
        out.append(
            f"- **Policy and durable audit.** On top of the relay, the policy pipeline added "
            f"{_ms(tmpfs - relay)}: the request span, the SQL scan and its learned shape, the decision, "
            "the template's fill checked by Postgres's parser, the decision's journal line, the result "
            f"filter, the chained record. The strict audit's sync added {_ms(proxy - tmpfs)}{sync_alone}; "
            "it runs while the server and Postgres need the same two cores." + _cold_caches(results)
        )
        left = budget["stdio"] - max(minimal, 0.0) - sync
        out.append(
            "- **In sum, over stdio.** "
            + (
                f"With the minimal relay's {_ms(max(minimal, 0.0))} and the sync's {_ms(sync)} taken from "
                f"the budget of {_ms(budget['stdio'])}, {_ms(left)} was left for pgwarden's relay work "
                f"and the whole policy pipeline together; they took {_ms(tmpfs - max(minimal, 0.0))}."
                if left > 0
                else f"The minimal relay ({_ms(max(minimal, 0.0))}) and the sync ({_ms(sync)}) alone took "
                f"the whole budget of {_ms(budget['stdio'])}; pgwarden's relay work and the policy "
                f"pipeline took {_ms(tmpfs - max(minimal, 0.0))} on top."
            )
        )
        server_cpu = analytics["stdio", e2e.DIRECT].get("cpu_ms_per_call")
        proxy_cpu = analytics["stdio", e2e.PROXY].get("cpu_ms_per_call")
        if server_cpu and proxy_cpu is not None:
            out.append(
                f"- **A second Python process that does a server's share of work.** Per `analytics` call "
                f"over stdio the server used {_ms(server_cpu)} of CPU time (it parses the request, runs "
                f"the statement through psycopg, encodes the rows) and the proxy {_ms(proxy_cpu)}, "
                f"{proxy_cpu / server_cpu:.0%} of that (it parses the request, checks and journals "
                "it, relays it, parses, filters and relays the answer, records the call). The ratio allows "
                f"the proxy's whole addition {RATIO_LIMIT - 1:.0%} of the direct call, whose time also "
                "includes the client and Postgres."
            )
    if "http" in budget and ("http", e2e.PW_RELAY) in analytics:
        http_relay = added("http", e2e.PW_RELAY)
        out.append(
            f"- **Over HTTP** pgwarden's relay with no policy alone added {_ms(http_relay)} to `analytics`, "
            f"{http_relay / budget['http']:.0%} of that path's budget: a request and a streamed answer "
            "through the HTTP server on the front, a pipe to the server behind."
        )
    return "\n".join(out)


def _cold_caches(results: dict[str, Any]) -> str:
    """What section 1's cache-pressure measurement says of the gate off a tight loop."""
    sweeps = results.get("pipeline", {}).get("cache_pressure", {}).get("sweeps")
    if not sweeps:
        return ""
    most = max(sweeps, key=int)
    tight, cold = sweeps["0"]["gate_cpu_us"]["median"], sweeps[most]["gate_cpu_us"]["median"]
    return (
        f" The gate's work on a learned shape (masks and row filters) takes {fmt(tight, 0)} µs of CPU in "
        f"a tight loop and {fmt(cold, 0)} µs ({fmt(cold / tight)}×) when {most} MiB of "
        "other memory is copied before each call (section 1): on the call's path it runs on caches the "
        "client, the server and Postgres have just used."
    )


# -- report ---------------------------------------------------------------------------------------


def _machine_md(m: dict[str, Any]) -> str:
    lines = [
        f"- CPU: {m['cpu']}, {m['cores']} cores; memory {fmt(m['memory_gib'], 1)} GiB; {m['os']}",
        f"- Python {m['python']}, PostgreSQL {m['postgres']} (embedded, pgserver), Node {m['node']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- Load average at start: {' / '.join(str(x) for x in m['load_at_start'])} (1 / 5 / 15 min); "
        f"at end: {' / '.join(str(x) for x in m.get('load_at_end', []))}",
    ]
    if m.get("busy_at_start"):
        lines.append("- Other processes using CPU at start: " + "; ".join(m["busy_at_start"]))
    return "\n".join(lines)


def markdown(results: dict[str, Any], *, plots_rel: str = "bench/plots") -> str:
    quick = results["quick"]
    command = "make bench-quick" if quick else "make bench"
    out = [
        "# pgwarden benchmarks",
        "",
        f"Generated by `{command}` (`python -m bench{' --quick' if quick else ''}`) in "
        f"{results['total_s'] / 60:.1f} minutes. Every number below comes from that one run; rerun it to "
        "reproduce. Benchmarks are scripts in `bench/`, not timed tests.",
        "",
        "## Machine",
        "",
        _machine_md(results["machine"]),
        "",
        "The machine is shared: other processes (other test runs) used the CPUs during the run, so absolute "
        "numbers are noisy. Comparisons are measured side by side in the same run (end-to-end targets are "
        "interleaved call batches), and CPU time per call is reported where waiting for the CPU would "
        "distort wall-clock time.",
        "",
    ]
    rows = targets(results)
    if rows:
        out += ["## Targets", "", "| target | measured | limit | met | note |", "|---|---|---|---|---|"]
        for name, measured, limit, met, note in rows:
            out.append(
                f"| {name} | {measured} | {limit} | {'yes' if met else 'no' if met is not None else '–'} "
                f"| {note} |"
            )
        out.append("")
        why = misses(results)
        if why:
            out += ["### Where the targets are missed, and why", "", why, ""]
    if "pipeline" in results:
        out += [
            "## 1. Guard cost per call",
            "",
            "`python -m bench pipeline`: the product's gate (`GuardedGate`) with a real policy, catalog, "
            "telemetry and hash-chained audit log, for each of the analytics corpus's queries: parse and "
            "analyse (sqlglot + pglast), decide (CEL), rewrite (secure views, row cap), "
            "re-validate (pglast), "
            "filter a small result, write the audit record. Policies: `bench/policies/simple.yaml` and "
            "`bench/policies/masked.yaml` (masks on every PII column, a row filter on every table). Without "
            "sqlglotc: a fresh interpreter importing sqlglot from its .py files.",
            "",
            SHAPES,
            "",
            "Modes: `new shape` (every statement once on a fresh gate: the full path), `learning` (the "
            "second sighting of each shape, with other constants: the full path plus learning, paid once "
            "per shape and set of obligations), `learned shape, other constants` (later sightings, each "
            "with constants not sent before: the steady state of an agent repeating a query with other "
            "values), `learning off, other constants` (the same statements on a gate with "
            "`PGWARDEN_SHAPE_CACHE=off`: what every such call cost before the gate learned shapes).",
            "",
            pipeline_bench.markdown(results["pipeline"]),
            "",
            f"![guard cost]({plots_rel}/guard.png)",
            "",
        ]
    if "guard" in results:
        out += [
            "Where the guard's share of the full path goes (a new shape; `python -m bench guard`: "
            "`parse_statement` and `enforce` alone):",
            "",
            "| sqlglot build | policy | median µs | p99 µs | parse_statement median µs | enforce median µs |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for row in results["guard"]:
            build = "compiled (sqlglotc)" if row["sqlglotc"] else "pure Python"
            for policy in ("permissive", "masked"):
                r = row[policy]
                out.append(
                    f"| {build} | {policy} | {fmt(r['median'], 0)} | {fmt(r['p99'], 0)} "
                    f"| {fmt(r['parse_median'], 0)} | {fmt(r['enforce_median'], 0)} |"
                )
        out.append("")
    if "e2e" in results:
        data = results["e2e"]
        out += [
            "## 2. End to end, side by side",
            "",
            f"`python -m bench e2e`: {data['calls']} calls of each workload per target, interleaved in "
            f"batches of 10 across all targets of a path, after {data.get('warm_up', e2e.WARM_UP)} warm-up "
            "calls of each. "
            "Workloads:",
            "",
            *[f"- `{w}`: `{sql}`" for w, sql in data["workloads"].items()],
            "",
            "`lookup` and `analytics` use a different literal on every call: the proxy's gate learns their "
            "shape on the second warm-up call, so every measured call runs on a learned shape (section 1). "
            "`new shape` gives every call a column alias never sent before (`c0`, `c1`, …), so every call "
            "is a shape the gate has not seen: the full guard path, the worst case.",
            "",
            "Targets: `direct` (the client spawns / connects to the server itself); `pgwarden proxy` "
            "(`pgwarden proxy --policy bench/policies/simple.yaml --catalog-dsn … --audit-log <disk>`, the "
            "shipped defaults: strict audit, each decision durable before the answer); the same with "
            "`PGWARDEN_SHAPE_CACHE=off` in its environment (`learned shapes off`), with the audit log on "
            "tmpfs (no disk wait) and with the masked policy (its row filters make Postgres do less work, "
            "so compare its CPU, not its latency); `pgwarden relay, no policy` (pgwarden's relay with a gate "
            "that checks "
            "nothing: `bench/passthrough_relay.py`); `byte copy, no parsing` (the upstream's pipes copied "
            "by two threads, nothing parsed: the floor of any stdio hop, `bench/byte_relay.py`); "
            "`asyncio relay, parse and route, no policy` (every message parsed, routed by its id and "
            "re-encoded on one asyncio event loop, nothing checked: the floor of a relay in Python that "
            "can look at what passes, `bench/asyncio_relay.py`); "
            "`SDK relay, no policy` (a minimal relay written "
            "with the "
            "MCP SDK: `bench/plain_relay.py`, since mcp-proxy cannot relay stdio to stdio); `mcp-proxy 0.13` "
            "from PyPI (installed into `bench/.venv-relay` because it pins mcp 1.x; it serves "
            "Streamable HTTP "
            "in front of a stdio server). Over HTTP the proxies and relays reach the server over stdio; "
            "server-postgres has no HTTP transport, so its HTTP rows compare with its stdio direct run.",
            "",
            e2e.markdown(data),
            "",
            "`middle process CPU` is user + system CPU time of the proxy/relay process per call of that "
            "workload (for `direct`: the server's), read around each run of calls; it is not inflated by "
            "waiting for a busy CPU, but the clock ticks of 10 ms make it approximate at small call counts.",
            "",
            f"![end to end]({plots_rel}/e2e.png)",
            "",
        ]
    if "e2e" in results:
        split = breakdown(results)
        if split:
            out += ["### Where the added latency goes", "", split, "", analysis(results), ""]
    if "throughput" in results:
        data = results["throughput"]
        out += [
            "## 3. Throughput and concurrency (Streamable HTTP)",
            "",
            f"`python -m bench throughput`: N MCP sessions each calling `{data['sql']}` in a loop for "
            f"{data['seconds']:g} s; the proxy (simple policy, audit on disk) in front of pgwarden's server "
            "over stdio vs the server's own HTTP transport. The statements differ only in a number: one "
            "shape, learned by the proxy's gate on its second call. Clients, proxy, server and Postgres "
            "share the two cores.",
            "",
            throughput.markdown(data),
            "",
            f"![throughput]({plots_rel}/throughput.png)",
            "",
        ]
    if "scale" in results:
        out += [
            "## 4. Scale curves",
            "",
            "`python -m bench scale`.",
            "",
            scale.markdown(results["scale"]),
            "",
            f"![scale]({plots_rel}/scale.png)",
            "",
        ]
    if "soak" in results:
        out += [
            "## 5. Soak",
            "",
            f"`python -m bench soak`: {results['soak']['calls']:,} calls through one proxy "
            "session (stdio, masked policy, audit on disk), four statements cycling with distinct literals "
            "(four shapes, learned during the warm-up). RSS rises while the caches fill (the gate keeps its "
            "last 256 statements and up to 512 learned shapes, the guard its secure-view templates), then "
            "must stay flat: compare the second half of the plot.",
            "",
            soak.markdown(results["soak"]),
            "",
            f"![soak]({plots_rel}/soak.png)",
            "",
        ]
    for section, error in results.get("failed", {}).items():
        out += [f"**Section `{section}` failed in this run:** `{error}`", ""]
    out += [
        "## Reproduce",
        "",
        "```",
        "make bench          # full suite: installs the bench extra (matplotlib, psutil, py-spy), "
        "the reference server and mcp-proxy, then python -m bench",
        "make bench-quick    # the same, fewer calls (python -m bench --quick)",
        "python -m bench e2e --calls 100     # one section, printed (also: pipeline, guard, policy, "
        "throughput, scale, soak)",
        "```",
        "",
        "Profile a section with py-spy, e.g. `py-spy record -o profile.svg --subprocesses -- python -m bench "
        "e2e --calls 300`.",
        "",
        "Section timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in results["timings_s"].items()),
        "",
    ]
    return "\n".join(out)


_PATHS = re.compile(r"(?<![\w./:])/(?:[\w.+-]+/)+([\w.+-]+)")


def sanitise(text: str) -> str:
    """No machine paths in the report: the repository becomes `.`, other paths their last part."""
    return _PATHS.sub(lambda m: m.group(1), text.replace(str(REPO) + "/", "").replace(str(REPO), "."))


def write_plots(results: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if "pipeline" in results:
        plots.guard(results["pipeline"], directory / "guard.png")
        written.append(directory / "guard.png")
    if "e2e" in results:
        plots.e2e(e2e.rows(results["e2e"]), directory / "e2e.png")
        written.append(directory / "e2e.png")
    if "throughput" in results:
        plots.throughput(results["throughput"], directory / "throughput.png")
        written.append(directory / "throughput.png")
    if "scale" in results:
        plots.scale(results["scale"], directory / "scale.png")
        written.append(directory / "scale.png")
    if "soak" in results:
        plots.soak(results["soak"], directory / "soak.png")
        written.append(directory / "soak.png")
    return written


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer calls: the whole suite in under 2 minutes"
    )
    parser.add_argument("--only", help=f"comma-separated sections ({', '.join(SECTIONS)})")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--plots", type=Path, default=REPO / "bench" / "plots")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "latest.json")
    parser.add_argument("--from-json", type=Path, help="render the report and plots of a saved run again")
    args = parser.parse_args(argv)
    sections = tuple(s.strip() for s in args.only.split(",")) if args.only else SECTIONS
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = run(sections, quick=args.quick)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str))
    write_plots(results, args.plots)
    try:
        plots_rel = os.path.relpath(args.plots, args.out.parent)
    except ValueError:
        plots_rel = str(args.plots)
    args.out.write_text(sanitise(markdown(results, plots_rel=plots_rel)))
    print(f"bench: wrote {args.out} and {args.plots}/*.png in {results['total_s']:.0f} s", file=sys.stderr)
    for name, measured, limit, met, _note in targets(results):
        status = "INFO" if met is None else "OK  " if met else "MISS"
        print(f"  {status} {name}: {measured} (target {limit})", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
