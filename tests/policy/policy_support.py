"""Helpers for the policy tests: hand-built analyses and policies from YAML text."""

from __future__ import annotations

import textwrap
from typing import Any

from pgwarden.proxy.guard.model import Analysis
from pgwarden.proxy.policy import PolicySet, RequestInfo, load_policy_texts


def analysis(*relations: str, **overrides: Any) -> Analysis:
    fields: dict[str, Any] = {
        "kind": "select", "relations": tuple(sorted(relations)), "columns": {}, "star_relations": (),
        "functions": (), "limit": None, "has_limit": False, "set_operations": (), "has_aggregate": False,
        "has_window": False, "has_subquery": False, "has_cte": False, "has_recursive_cte": False,
        "has_lateral": False,
    }
    fields.update(overrides)
    return Analysis(**fields)


def policy(text: str, *, name: str = "policy.yaml", catalog: Any = None) -> PolicySet:
    return load_policy_texts([(name, textwrap.dedent(text))], catalog=catalog)


def query(tool: str = "query", **arguments: Any) -> RequestInfo:
    return RequestInfo(method="tools/call", tool=tool, arguments=arguments or {"sql": "-"})
