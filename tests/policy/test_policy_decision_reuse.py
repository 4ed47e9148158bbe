"""A decision is reused only when nothing it depends on can change between calls.

The engine keeps the decision for (prepared principal, analysis object, method, tool, upstream)
when no candidate rule reads `request` or `now`. These tests pin when it is reused and when a
rule must be evaluated again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from policy_support import analysis, policy, query

from pgwarden.proxy.policy import PolicySet

PRINCIPAL_ONLY = """
version: 1
rules:
  - id: analysts
    effect: allow
    when: '"analyst" in principal.roles && !sql.has_aggregate'
    tools: [query]
    tables: [public.orders]
    row_filters:
      public.orders.tenant_id: "[principal.tenant]"
"""

READS_ARGUMENTS = """
version: 1
rules:
  - id: only-short-sql
    effect: allow
    when: 'size(request.arguments.sql) < 10'
    tools: [query]
    tables: [public.orders]
"""

READS_NOW = """
version: 1
rules:
  - id: until
    effect: allow
    when: 'now < timestamp(principal.claims.until)'
    tools: [query]
    tables: [public.orders]
"""


def test_a_decision_on_principal_and_analysis_is_reused_for_the_same_objects() -> None:
    rules = policy(PRINCIPAL_ONLY)
    who = PolicySet.prepare_principal({"id": "a", "roles": ["analyst"], "tenant": 1})
    shape = analysis("public.orders")
    first = rules.decide(who, query(), shape)
    assert first.allowed and first.obligations.row_filters["public.orders"][0].values == (1,)
    assert rules.decide(who, query(), shape) is first
    # Another principal object, another analysis object: decided again, and correctly.
    other = PolicySet.prepare_principal({"id": "b", "roles": ["analyst"], "tenant": 2})
    second = rules.decide(other, query(), shape)
    assert second is not first and second.obligations.row_filters["public.orders"][0].values == (2,)
    aggregate = rules.decide(who, query(), analysis("public.orders", has_aggregate=True))
    assert not aggregate.allowed


def test_a_rule_reading_the_request_is_evaluated_every_call() -> None:
    rules = policy(READS_ARGUMENTS)
    who = PolicySet.prepare_principal({"id": "a"})
    shape = analysis("public.orders")
    assert rules.decide(who, query(sql="SELECT 1"), shape).allowed
    assert not rules.decide(who, query(sql="SELECT 1 -- and much more"), shape).allowed


def test_a_rule_reading_the_time_is_evaluated_every_call() -> None:
    rules = policy(READS_NOW)
    soon = (datetime.now(UTC) + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    who = PolicySet.prepare_principal({"id": "a", "claims": {"until": soon}})
    shape = analysis("public.orders")
    assert rules.decide(who, query(), shape).allowed
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert not rules.decide(who, query(), shape, now=later).allowed
    assert rules.decide(who, query(), shape).allowed


def test_a_row_filter_reading_the_time_keeps_the_decision_from_being_reused() -> None:
    rules = policy("""
        version: 1
        rules:
          - id: by-time
            effect: allow
            when: "true"
            tools: [query]
            tables: [public.orders]
            row_filters:
              public.orders.tenant_id: "now > timestamp('2000-01-01T00:00:00Z') ? [1] : [2]"
        """)
    assert "now" in rules.rules[0].variables and "principal" not in rules.rules[0].variables
    who = PolicySet.prepare_principal({"id": "a"})
    shape = analysis("public.orders")
    first = rules.decide(who, query(), shape)
    assert first.allowed and rules.decide(who, query(), shape) is not first
    assert "now" not in policy(PRINCIPAL_ONLY).rules[0].variables
