"""Every error in evaluation is a deny (or, in an allow rule, a rule that does not allow) —
recorded with the rule id, and never with the activation's data."""

from __future__ import annotations

import threading

import pytest
from policy_support import analysis, policy, query

from pgwarden.proxy.guard.model import Reason
from pgwarden.proxy.policy import PolicySet
from pgwarden.proxy.policy.rules import Rule, compile_condition

SECRET = "s3cr3t-claim-value"


def one_rule(effect: str, when: str, *, restricts: bool = False, backup: bool = False) -> PolicySet:
    extra = "    row_cap: 10\n" if restricts else ""
    text = f"""
version: 1
rules:
  - id: under-test
    effect: {effect}
    when: '{when}'
    tools: [query]
    tables: [public.orders]
{extra}"""
    if effect == "deny" or backup:
        text += """
  - id: backup-allow
    effect: allow
    when: "true"
    tools: [query]
    tables: [public.orders]
"""
    return policy(text)


PRINCIPAL = {"id": "p", "roles": [], "tenant": 3, "claims": {"token": SECRET}}

# (label, expression): each one errors at run time for PRINCIPAL, though it loads.
ERRORS = [
    ("missing map key", "principal.claims.level > 2", "missing key"),
    ("wrong type", 'principal.tenant > "a"', "no matching overload"),
    ("division by zero", "1 / size(principal.roles) > 0", "division by zero"),
    ("index out of range", 'principal.roles[0] == "x"', "invalid argument"),
    ("bad glob at run time", 'relation_matches("public.x", principal.claims.token)',
     "invalid relation pattern"),
    ("non-boolean result", "principal.claims.token", "did not evaluate to a boolean"),
]


@pytest.mark.parametrize(("label", "when", "summary"), ERRORS)
def test_error_in_deny_rule_denies(label, when, summary):
    decision = one_rule("deny", when).decide(PRINCIPAL, query(), analysis("public.orders"))
    assert decision.effect == "deny", label
    assert decision.reason_code is Reason.POLICY_ERROR
    assert decision.rules == ("under-test",)
    assert [e.rule_id for e in decision.errors] == ["under-test"]
    assert summary in decision.errors[0].message
    assert SECRET not in repr(decision)


@pytest.mark.parametrize(("label", "when", "summary"), ERRORS)
def test_error_in_allow_rule_does_not_allow(label, when, summary):
    decision = one_rule("allow", when).decide(PRINCIPAL, query(), analysis("public.orders"))
    assert decision.effect == "deny", label
    assert decision.reason_code is Reason.POLICY_ERROR
    assert decision.errors[0].rule_id == "under-test"
    assert summary in decision.errors[0].message
    assert SECRET not in repr(decision)


def test_error_in_allow_rule_is_recorded_when_another_rule_allows():
    decision = one_rule("allow", "principal.claims.level > 2", backup=True).decide(
        PRINCIPAL, query(), analysis("public.orders"))
    assert decision.allowed
    assert decision.rules == ("backup-allow",)
    assert [e.rule_id for e in decision.errors] == ["under-test"]


def test_error_in_allow_rule_with_restrictions_denies_even_if_another_allows():
    # the failing rule carries a row cap that might have applied: do not drop it silently
    decision = one_rule("allow", "principal.claims.level > 2", restricts=True, backup=True).decide(
        PRINCIPAL, query(), analysis("public.orders"))
    assert decision.effect == "deny"
    assert decision.reason_code is Reason.POLICY_ERROR
    assert decision.rules == ("under-test",)


def test_has_guard_prevents_the_error():
    decision = one_rule("allow", "has(principal.claims.level) && principal.claims.level > 2",
                        backup=True).decide(PRINCIPAL, query(), analysis("public.orders"))
    assert decision.allowed and decision.errors == ()


def test_unknown_function_at_run_time_denies():
    # the loader refuses unknown functions; the engine must still fail closed if one gets through
    deny = Rule(id="deny-unknown", effect="deny", condition=compile_condition("no_such_fn(principal.id)"))
    allow = Rule(id="allow-all", effect="allow", condition=compile_condition("true"))
    decision = PolicySet([deny, allow]).decide(PRINCIPAL, query(), None)
    assert decision.effect == "deny" and decision.reason_code is Reason.POLICY_ERROR
    assert decision.errors[0].message == "unknown function"
    allow_unknown = Rule(id="allow-unknown", effect="allow", condition=compile_condition("no_such_fn(1)"))
    assert PolicySet([allow_unknown]).decide(PRINCIPAL, query(), None).effect == "deny"


