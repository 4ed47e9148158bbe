"""Guard cost per call, as the proxy pays it: analyse + decide + rewrite + re-validate + audit.

One `GuardedGate` (the product's gate) with a real policy, catalog, telemetry and audit log;
for every query of the analytics corpus one exchange is opened, the tools/call checked, a
small result filtered and the audit record written, exactly as `pgwarden proxy` does for one
call (minus the MCP hops). Two policies (`simple`: allow list and row cap; `masked`: masks
and row filters on every table), with sqlglot's compiled build (sqlglotc) and without it.

The audit log is written to a tmpfs file when one exists (so the number is the CPU cost;
fsync is measured separately as `fsync_ms` on the disk the suite writes its logs to).

    python -m bench pipeline [--rounds N] [--json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.guard_bench import _corpus, _SourceOnlyFinder
from bench.stats import fmt, summary

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "bench" / "policies"
PRINCIPAL = {"id": "bench-analyst", "roles": ["analyst"], "tenant": 1}
CATALOG = {
    "public.tenants": ("id", "name", "plan", "created_at"),
    "public.customers": ("id", "tenant_id", "name", "email", "phone", "national_id", "country", "created_at"),
    "public.products": ("id", "sku", "name", "category", "price", "attributes"),
    "public.orders": ("id", "tenant_id", "customer_id", "status", "ordered_at", "total"),
    "public.order_items": ("id", "order_id", "product_id", "quantity", "unit_price"),
    "public.payments": (
        "id",
        "order_id",
        "tenant_id",
        "card_brand",
        "card_number",
        "amount",
        "paid_at",
        "status",
    ),
    "public.support_tickets": (
        "id",
        "tenant_id",
        "customer_id",
        "subject",
        "body",
        "status",
        "priority",
        "opened_at",
        "closed_at",
    ),
    "public.secrets": ("id", "tenant_id", "service", "api_key", "created_at"),
    "hr.employees": ("id", "name", "email", "department", "title", "hired_at"),
    "hr.salaries": ("employee_id", "salary", "currency", "effective_from"),
}
RESULT = {
    "content": [{"type": "text", "text": "| id | name |\n| --- | --- |\n| 1 | a |\n(1 row)"}],
    "structuredContent": {
        "columns": [{"name": "id", "type": "int4"}, {"name": "name", "type": "text"}],
        "rows": [[1, "a"]],
        "row_count": 1,
        "truncated": False,
    },
}


def scratch_dir() -> Path:
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="pgwarden-bench-", dir=shm if shm.is_dir() else None))


def fsync_ms(directory: Path, count: int = 200) -> dict[str, Any]:
    """What one durable append (write + fsync) costs on `directory`'s disk, in ms."""
    path = directory / f"fsync-probe-{os.getpid()}"
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            os.write(fd, b"x" * 400 + b"\n")
            start = time.perf_counter()
            os.fsync(fd)
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return summary(samples)


def build_parts(policy: str, audit_path: Path) -> dict[str, Any]:
    """What a gate is built from (loaded once): policy, catalog, telemetry, audit log."""
    from pgwarden.proxy.audit.log import AuditLog
    from pgwarden.proxy.guard.catalog import Catalog
    from pgwarden.proxy.policy import load_policy
    from pgwarden.proxy.telemetry import Telemetry
    from pgwarden.proxy.telemetry.config import TelemetryConfig
    from pgwarden.proxy.toolmaps.presets import PRESETS

    catalog = Catalog.from_mapping(CATALOG)
    policy_set = load_policy([POLICIES / f"{policy}.yaml"], catalog=catalog)
    return {
        "policy": lambda: policy_set,
        "tool_map": PRESETS["pgwarden"],
        "catalog": catalog,
        "telemetry": Telemetry.from_config(TelemetryConfig()),
        "audit": AuditLog(audit_path, strict=True),
    }


def new_gate(parts: dict[str, Any]) -> Any:
    """A fresh `GuardedGate` over `parts`: nothing of earlier statements cached in it."""
    from pgwarden.proxy.pipeline.guarded import GuardedGate

    return GuardedGate(
        parts["policy"],
        tool_map=parts["tool_map"],
        catalog=parts["catalog"],
        telemetry=parts["telemetry"],
        audit=parts["audit"],
    )


def build_gate(policy: str, audit_path: Path) -> Any:
    return new_gate(build_parts(policy, audit_path))


