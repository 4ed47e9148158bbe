"""tools/list and resources/list filtering: `may_call_tool` and `may_read_relation`."""

from __future__ import annotations

import pytest
from policy_support import policy

LISTING = """
version: 1
rules:
  - id: no-hr-for-contractors
    effect: deny
    when: '"contractor" in principal.roles'
    tables: ["hr.*"]
  - id: nobody-on-friday
    effect: deny
    when: 'has(principal.claims.suspended) && principal.claims.suspended'
    tools: ["*"]
  - id: analysts
    effect: allow
    when: '"analyst" in principal.roles && sql.has_aggregate'
    tools: [query]
    tables: ["public.*", "hr.*"]
  - id: describe
    effect: allow
    when: '"analyst" in principal.roles && request.arguments.table.startsWith("public.")'
    tools: [describe_table]
  - id: broken
    effect: allow
    when: 'principal.claims.level > 3'
    tools: [admin_tool]
"""

ANALYST = {"roles": ["analyst"]}
CONTRACTOR = {"roles": ["analyst", "contractor"]}
SUSPENDED = {"roles": ["analyst"], "claims": {"suspended": True}}


@pytest.fixture(scope="module")
def listing():
    return policy(LISTING)


@pytest.mark.parametrize(("principal", "tool", "visible"), [
    (ANALYST, "query", True),              # sql-dependent part is skipped for listing
    (ANALYST, "describe_table", True),     # argument-dependent part is skipped
    ({"roles": []}, "query", False),
    (ANALYST, "unknown_tool", False),
    (SUSPENDED, "query", False),           # call-independent deny hides every tool
    (ANALYST, "admin_tool", False),        # an erroring condition never shows a tool
    ({"roles": [], "claims": {"level": 5}}, "admin_tool", True),
    (CONTRACTOR, "query", True),           # a table-scoped deny does not hide the tool
])
def test_may_call_tool(listing, principal, tool, visible):
    assert listing.may_call_tool(principal, tool) is visible


@pytest.mark.parametrize(("principal", "relation", "visible"), [
    (ANALYST, "public.orders", True),
    (ANALYST, "hr.salaries", True),
    (CONTRACTOR, "hr.salaries", False),
    (CONTRACTOR, "public.orders", True),
    (ANALYST, "pg_catalog.pg_authid", False),
    ({"roles": []}, "public.orders", False),
    (SUSPENDED, "public.orders", False),
])
def test_may_read_relation(listing, principal, relation, visible):
    assert listing.may_read_relation(principal, relation) is visible
    assert listing.may_read_relation(principal, relation, tool="query") is visible
    assert listing.may_read_relation(principal, relation, tool="describe_table") is False


def test_listing_never_allows_a_call(listing):
    from policy_support import analysis, query

    # visible, but the call without an aggregate is still refused
    assert listing.may_call_tool(ANALYST, "query")
    assert not listing.decide(ANALYST, query(), analysis("public.orders")).allowed
    assert listing.decide(ANALYST, query(), analysis("public.orders", has_aggregate=True)).allowed


def test_sql_tools(listing):
    assert listing.sql_tools == {"query"}
