"""Guard cost per query over the analytics corpus: parse + analyse + rewrite + re-validate.

Reports median and p99 per call for two policies (permissive with a row cap; masks + row
filters on the PII tables), with sqlglot's compiled build (sqlglotc, active automatically when
installed: its .so modules shadow sqlglot's .py files) and without it (a subprocess that imports
sqlglot from source only). Run: `python -m bench guard` (add `--rounds N`).
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "guard" / "fixtures" / "analytics.sql"


class _SourceOnlyFinder:
    """Import sqlglot from its .py files even when sqlglotc's compiled modules sit beside them."""

    @classmethod
    def find_spec(cls, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname.split(".")[0] != "sqlglot":
            return None
        loader = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)
        for entry in path if path is not None else sys.path:
            spec = importlib.machinery.FileFinder(entry or ".", loader).find_spec(fullname, target)
            if spec is not None:
                return spec
        return None


def _corpus() -> list[str]:
    out, current = [], []
    for line in [*CORPUS.read_text().splitlines(), ""]:
        if line.strip() and not line.startswith("-- "):
            current.append(line)
        elif not line.strip() and current:
            out.append("\n".join(current))
            current = []
    return out


def _policies() -> dict[str, Any]:
    from pgwarden.proxy.guard import Catalog, Mask, Obligations, RowFilter

    relations = frozenset({
        "public.tenants", "public.customers", "public.products", "public.orders", "public.order_items",
        "public.payments", "public.support_tickets", "hr.employees", "hr.salaries",
    })
    catalog = Catalog.from_mapping({
        "public.customers": ("id", "tenant_id", "name", "email", "phone", "national_id", "country",
                             "created_at"),
        "public.payments": ("id", "order_id", "tenant_id", "card_brand", "card_number", "amount", "paid_at",
                            "status"),
        "public.orders": ("id", "tenant_id", "customer_id", "status", "ordered_at", "total"),
    })
    masked = Obligations(
        allowed_relations=relations,
        masks={"public.customers": {"email": Mask("email"), "national_id": Mask("partial"),
                                    "phone": Mask("null")},
               "public.payments": {"card_number": Mask("partial")}},
        row_filters={r: (RowFilter("tenant_id", (1,)),)
                     for r in ("public.customers", "public.payments", "public.orders")},
        row_cap=1000,
    )
    return {"permissive": (Obligations(allowed_relations=relations, row_cap=1000), catalog),
            "masked": (masked, catalog)}


def measure(rounds: int) -> dict[str, Any]:
    """Per-call timings in microseconds for each policy (run in the current interpreter)."""
    import sqlglot.tokens

    from pgwarden.proxy.guard import enforce, parse_statement
    from pgwarden.proxy.guard.functions import warm_up

    warm_up()
    corpus = _corpus()
    results: dict[str, Any] = {"sqlglotc": bool(sqlglot.tokens.SQLGLOTC_INSTALLED), "queries": len(corpus)}
    for name, (obligations, catalog) in _policies().items():
        total, parse, rewrite, cpu = [], [], [], []
        for sql in corpus:  # warm caches once per query
            enforce(parse_statement(sql), obligations, catalog)
        for _ in range(rounds):
            for sql in corpus:
                c0 = time.thread_time()
                t0 = time.perf_counter()
                stmt = parse_statement(sql)
                t1 = time.perf_counter()
                enforce(stmt, obligations, catalog)
                t2 = time.perf_counter()
                cpu.append((time.thread_time() - c0) * 1e6)
                parse.append((t1 - t0) * 1e6)
                rewrite.append((t2 - t1) * 1e6)
                total.append((t2 - t0) * 1e6)
        total.sort()
        cpu.sort()
        results[name] = {
            "cpu_median": statistics.median(cpu),
            "cpu_p99": cpu[int(len(cpu) * 0.99) - 1],
            "median": statistics.median(total),
            "p99": total[int(len(total) * 0.99) - 1],
            "parse_median": statistics.median(parse),
            "enforce_median": statistics.median(rewrite),
        }
    return results


def main(argv: list[str]) -> None:
    rounds = 20
    if "--rounds" in argv:
        rounds = int(argv[argv.index("--rounds") + 1])
    if "--json" in argv:  # child mode: measure here, print JSON
        if "--pure" in argv:
            sys.meta_path.insert(0, _SourceOnlyFinder)  # type: ignore[arg-type]
        print(json.dumps(measure(rounds)))
        return
    rows = []
    for extra in ([], ["--pure"]):
        out = subprocess.run(
            [sys.executable, "-m", "bench.guard_bench", "--json", "--rounds", str(rounds), *extra],
            check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\nGuard cost per query: {rows[0]['queries']} analytics queries x {rounds} rounds "
          "(parse + analyse + rewrite + re-validate)\n")
    print("| sqlglot build | policy | median µs | p99 µs | CPU median µs | CPU p99 µs "
          "| parse_statement median µs | enforce median µs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        build = "compiled (sqlglotc)" if row["sqlglotc"] else "pure Python"
        for policy in ("permissive", "masked"):
            r = row[policy]
            print(f"| {build} | {policy} | {r['median']:.0f} | {r['p99']:.0f} | {r['cpu_median']:.0f} | "
                  f"{r['cpu_p99']:.0f} | {r['parse_median']:.0f} | {r['enforce_median']:.0f} |")
    print(f"\n(load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          "wall-clock numbers include waiting for the CPU, CPU numbers do not)")


if __name__ == "__main__":
    main(sys.argv[1:])
