"""Run benchmarks: `python -m bench` runs all, `python -m bench guard` runs one.

Register a benchmark by adding `name: module` to BENCHMARKS; the module exposes `main(argv)`.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, str] = {
    "guard": "bench.guard_bench",
    "policy": "bench.policy_bench",
}


def main(argv: list[str]) -> None:
    """`python -m bench [name ...] [--option value ...]`: options go to every benchmark run."""
    rest = list(argv)
    names: list[str] = []
    while rest and not rest[0].startswith("-"):
        names.append(rest.pop(0))
    for name in names or sorted(BENCHMARKS):
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(sorted(BENCHMARKS))}")
        importlib.import_module(BENCHMARKS[name]).main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
