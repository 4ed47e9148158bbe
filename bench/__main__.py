"""Run benchmarks.

    python -m bench                  # the whole suite: writes BENCHMARKS.md and bench/plots/*.png
    python -m bench --quick          # the whole suite with fewer calls (under 2 minutes)
    python -m bench NAME [options]   # one benchmark, printed: guard, policy, pipeline, e2e, throughput,
                                     # scale, soak (or suite, with its own options)

Register a benchmark by adding `name: module` to BENCHMARKS; the module exposes `main(argv)`.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, str] = {
    "guard": "bench.guard_bench",
    "policy": "bench.policy_bench",
    "pipeline": "bench.pipeline_bench",
    "e2e": "bench.e2e",
    "throughput": "bench.throughput",
    "scale": "bench.scale",
    "soak": "bench.soak",
    "suite": "bench.suite",
}


def main(argv: list[str]) -> None:
    """`python -m bench [name ...] [--option value ...]`: options go to every benchmark run;
    no name runs the suite."""
    rest = list(argv)
    names: list[str] = []
    while rest and not rest[0].startswith("-"):
        names.append(rest.pop(0))
    if not names:
        names = ["suite"]
    for name in names:
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(sorted(BENCHMARKS))}")
        importlib.import_module(BENCHMARKS[name]).main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
