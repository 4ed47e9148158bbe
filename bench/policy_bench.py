"""Decision cost of the policy engine: activation build + rule evaluation + obligation merge.

    python -m bench policy [--calls 3000]      (or: python bench/policy_bench.py)

For policies of 10, 100 and 1,000 rules, it times `PolicySet.decide` for one tools/call with a
three-table statement, from the raw principal mapping (what a stateless call costs) and from
a principal prepared once per session. Rules are indexed by tool and by the relations they
name, so the number of CEL evaluations depends on the rules relevant to the statement, not
on the size of the policy. A last row times the unindexed worst case: every rule targets the
tool and names no table, so every condition is evaluated.

Prints median and p99 in microseconds. Target: median under 200 µs with 100 rules.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable

from pgwarden.proxy.guard.model import Analysis
from pgwarden.proxy.policy import PolicySet, RequestInfo, load_policy_texts

PRINCIPAL = {"id": "u-42", "roles": ["role1", "role2", "role3"], "tenant": 7,
             "claims": {"team": "sales", "region": "eu", "scopes": ["read", "write"]}}
REQUEST = RequestInfo(method="tools/call", tool="query",
                      arguments={"sql": "SELECT ... FROM t1 JOIN t2 ... JOIN t3 ..."}, upstream="pg")
STATEMENT = Analysis(
    kind="select", relations=("public.t1", "public.t2", "public.t3"),
    columns={"public.t1": ("c1", "c2"), "public.t2": ("c1",), "public.t3": ("c3",)},
    star_relations=(), functions=("count", "sum"), limit=100, has_limit=True, set_operations=(),
    has_aggregate=True, has_window=False, has_subquery=False, has_cte=False, has_recursive_cte=False,
    has_lateral=False,
)


def indexed_policy(n: int) -> str:
    """N rules over N tables: deny rules on other schemas, allow rules with masks, filters, caps."""
    lines = ["version: 1", "rules:"]
    for i in range(n):
        if i % 10 == 0:
            lines += [f"  - id: deny-{i}", "    effect: deny",
                      "    when: '\"contractor\" in principal.roles'",
                      f"    tables: [\"restricted{i}.*\"]"]
            continue
        lines += [f"  - id: allow-{i}", "    effect: allow",
                  f"    when: '\"role{i % 20}\" in principal.roles && sql.kind == \"select\"'",
                  "    tools: [query]", f"    tables: [public.t{i}, public.t{i + 1}]",
                  f"    row_cap: {1000 + i}"]
        if i % 3 == 0:
            lines += ["    masks:", f"      public.t{i}.c1: email",
                      f"      public.t{i}.c2: {{kind: partial, keep_last: 4}}"]
        if i % 5 == 1:
            lines += ["    row_filters:", f"      public.t{i}.tenant_id: principal.tenant"]
    return "\n".join(lines) + "\n"


def unindexed_policy(n: int) -> str:
    """N rules that all target every tool and name no table: nothing to pre-filter."""
    lines = ["version: 1", "rules:"]
    for i in range(n):
        lines += [f"  - id: any-{i}", f"    effect: {'deny' if i % 10 == 0 else 'allow'}",
                  f"    when: '\"role{i % 20 + 100}\" in principal.roles'", "    tools: [\"*\"]"]
    return "\n".join(lines) + "\n"


def measure(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    for _ in range(min(200, calls)):
        fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    args, _ = parser.parse_known_args(argv)   # `python -m bench` passes options to every benchmark

    print(f"{'policy':<34} {'rules':>6} {'evaluated':>9} {'median µs':>10} {'p99 µs':>9}")
    for n in (10, 100, 1000):
        start = time.perf_counter()
        policy = load_policy_texts([(f"bench-{n}.yaml", indexed_policy(n))])
        load_ms = (time.perf_counter() - start) * 1000
        decision = policy.decide(PRINCIPAL, REQUEST, STATEMENT)
        assert decision.allowed, decision
        evaluated = len(policy._candidates(policy._targeting("tools/call", "query"), STATEMENT))
        median, p99 = measure(functools.partial(policy.decide, PRINCIPAL, REQUEST, STATEMENT), args.calls)
        print(f"{'indexed, raw principal':<34} {n:>6} {evaluated:>9} {median:>10.1f} {p99:>9.1f}"
              f"   (load {load_ms:.0f} ms)")
        prepared = PolicySet.prepare_principal(PRINCIPAL)
        median, p99 = measure(functools.partial(policy.decide, prepared, REQUEST, STATEMENT), args.calls)
        print(f"{'indexed, prepared principal':<34} {n:>6} {evaluated:>9} {median:>10.1f} {p99:>9.1f}")
    for n in (10, 100):
        policy = load_policy_texts([(f"unindexed-{n}.yaml", unindexed_policy(n))])
        decide = functools.partial(policy.decide, PRINCIPAL, REQUEST, None)
        median, p99 = measure(decide, max(300, args.calls // 5))
        print(f"{'unindexed worst case':<34} {n:>6} {n:>9} {median:>10.1f} {p99:>9.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