def test_unknown_variable_at_run_time_denies():
    rule = Rule(id="allow-undeclared", effect="allow", condition=compile_condition("undeclared == 1"))
    decision = PolicySet([rule]).decide(PRINCIPAL, query(), None)
    assert decision.effect == "deny" and decision.errors[0].rule_id == "allow-undeclared"


@pytest.mark.parametrize(("label", "value", "principal"), [
    ("null tenant", "principal.tenant", {"id": "p"}),
    ("missing claim", "principal.claims.region", {"id": "p"}),
    ("a map where a value belongs", "principal.claims.region", {"claims": {"region": {"eu": True}}}),
    ("list of maps", "principal.claims.region", {"claims": {"region": [{"eu": True}]}}),
    ("list holding null", "principal.claims.region", {"claims": {"region": [1, None]}}),
])
def test_row_filter_that_cannot_be_computed_denies(label, value, principal):
    p = policy(f"""
        version: 1
        rules:
          - id: filtered
            effect: allow
            when: "true"
            tables: [public.orders]
            row_filters:
              public.orders.tenant_id: '{value}'
    """)
    decision = p.decide(principal, query(), analysis("public.orders"))
    assert decision.effect == "deny", label
    assert decision.reason_code is Reason.POLICY_ERROR
    assert decision.errors and decision.errors[0].rule_id == "filtered"


def test_row_filter_of_the_wrong_shape_is_refused_at_load():
    from pgwarden.proxy.policy import PolicyError

    with pytest.raises(PolicyError, match="row filter on a sample principal"):
        policy("""
            version: 1
            rules:
              - id: filtered
                effect: allow
                when: "true"
                tables: [public.orders]
                row_filters:
                  public.orders.tenant_id: '[principal.roles]'
        """)


def test_row_filter_values_are_scalars_or_lists():
    p = policy("""
        version: 1
        rules:
          - id: filtered
            effect: allow
            when: "true"
            tables: [public.orders]
            row_filters:
              public.orders.tenant_id: >
                has(principal.claims.tenants) ? principal.claims.tenants : [principal.tenant]
    """)
    one = p.decide({"tenant": 4}, query(), analysis("public.orders"))
    many = p.decide({"claims": {"tenants": [1, 2]}}, query(), analysis("public.orders"))
    none = p.decide({"claims": {"tenants": []}}, query(), analysis("public.orders"))
    assert one.obligations.row_filters["public.orders"][0].values == (4,)
    assert many.obligations.row_filters["public.orders"][0].values == (1, 2)
    assert none.obligations.row_filters["public.orders"][0].values == ()   # the guard reads: no rows


def test_an_engine_failure_is_a_deny(monkeypatch):
    p = one_rule("allow", "true")

    def broken(*args, **kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(p, "_decide", broken)
    decision = p.decide(PRINCIPAL, query(), analysis("public.orders"))
    assert decision.effect == "deny" and decision.reason_code is Reason.POLICY_ERROR
    assert SECRET not in repr(decision)


def test_celpy_does_not_log_activation_data(caplog):
    with caplog.at_level("DEBUG"):
        one_rule("deny", "principal.claims.level > 2").decide(PRINCIPAL, query(), analysis("public.orders"))
    assert SECRET not in caplog.text


def test_decisions_are_correct_under_concurrent_threads():
    """cel-python's own compiled runner returned wrong answers under threads (FACTS.md)."""
    p = policy("""
        version: 1
        rules:
          - id: tenant-only
            effect: deny
            when: 'principal.tenant != 1 && any_relation_matches(sql.relations, "public.secrets")'
            tables: ["public.*"]
          - id: reader
            effect: allow
            when: '"reader" in principal.roles'
            tables: ["public.*"]
            row_filters:
              public.orders.tenant_id: principal.tenant
    """)
    wrong: list[str] = []

    def worker(tenant: int) -> None:
        principal = {"roles": ["reader"], "tenant": tenant}
        for _ in range(300):
            secret = p.decide(principal, query(), analysis("public.secrets"))
            orders = p.decide(principal, query(), analysis("public.orders"))
            if secret.allowed != (tenant == 1):
                wrong.append(f"tenant {tenant}: secrets {secret.effect}")
            if orders.obligations.row_filters["public.orders"][0].values != (tenant,):
                wrong.append(f"tenant {tenant}: filter {orders.obligations.row_filters}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
