"""The gate's cost on a learned shape when other work has run between its calls.

In a tight loop the gate finds its code and data in the CPU's caches. On the proxy's path it
does not: between two calls of a client, the client, the upstream server and Postgres run and
use the same caches. This measures how much that costs, with a stand-in for them: before each
timed call, `sweep` MiB of memory are copied (not timed), which evicts what the caches held.

Measured in blocks of one sweep size, the sizes in turn and their order rotated every pass (so
drift in the host's speed hits every size alike): the whole gate call on a learned shape with
constants not sent before (masks and row filters on every table, sqlglotc), and one library step
of it alone, Postgres's own normalisation of a statement (libpg_query, C), which the gate runs on
every template fill.

    python -m bench.cache_pressure [--passes N] [--json]
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from bench.stats import fmt, summary

SWEEPS_MIB = (0, 1, 8, 32)
NORMALIZED = (
    "SELECT status, count(*) AS orders, sum(total) AS revenue FROM orders "
    "WHERE ordered_at >= '2024-03-01' GROUP BY status ORDER BY revenue DESC"
)


def _sweeper(mib: int) -> Any:
    """A function that copies `mib` MiB from one buffer to another (nothing for 0)."""
    if mib == 0:
        return lambda: None
    source, target = bytearray(mib << 20), bytearray(mib << 20)
    view = memoryview(target)

    def sweep() -> None:
        view[:] = source

    return sweep


def measure(passes: int) -> dict[str, Any]:
    """CPU µs per gate call and per normalisation, by sweep size (see the module docstring)."""
    from pglast import parser as pgparser

    from bench.guard_bench import _corpus
    from bench.pipeline_bench import PRINCIPAL, build_parts, new_gate, one_call, scratch_dir, variant
    from pgwarden.proxy.auth import principal_from_mapping
    from pgwarden.proxy.guard.functions import warm_up

    warm_up()
    corpus = _corpus()
    principal = principal_from_mapping(PRINCIPAL)
    directory = scratch_dir()
    parts = build_parts("masked", directory / "audit.jsonl")
    gate = new_gate(parts)
    request = 0
    for k in (0, 1, 2):  # the shapes, learned (second sighting) and used once
        for sql in corpus:
            request += 1
            one_call(gate, principal, variant(sql, k) if k else sql, request)
    sweeps = {mib: _sweeper(mib) for mib in SWEEPS_MIB}
    gate_cpu: dict[int, list[float]] = {mib: [] for mib in SWEEPS_MIB}
    normalize_cpu: dict[int, list[float]] = {mib: [] for mib in SWEEPS_MIB}
    fills_before = gate.template_fills
    k = 3
    for p in range(passes):  # blocks of one sweep size: with nothing copied, a real tight loop
        shift = p % len(SWEEPS_MIB)
        for mib in SWEEPS_MIB[shift:] + SWEEPS_MIB[:shift]:
            sweep = sweeps[mib]
            for sql in corpus:
                statement = variant(sql, k)
                k += 1
                request += 1
                sweep()
                c0 = time.thread_time()
                one_call(gate, principal, statement, request)
                gate_cpu[mib].append((time.thread_time() - c0) * 1e6)
            for _ in corpus:
                sweep()
                c0 = time.thread_time()
                pgparser.normalize(NORMALIZED)
                normalize_cpu[mib].append((time.thread_time() - c0) * 1e6)
    parts["audit"].close()
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    return {
        "calls": sum(len(v) for v in gate_cpu.values()),
        "learned_fills": gate.template_fills - fills_before,
        "sweeps": {
            str(mib): {"gate_cpu_us": summary(gate_cpu[mib]), "normalize_cpu_us": summary(normalize_cpu[mib])}
            for mib in SWEEPS_MIB
        },
    }


def markdown(data: dict[str, Any]) -> str:
    sweeps = data["sweeps"]
    tight_gate = sweeps["0"]["gate_cpu_us"]["median"]
    tight_norm = sweeps["0"]["normalize_cpu_us"]["median"]
    lines = [
        "| memory copied before each call | gate call, learned shape: CPU median µs | × tight loop "
        "| Postgres's normalisation alone: CPU median µs | × tight loop |",
        "|---|---:|---:|---:|---:|",
    ]
    for mib, row in sweeps.items():
        g, n = row["gate_cpu_us"]["median"], row["normalize_cpu_us"]["median"]
        label = "nothing (tight loop)" if mib == "0" else f"{mib} MiB"
        lines.append(
            f"| {label} | {fmt(g, 0)} | {fmt(g / tight_gate)} | {fmt(n, 1)} | {fmt(n / tight_norm)} |"
        )
    lines += [
        "",
        f"{data['calls']} gate calls (masked policy, sqlglotc), each a corpus statement with constants not "
        f"sent before; {data['learned_fills']} of them were served from a learned shape. The copy before "
        "each call (not timed) stands in for the client, the upstream server and Postgres, which run "
        "between two calls of a client on the proxy's path.",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    passes = int(argv[argv.index("--passes") + 1]) if "--passes" in argv else 3
    data = measure(passes)
    print(json.dumps(data) if "--json" in argv else markdown(data))


if __name__ == "__main__":
    main(sys.argv[1:])
