"""Rules that read only the principal are evaluated once per prepared principal: every later
call of that principal gets the same decision, errors included, as a first evaluation would."""

from __future__ import annotations

import pytest
from policy_support import analysis, policy, query

from pgwarden.proxy.guard.model import Reason
from pgwarden.proxy.policy import PolicySet

POLICY = """
version: 1
rules:
  - id: no-contractors
    effect: deny
    when: '"contractor" in principal.roles'
    tables: [public.orders]
  - id: analysts
    effect: allow
    when: '"analyst" in principal.roles'
    tables: [public.orders, public.customers]
    row_filters:
      public.orders.tenant_id: principal.tenant
      public.customers.tenant_id: >-
        has(principal.claims.tenants) ? principal.claims.tenants : [principal.tenant]
"""


def _decisions(p: PolicySet, principal: dict, relations: tuple[str, ...], times: int = 3) -> list:
    who = PolicySet.prepare_principal(principal)
    # a fresh Analysis every call: the decision cache (by object identity) never answers
    return [p.decide(who, query(), analysis(*relations)) for _ in range(times)]


@pytest.mark.parametrize(("principal", "relations"), [
    ({"id": "a", "roles": ["analyst"], "tenant": 4}, ("public.orders",)),
    ({"id": "b", "roles": ["analyst"], "tenant": 4, "claims": {"tenants": [1, 2]}},
     ("public.customers", "public.orders")),
    ({"id": "c", "roles": ["analyst", "contractor"], "tenant": 4}, ("public.orders",)),
    ({"id": "d", "roles": ["viewer"], "tenant": 4}, ("public.orders",)),
    ({"id": "e", "roles": ["analyst"], "tenant": None}, ("public.orders",)),  # null filter: error
    ({"id": "f", "roles": "analyst", "claims": {"tenants": [{"x": 1}]}}, ("public.customers",)),
])
def test_repeated_calls_decide_as_a_fresh_principal_does(principal: dict, relations: tuple[str, ...]) -> None:
    p = policy(POLICY)
    repeated = _decisions(p, principal, relations)
    fresh = [p.decide(dict(principal), query(), analysis(*relations)) for _ in range(3)]
    assert all(d == fresh[0] for d in repeated + fresh)


def test_each_principal_gets_its_own_values() -> None:
    p = policy(POLICY)
    four = _decisions(p, {"roles": ["analyst"], "tenant": 4}, ("public.orders",))
    five = _decisions(p, {"roles": ["analyst"], "tenant": 5}, ("public.orders",))
    assert {d.obligations.row_filters["public.orders"][0].values for d in four} == {(4,)}
    assert {d.obligations.row_filters["public.orders"][0].values for d in five} == {(5,)}


def test_a_row_filter_error_denies_every_time_with_the_same_reason() -> None:
    p = policy(POLICY)
    decisions = _decisions(p, {"roles": ["analyst"], "tenant": None}, ("public.orders",))
    assert [d.reason_code for d in decisions] == [Reason.POLICY_ERROR] * 3
    assert len({d.errors for d in decisions}) == 1
    assert "null" in decisions[0].errors[0].message


def test_a_deny_rule_error_denies_every_time() -> None:
    p = policy("""
        version: 1
        rules:
          - id: broken
            effect: deny
            when: 'principal.claims.missing == 1'
            tables: [public.orders]
          - id: allow
            effect: allow
            when: "true"
            tables: [public.orders]
    """)
    decisions = _decisions(p, {"roles": []}, ("public.orders",))
    assert [d.reason_code for d in decisions] == [Reason.POLICY_ERROR] * 3
    assert [d.rules for d in decisions] == [("broken",)] * 3
