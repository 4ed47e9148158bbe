"""Learned shapes against the attack corpus: with them, every verdict is the full guard's.

Each SQL case of the attack corpus is sent three times, with its value constants changed each
time, through two copies of the product's gate under the case principal's example policy: one
that learns statement shapes (the default) and one that never does. The third call is the one a
learned shape serves. Both gates must give the same verdict every time: the same denial code, or
exactly the same SQL to send upstream. (The end-to-end attack suite checks the data of each
case once; this checks that reusing a shape changes nothing the suite relies on.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from attack_cases import CASES, Case
from security_harness import POLICIES, PRINCIPALS
from shape_variants import value_variant

from pgwarden.proxy.auth import principal_from_mapping
from pgwarden.proxy.guard import Catalog
from pgwarden.proxy.pipeline.gate import Allowed, CallContext, Denied, Verdict
from pgwarden.proxy.pipeline.guarded import SHAPE_CACHE_ENV, GuardedGate
from pgwarden.proxy.policy import load_policy
from pgwarden.proxy.toolmaps.presets import PRESETS

SQL_CASES = [c for c in CASES if c.sql is not None and c.method == "tools/call" and c.tool == "query"]


def variant(sql: str, k: int) -> str:
    return sql if len(sql) > 8192 else value_variant(sql, k)


@pytest.fixture(scope="module")
def catalog(admin_dsn: str) -> Catalog:
    return Catalog.from_dsn(admin_dsn)


@pytest.fixture(scope="module")
def gates(catalog: Catalog) -> Iterator[dict[tuple[str, bool], GuardedGate]]:
    """(principal key, learns shapes) -> a gate under that principal's example policy."""
    made: dict[tuple[str, bool], GuardedGate] = {}
    with pytest.MonkeyPatch.context() as patch:
        for key, setup in PRINCIPALS.items():
            policy = load_policy([POLICIES / p for p in setup.policies], catalog=catalog)
            for learns in (True, False):
                patch.setenv(SHAPE_CACHE_ENV, "on" if learns else "off")
                made[key, learns] = GuardedGate(lambda policy=policy: policy, tool_map=PRESETS["pgwarden"],
                                                catalog=catalog)
    yield made


def verdict(gate: GuardedGate, principal: Any, sql: str) -> tuple[str, str]:
    context = CallContext(principal=principal, upstream="upstream", method="tools/call")
    with gate.open(context, tool="query") as exchange:
        found: Verdict = exchange.check_tool_call("query", {"sql": sql})
        exchange.finished = True
    if isinstance(found, Denied):
        return "deny", found.reason_code
    assert isinstance(found, Allowed) and found.arguments is not None
    return "allow", str(found.arguments["sql"])


def test_learned_shapes_give_the_full_guards_verdict_on_every_attack(
    gates: dict[tuple[str, bool], GuardedGate]
) -> None:
    principals = {key: principal_from_mapping(setup.principal) for key, setup in PRINCIPALS.items()}
    differences: list[str] = []
    for case in SQL_CASES:
        sql = str(case.sql).replace("{db}", "pgwarden").replace("{canary}", "canary.txt")
        for k in (1, 2, 3):
            text = variant(sql, k)
            learned = verdict(gates[case.principal, True], principals[case.principal], text)
            full = verdict(gates[case.principal, False], principals[case.principal], text)
            if learned != full:
                differences.append(f"{case.id} #{k}: {learned} != {full}")
    assert not differences, "\n".join(differences[:20])
    learned_total = sum(g.shapes.learned for (_, learns), g in gates.items() if learns and g.shapes)
    # The corpus is hostile on purpose, but many cases are allowed and defused by rewriting:
    # their shapes must have been learned (and then served the third call), or this test
    # compared nothing.
    assert learned_total >= 40, learned_total


def _case_ids() -> list[str]:
    return [c.id for c in SQL_CASES]


def test_the_corpus_has_sql_cases_of_every_class() -> None:
    classes = {c.cls for c in SQL_CASES}
    assert {"stacked", "writes", "masked_inference", "row_filter", "row_cap", "quoting"} <= classes
    assert len(_case_ids()) >= 300
    assert all(isinstance(c, Case) for c in SQL_CASES)
