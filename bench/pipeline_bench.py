"""Guard cost per call, as the proxy pays it: analyse + decide + rewrite + re-validate + audit.

One `GuardedGate` (the product's gate) with a real policy, catalog, telemetry and audit log;
for every query of the analytics corpus one exchange is opened, the tools/call checked, a
small result filtered and the audit record written, exactly as `pgwarden proxy` does for one
call (minus the MCP hops). Two policies (`simple`: allow list and row cap; `masked`: masks
and row filters on every table), with sqlglot's compiled build (sqlglotc) and without it.

The gate learns statement shapes (proxy/guard/shapes.py), so the cost of a call depends on
what the gate has seen. Each round runs the corpus several times on a fresh gate, and each
pass is one mode:

- `new`: every corpus statement as written, its shape never seen (the full path);
- `learning`: each statement again with other constants (`variant`): the second sighting of
  its shape, the full path plus learning the template (paid once per shape and obligations);
- `learned`: `LEARNED_PASSES` more passes, each with constants not sent before (the steady
  state of an agent repeating a query with other values);
- `off`: the same sequence of statements on a gate built with `PGWARDEN_SHAPE_CACHE=off`,
  interleaved call by call with the gate that learns, timed from the third pass on.

Every mode also counts how many calls were served from a learned shape (time-independent
evidence of coverage), and every call's verdict is counted, so a variant that changed what
the policy decides would show.

The audit log is written to a tmpfs file when one exists (so the number is the CPU cost;
fsync is measured separately as `fsync_ms` on the disk the suite writes its logs to).

    python -m bench pipeline [--rounds N] [--json]
"""

from __future__ import annotations