def one_call(gate: Any, principal: Any, sql: str, request_id: int) -> bool:
    """One tools/call through the gate, synchronously (the audit append runs on this thread)."""
    from pgwarden.proxy.pipeline.gate import CallContext, Denied, Outcome

    context = CallContext(
        principal=principal,
        upstream="upstream",
        method="tools/call",
        request_id=request_id,
        protocol_version="2025-11-25",
    )
    with gate.open(context, tool="query") as exchange:
        verdict = exchange.check_tool_call("query", {"sql": sql})
        outcome = Outcome() if isinstance(verdict, Denied) else Outcome(result=json.loads(json.dumps(RESULT)))
        exchange.finished = True
        if not isinstance(verdict, Denied):
            exchange._filtered(outcome.result)
        exchange.record(is_error=isinstance(verdict, Denied))
        exchange.write_audit()
    return not isinstance(verdict, Denied)


def measure(rounds: int) -> dict[str, Any]:
    """Per-call timings (µs) of the whole gate for each policy, in this interpreter.

    `cold`: every round on a fresh gate, so each statement's text is new to it (the gate's
    statement cache cannot help; module-level caches such as secure-view templates stay warm,
    as they do in a running proxy). `repeated`: the same statements again on the same gate.
    """
    import sqlglot.tokens

    from pgwarden.proxy.auth import principal_from_mapping
    from pgwarden.proxy.guard.functions import warm_up

    warm_up()
    corpus = _corpus()
    principal = principal_from_mapping(PRINCIPAL)
    results: dict[str, Any] = {"sqlglotc": bool(sqlglot.tokens.SQLGLOTC_INSTALLED), "queries": len(corpus)}
    directory = scratch_dir()
    for policy in ("simple", "masked"):
        parts = build_parts(policy, directory / f"audit-{policy}.jsonl")
        gate = new_gate(parts)
        allowed = sum(one_call(gate, principal, sql, i) for i, sql in enumerate(corpus))  # warm up
        samples: dict[str, tuple[list[float], list[float]]] = {"cold": ([], []), "repeated": ([], [])}
        n = 0
        for _ in range(rounds):
            for mode in ("cold", "repeated"):
                if mode == "cold":
                    gate = new_gate(parts)
                wall, cpu = samples[mode]
                for sql in corpus:
                    n += 1
                    c0, t0 = time.thread_time(), time.perf_counter()
                    one_call(gate, principal, sql, n)
                    wall.append((time.perf_counter() - t0) * 1e6)
                    cpu.append((time.thread_time() - c0) * 1e6)
        parts["audit"].close()
        results[policy] = {
            "allowed": allowed,
            "wall_us": summary(samples["cold"][0]),
            "cpu_us": summary(samples["cold"][1]),
            "repeated_wall_us": summary(samples["repeated"][0]),
            "repeated_cpu_us": summary(samples["repeated"][1]),
        }
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    return results


def run(rounds: int) -> dict[str, Any]:
    """Both builds (compiled and pure-Python sqlglot), each in a fresh interpreter."""
    rows = []
    for extra in ([], ["--pure"]):
        out = subprocess.run(
            [sys.executable, "-m", "bench.pipeline_bench", "--json", "--rounds", str(rounds), *extra],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"rounds": rounds, "builds": rows, "fsync_ms": fsync_ms(Path(tempfile.gettempdir()))}


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "| sqlglot build | policy | statements | calls allowed / corpus | median µs | p99 µs "
        "| CPU median µs | CPU p99 µs |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in data["builds"]:
        build = "compiled (sqlglotc)" if row["sqlglotc"] else "pure Python"
        for policy in ("simple", "masked"):
            r = row[policy]
            for mode, prefix in (("new to the gate", ""), ("repeated (cached parse)", "repeated_")):
                wall, cpu = r[f"{prefix}wall_us"], r[f"{prefix}cpu_us"]
                lines.append(
                    f"| {build} | {policy} | {mode} | {r['allowed']} / {row['queries']} "
                    f"| {fmt(wall['median'], 0)} | {fmt(wall['p99'], 0)} | {fmt(cpu['median'], 0)} "
                    f"| {fmt(cpu['p99'], 0)} |"
                )
    f = data["fsync_ms"]
    lines.append("")
    lines.append(
        f"Durable audit append on this machine's disk (write + fsync, which a strict audit log does "
        f"once per call): median {fmt(f['median'])} ms, p99 {fmt(f['p99'])} ms — not included above "
        "(the log is on tmpfs here)."
    )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 10
    if "--json" in argv:
        if "--pure" in argv:
            sys.meta_path.insert(0, _SourceOnlyFinder)  # type: ignore[arg-type]
        print(json.dumps(measure(rounds)))
        return
    print(markdown(run(rounds)))


if __name__ == "__main__":
    main(sys.argv[1:])
