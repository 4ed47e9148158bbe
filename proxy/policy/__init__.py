"""The policy engine: CEL rules in versioned YAML files decide every call.

    policy = load_policy([Path("policies/default.yaml")], catalog=catalog)
    decision = policy.decide(principal, RequestInfo("tools/call", "query", {"sql": sql}),
                             statement.analysis)
    if decision.allowed:
        rewrite = enforce(statement, decision.obligations, catalog)

`PolicyWatcher` keeps the current `PolicySet` and swaps it on a valid edit of the files.
"""

from pgwarden.proxy.policy.activation import Principal, RequestInfo
from pgwarden.proxy.policy.engine import Decision, PolicySet, RuleError
from pgwarden.proxy.policy.errors import PolicyError, Problem
from pgwarden.proxy.policy.loader import load_policy, load_policy_texts, policy_files

__all__ = [
    "Decision",
    "PolicyError",
    "PolicySet",
    "Principal",
    "Problem",
    "RequestInfo",
    "RuleError",
    "load_policy",
    "load_policy_texts",
    "policy_files",
]