import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench import cache_pressure
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
    samples, cpu = [], []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            os.write(fd, b"x" * 400 + b"\n")
            start, start_cpu = time.perf_counter(), time.thread_time()
            os.fsync(fd)
            samples.append((time.perf_counter() - start) * 1000)
            cpu.append((time.thread_time() - start_cpu) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return {**summary(samples), "cpu_median": statistics.median(cpu)}


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


SHAPE_CACHE_ENV = "PGWARDEN_SHAPE_CACHE"  # read by GuardedGate when it is built
LEARNED_PASSES = 2  # passes per round over the corpus on learned shapes (each with new constants)
MODES = (
    ("new", "new shape"),
    ("learning", "learning (2nd sighting, other constants)"),
    ("learned", "learned shape, other constants"),
    ("off", "learning off, other constants"),
)


def new_gate(parts: dict[str, Any], *, learn: bool = True) -> Any:
    """A fresh `GuardedGate` over `parts`: nothing of earlier statements cached in it.
    `learn=False` builds it as `PGWARDEN_SHAPE_CACHE=off` does in the proxy's environment."""
    from pgwarden.proxy.pipeline.guarded import GuardedGate

    previous = os.environ.get(SHAPE_CACHE_ENV)
    if learn:
        os.environ.pop(SHAPE_CACHE_ENV, None)
    else:
        os.environ[SHAPE_CACHE_ENV] = "off"
    try:
        gate = GuardedGate(
            parts["policy"],
            tool_map=parts["tool_map"],
            catalog=parts["catalog"],
            telemetry=parts["telemetry"],
            audit=parts["audit"],
        )
    finally:
        if previous is None:
            os.environ.pop(SHAPE_CACHE_ENV, None)
        else:
            os.environ[SHAPE_CACHE_ENV] = previous
    if (gate.shapes is not None) != learn:
        raise RuntimeError(f"{SHAPE_CACHE_ENV} did not switch learned shapes {'on' if learn else 'off'}")
    return gate


# -- statements with other constants --------------------------------------------------------------

_DATE = re.compile(r"'(\d{4}-\d{2}-\d{2})(.*)'\Z", re.S)
# A quoted string right after a comparison operator (not the end of `->>` or `@>`), LIKE, or
# inside an IN list: a value a column is compared with.
_COMPARED = re.compile(
    r"(?:(?<![-+*/<>=~!@#%^&|`?])(?:<>|!=|<=|>=|=|<|>)|\bI?LIKE|\bIN\s*\((?:[^()]*,)?)\s*\Z", re.I
)


def _other_value(sql: str, constant: Any, k: int) -> str | None:
    """Another value of the same kind for `constant` (the k-th), or None to keep it.

    Integers: + k; decimals: + k/1000. Dates ('YYYY-MM-DD…'): k days later. Other quoted
    strings only where a column is compared with them (`= 'x'`, `LIKE 'x'`, `IN ('x', …)`):
    another text. Every other string (a label, a JSON key, a date unit, a format, a separator)
    keeps its text, as an agent asking the same question of other values would keep it.
    """
    text = constant.text
    if constant.kind in ("integer", "bigint"):
        return str(int(text) + k)
    if constant.kind == "decimal":  # a small step: fractions often have a range (percentile_cont)
        return str(Decimal(text) + Decimal(k) / 1000)
    if constant.kind != "string":
        return None
    date = _DATE.match(text)
    if date:
        try:
            day = datetime.date.fromisoformat(date.group(1)) + datetime.timedelta(days=k)
        except ValueError:
            return None
        return f"'{day.isoformat()}{date.group(2)}'"
    if _COMPARED.search(sql[: constant.start]):
        return f"{text[:-1]}-{k}'"
    return None


def variant(sql: str, k: int) -> str:
    """`sql` with other constants (the k-th variant; k = 0 is `sql` itself).

    Only constants the shape cache may swap (`tokens.Constant.pinned` false) and that Postgres's
    normalisation treats as values are changed (not a column position or a type modifier, which
    are structure), each to another value of the same kind (`_other_value`), so the statement
    stays valid and asks the same question of other values. A statement without such constants
    comes back unchanged.
    """
    from pglast import parser as pgparser

    from pgwarden.proxy.guard.tokens import scan_sql

    scanned = scan_sql(sql) if k else None
    if scanned is None:
        return sql
    normalized = pgparser.normalize(sql)
    changes: dict[int, str] = {}
    for index, constant in enumerate(scanned.constants):
        other = None if constant.pinned else _other_value(sql, constant, k)
        if other is None or other == constant.text:
            continue
        candidate = _splice(sql, scanned.constants, {index: other})
        rescanned = scan_sql(candidate)
        if (
            rescanned is not None
            and rescanned.key == scanned.key
            and rescanned.constants[index].kind == constant.kind
            and pgparser.normalize(candidate) == normalized
        ):
            changes[index] = other
    return _splice(sql, scanned.constants, changes)


def _splice(sql: str, constants: Sequence[Any], changes: dict[int, str]) -> str:
    out, position = [], 0
    for index in sorted(changes):
        out.append(sql[position : constants[index].start])
        out.append(changes[index])
        position = constants[index].end
    out.append(sql[position:])
    return "".join(out)


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


def _pass_sql(corpus: list[str], k: int) -> list[str]:
    return [variant(sql, k) for sql in corpus]


def measure(rounds: int, *, learned_passes: int = LEARNED_PASSES) -> dict[str, Any]:
    """Per-call timings (µs) of the whole gate for each policy and mode (see the module
    docstring), in this interpreter.

    Each round: a fresh gate that learns and a fresh gate with learning off, given the same
    statements call by call; pass 0 is the corpus as written, pass 1 its first variant, passes
    2.. further variants. Module-level caches (secure-view templates) stay warm, as they do in
    a running proxy. Variants are numbered across rounds, so no statement text repeats.
    """
    import sqlglot.tokens

    from pgwarden.proxy.auth import principal_from_mapping
    from pgwarden.proxy.guard.functions import warm_up

    warm_up()
    corpus = _corpus()
    principal = principal_from_mapping(PRINCIPAL)
    passes = 2 + learned_passes
    variants = [_pass_sql(corpus, k) for k in range(1 + rounds * (passes - 1))]
    varied = sum(a != b for a, b in zip(corpus, variants[1], strict=True))
    results: dict[str, Any] = {
        "sqlglotc": bool(sqlglot.tokens.SQLGLOTC_INSTALLED),
        "queries": len(corpus),
        "varied": varied,
        "rounds": rounds,
        "learned_passes": learned_passes,
    }
    directory = scratch_dir()
    for policy in ("simple", "masked"):
        parts = build_parts(policy, directory / f"audit-{policy}.jsonl")
        warm = new_gate(parts)
        for i, sql in enumerate(corpus):  # warm up imports and module-level caches
            one_call(warm, principal, sql, i)
            one_call(warm, principal, variants[1][i], i)
        wall: dict[str, list[float]] = {mode: [] for mode, _ in MODES}
        cpu: dict[str, list[float]] = {mode: [] for mode, _ in MODES}
        varied_cpu: dict[str, list[float]] = {mode: [] for mode, _ in MODES}  # other constants only
        allowed = dict.fromkeys(wall, 0)
        hits = dict.fromkeys(wall, 0)
        learned_templates = refused = 0
        n = 0
        for r in range(rounds):
            gates = {"on": new_gate(parts), "off": new_gate(parts, learn=False)}
            for p in range(passes):
                statements = corpus if p == 0 else variants[1 + r * (passes - 1) + p - 1]
                on_mode = "new" if p == 0 else "learning" if p == 1 else "learned"
                for sql, original in zip(statements, corpus, strict=True):
                    for name in ("on", "off") if r % 2 == 0 else ("off", "on"):
                        mode = on_mode if name == "on" else "off" if p >= 2 else None
                        before = gates[name].template_fills
                        n += 1
                        c0, t0 = time.thread_time(), time.perf_counter()
                        ok = one_call(gates[name], principal, sql, n)
                        t1, c1 = time.perf_counter(), time.thread_time()
                        if mode is None:
                            continue
                        wall[mode].append((t1 - t0) * 1e6)
                        cpu[mode].append((c1 - c0) * 1e6)
                        allowed[mode] += ok
                        hits[mode] += gates[name].template_fills - before
                        if sql != original:
                            varied_cpu[mode].append((c1 - c0) * 1e6)
                if p == 1:
                    learned_templates += gates["on"].shapes.learned
                    refused += gates["on"].shapes.refused
        parts["audit"].close()
        results[policy] = {
            "allowed": allowed["new"] // rounds,
            "learned_per_round": learned_templates / rounds,
            "refused_per_round": refused / rounds,
            "modes": {
                mode: {
                    "calls": len(wall[mode]),
                    "allowed": allowed[mode],
                    "shape_hits": hits[mode],
                    "wall_us": summary(wall[mode]),
                    "cpu_us": summary(cpu[mode]),
                    "varied_cpu_us": summary(varied_cpu[mode]),
                }
                for mode, _ in MODES
            },
        }
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    return results


def shape_coverage(statements: Sequence[str], policy: str = "simple") -> dict[str, Any]:
    """How many of `statements`, sent in order to one fresh gate, were served from a learned
    shape, and from which call on (in-process; no timing)."""
    from pgwarden.proxy.auth import principal_from_mapping

    principal = principal_from_mapping(PRINCIPAL)
    directory = scratch_dir()
    parts = build_parts(policy, directory / "coverage.jsonl")
    try:
        gate = new_gate(parts)
        served: list[bool] = []
        allowed = 0
        for i, sql in enumerate(statements):
            before = gate.template_fills
            allowed += one_call(gate, principal, sql, i)
            served.append(gate.template_fills > before)
    finally:
        parts["audit"].close()
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
    return {
        "calls": len(served),
        "allowed": allowed,
        "on_learned_shape": sum(served),
        "first_hit": served.index(True) if any(served) else None,
        "served": served,
    }


def mode_row(data: dict[str, Any], sqlglotc: bool, policy: str, mode: str) -> dict[str, Any] | None:
    """One build's, policy's and mode's numbers (`measure`'s `modes` entry), if measured."""
    build = next((r for r in data.get("builds", []) if r["sqlglotc"] == sqlglotc), None)
    if build is None or policy not in build:
        return None
    found: dict[str, Any] | None = build[policy]["modes"].get(mode)
    return found


def _fresh_json(module: str, *args: str) -> Any:
    """What `python -m module --json args` prints last, run in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-m", module, "--json", *args], check=True, capture_output=True, text=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(rounds: int) -> dict[str, Any]:
    """Both builds (compiled and pure-Python sqlglot), each in a fresh interpreter; then the gate
    under cache pressure (`bench.cache_pressure`)."""
    return {
        "rounds": rounds,
        "builds": [
            _fresh_json("bench.pipeline_bench", "--rounds", str(rounds), *extra) for extra in ([], ["--pure"])
        ],
        "fsync_ms": fsync_ms(Path(tempfile.gettempdir())),
        "cache_pressure": _fresh_json("bench.cache_pressure", "--passes", str(max(2, rounds // 2))),
    }


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "| sqlglot build | policy | statements | calls | allowed | on a learned shape | median µs | p99 µs "
        "| CPU median µs | CPU p99 µs |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data["builds"]:
        build = "compiled (sqlglotc)" if row["sqlglotc"] else "pure Python"
        for policy in ("simple", "masked"):
            for mode, label in MODES:
                r = row[policy]["modes"][mode]
                wall, cpu = r["wall_us"], r["cpu_us"]
                lines.append(
                    f"| {build} | {policy} | {label} | {r['calls']} | {r['allowed']} | {r['shape_hits']} "
                    f"| {fmt(wall['median'], 0)} | {fmt(wall['p99'], 0)} | {fmt(cpu['median'], 0)} "
                    f"| {fmt(cpu['p99'], 0)} |"
                )
    first = data["builds"][0]
    learned = ", ".join(
        f"{policy} {fmt(row[policy]['learned_per_round'], 0)} learned / "
        f"{fmt(row[policy]['refused_per_round'], 0)} refused"
        for row in data["builds"][:1]
        for policy in ("simple", "masked")
    )
    lines += [
        "",
        f"Per round, on a fresh gate: the {first['queries']} corpus statements as written (`new shape`), "
        f"then with other constants once (`learning`) and {first['learned_passes']} more times, each time "
        "with constants not sent before (`learned shape`); a gate with learning off "
        f"(`{SHAPE_CACHE_ENV}=off`) gets the same statements, interleaved call by call, and is timed from "
        f"the third pass on. {first['varied']} of the {first['queries']} statements have a constant that "
        "can take another value (numbers; dates, shifted by days; strings a column is compared with); the "
        "others have none (no constant at all, or only labels, JSON keys, date units, formats, type "
        "modifiers or row counts, which keep their text), so the gate sees them again verbatim. "
        "`on a learned shape` counts the calls the gate served from a learned template (evidence "
        "independent of time); shapes learned per round (templates / shapes it declined to template): "
        f"{learned}. `allowed` counts allowed calls: "
        "the corpus holds statements the policies deny (HR data and secrets).",
    ]
    lines += [
        "",
        f"Only the calls of the {first['varied']} statements whose constants changed (CPU median µs; the "
        "others are sent verbatim again, which with learning off hits the gate's exact-text cache: parse "
        "skipped, rewrite not):",
        "",
        "| sqlglot build | policy | learned shape, other constants | learning off, other constants |",
        "|---|---|---:|---:|",
    ]
    for row in data["builds"]:
        build = "compiled (sqlglotc)" if row["sqlglotc"] else "pure Python"
        for policy in ("simple", "masked"):
            modes = row[policy]["modes"]
            lines.append(
                f"| {build} | {policy} | {fmt(modes['learned']['varied_cpu_us']['median'], 0)} "
                f"| {fmt(modes['off']['varied_cpu_us']['median'], 0)} |"
            )
    f = data["fsync_ms"]
    lines.append("")
    lines.append(
        f"Durable audit append on this machine's disk (write + fsync, which a strict audit log does "
        f"for each call's record): median {fmt(f['median'])} ms, p99 {fmt(f['p99'])} ms — not included "
        "above (the log is on tmpfs here)."
    )
    if "cache_pressure" in data:
        lines += [
            "",
            "The gate on a learned shape after other work (`python -m bench.cache_pressure`): on the proxy's "
            "path the client, the server and Postgres run between two calls and use the same CPU caches; "
            "here a copy of other memory before each call stands in for them.",
            "",
            cache_pressure.markdown(data["cache_pressure"]),
        ]
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
