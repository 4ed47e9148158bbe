"""Combining rules: deny wins, no allow is a deny, grants are unions, obligations the strictest."""

from __future__ import annotations

import pytest
from policy_support import analysis, policy, query

from pgwarden.proxy.guard.model import Mask, Reason, RowFilter
from pgwarden.proxy.policy.obligations import stricter_mask

TWO_TEAMS = """
version: 1
rules:
  - id: no-hr
    effect: deny
    when: "true"
    tables: ["hr.*"]
    reason: HR is off limits
  - id: sales
    effect: allow
    when: '"sales" in principal.roles'
    tools: [query]
    tables: [public.orders, public.customers]
    masks:
      public.customers.email: email
      public.products.name: {kind: partial, keep_last: 6}
    row_filters:
      public.orders.tenant_id: principal.tenant
    row_cap: 500
  - id: catalog
    effect: allow
    when: '"catalog" in principal.roles'
    tools: [query]
    tables: ["public.prod*"]
    masks:
      public.customers.email: "null"
      public.products.name: {kind: partial, keep_last: 2}
    row_filters:
      public.orders.region: principal.claims.region
    row_cap: 100
    functions: [regexp_replace]
  - id: everyone-hr-summary
    effect: allow
    when: "true"
    tools: [query]
    tables: [hr.headcount]
  - id: catalog-tools
    effect: allow
    when: "true"
    tools: [list_tables]
"""

BOTH = {"id": "u", "roles": ["sales", "catalog"], "tenant": 7, "claims": {"region": "eu"}}
SALES = {"id": "s", "roles": ["sales"], "tenant": 7}
CATALOG = {"id": "c", "roles": ["catalog"], "claims": {"region": "eu"}}


@pytest.fixture(scope="module")
def two_teams():
    return policy(TWO_TEAMS)


@pytest.mark.parametrize(("name", "principal", "relations", "effect", "code", "rules"), [
    ("allow by one rule", SALES, ["public.orders"], "allow", None, ("sales",)),
    ("explicit deny wins over a matching allow", BOTH, ["hr.headcount"], "deny", Reason.POLICY_DENY,
     ("no-hr",)),
    ("deny wins even when joined with allowed tables", BOTH, ["public.orders", "hr.salaries"], "deny",
     Reason.POLICY_DENY, ("no-hr",)),
    ("no matching allow is a deny", {"roles": ["nobody"]}, ["public.orders"], "deny",
     Reason.POLICY_NO_MATCH, ()),
    ("a relation no matching rule grants", SALES, ["public.orders", "public.products"], "deny",
     Reason.RELATION_NOT_ALLOWED, ("sales",)),
    ("grants of two matching rules combine (union)", BOTH, ["public.orders", "public.products"], "allow",
     None, ("sales", "catalog")),
    ("a table no rule mentions", BOTH, ["public.secrets"], "deny", Reason.POLICY_NO_MATCH, ()),
    ("a statement without tables: every matching allow of the tool applies", SALES, [], "allow", None,
     ("sales", "everyone-hr-summary")),
    ("no tables, and only the unconditional rule matches", {"roles": []}, [], "allow", None,
     ("everyone-hr-summary",)),
])
def test_combining(two_teams, name, principal, relations, effect, code, rules):
    decision = two_teams.decide(principal, query(), analysis(*relations))
    assert (decision.effect, decision.reason_code, decision.rules) == (effect, code, rules), name
    if effect == "deny":
        assert decision.obligations.allowed_relations == frozenset()


def test_deny_reason_is_the_rules_reason(two_teams):
    decision = two_teams.decide(BOTH, query(), analysis("hr.salaries"))
    assert decision.reason == "HR is off limits"


def test_unknown_tool_is_not_allowed(two_teams):
    decision = two_teams.decide(BOTH, query("drop_database"), None)
    assert decision.reason_code is Reason.TOOL_NOT_ALLOWED


def test_obligations_merge_to_the_most_restrictive(two_teams):
    statement = analysis("public.orders", "public.products", "public.customers")
    decision = two_teams.decide(BOTH, query(), statement)
    ob = decision.obligations
    assert decision.allowed
    assert ob.allowed_relations == {"public.orders", "public.products", "public.customers"}
    assert ob.row_cap == 100                                                 # smallest cap
    assert ob.masks["public.customers"]["email"] == Mask("null")            # null beats email
    assert ob.masks["public.products"]["name"] == Mask("partial", (("keep_last", 2),))  # fewer chars
    assert set(ob.row_filters["public.orders"]) == {RowFilter("tenant_id", (7,)),      # AND of filters
                                                   RowFilter("region", ("eu",))}
    assert ob.extra_functions == {"regexp_replace"}


def test_a_mask_from_one_rule_applies_to_a_table_another_rule_grants(two_teams):
    # products are granted by `catalog` only; `sales` masks products.name too and matches.
    decision = two_teams.decide(BOTH, query(), analysis("public.products"))
    assert decision.allowed
    assert decision.obligations.masks["public.products"]["name"].param("keep_last") == 2
    assert set(decision.rules) == {"sales", "catalog"}
    only_catalog = two_teams.decide(CATALOG, query(), analysis("public.products"))
    assert only_catalog.obligations.masks["public.products"]["name"].param("keep_last") == 2


def test_obligations_only_name_relations_of_the_statement(two_teams):
    decision = two_teams.decide(SALES, query(), analysis("public.orders"))
    assert set(decision.obligations.masks) == set()
    assert set(decision.obligations.row_filters) == {"public.orders"}


def test_calls_without_sql_ignore_table_rules(two_teams):
    decision = two_teams.decide(SALES, query("list_tables", schema="public"), None)
    assert decision.allowed and decision.rules == ("catalog-tools",)
    # the SQL rules never allow a call that brought no statement
    assert two_teams.decide(SALES, query(), None).reason_code is Reason.POLICY_NO_MATCH


def test_deny_rules_scoped_to_tables_do_not_block_other_statements(two_teams):
    assert two_teams.decide(SALES, query(), analysis("public.orders")).allowed
    assert two_teams.decide(SALES, query(), analysis()).allowed


@pytest.mark.parametrize(("a", "b", "expected"), [
    (Mask("email"), Mask("email"), Mask("email")),
    (Mask("email"), Mask("null"), Mask("null")),
    (Mask("fixed", (("text", "x"),)), Mask("hash"), Mask("fixed", (("text", "x"),))),
    (Mask("hash"), Mask("partial"), Mask("hash")),
    (Mask("partial", (("keep_last", 4),)), Mask("partial", (("keep_last", 2),)),
     Mask("partial", (("keep_last", 2),))),
    (Mask("partial"), Mask("partial", (("keep_last", 6),)), Mask("partial")),   # default keep_last 4
    (Mask("email"), Mask("partial"), Mask("null")),           # cannot rank: reveal nothing
    (Mask("fixed", (("text", "a"),)), Mask("fixed", (("text", "b"),)), Mask("null")),
    (Mask("sql", (("expression", "left(value, 1)"),)), Mask("email"), Mask("null")),
])
def test_stricter_mask(a, b, expected):
    assert stricter_mask(a, b) == expected
    assert stricter_mask(b, a) == expected


def test_rules_are_evaluated_against_request_arguments():
    p = policy("""
        version: 1
        rules:
          - id: describe-public
            effect: allow
            when: 'has(request.arguments.table) && request.arguments.table.startsWith("public.")'
            tools: [describe_table]
    """)
    assert p.decide({}, query("describe_table", table="public.orders"), None).allowed
    assert not p.decide({}, query("describe_table", table="hr.salaries"), None).allowed
    assert not p.decide({}, query("describe_table"), None).allowed


def test_resources_and_prompts_are_targeted_by_method():
    p = policy("""
        version: 1
        rules:
          - id: prompts
            effect: allow
            when: "true"
            methods: [prompts/get]
            tools: ["summarize_*"]
          - id: schemas
            effect: allow
            when: "true"
            methods: [resources/read]
            tools: ["postgres://*/public.*"]
    """)
    from pgwarden.proxy.policy import RequestInfo

    assert p.decide({}, RequestInfo("prompts/get", "summarize_table"), None).allowed
    assert not p.decide({}, RequestInfo("prompts/get", "question_to_sql"), None).allowed
    assert not p.decide({}, RequestInfo("tools/call", "summarize_table"), None).allowed
    assert p.decide({}, RequestInfo("resources/read", "postgres://db/public.orders"), None).allowed
    assert not p.decide({}, RequestInfo("resources/read", "postgres://db/hr.salaries"), None).allowed
