"""What a call would get, end to end: analyse the SQL, decide, enforce. For `policy explain`
and `policy test`; the proxy runs the same three steps in its own pipeline.

The SQL of a call is given directly (the `query` tool's `sql` argument): mapping other tools'
arguments to SQL is the proxy's tool map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pgwarden.proxy.guard import Catalog, GuardDenied, Reason, Rewrite, enforce, parse_statement
from pgwarden.proxy.guard.model import Analysis
from pgwarden.proxy.policy.activation import Principal, RequestInfo
from pgwarden.proxy.policy.engine import Decision, PolicySet

Stage = Literal["analyse", "decide", "enforce"]


@dataclass(frozen=True, slots=True)
class Explanation:
    """The decision, the guard's verdict around it, and the SQL that would be sent."""

    effect: Literal["allow", "deny"]
    stage: Stage                     # where the outcome was settled
    reason_code: str | None
    reason: str
    decision: Decision | None        # None when the SQL was refused before the policy
    analysis: Analysis | None
    rewrite: Rewrite | None

    @property
    def masked_columns(self) -> tuple[str, ...]:
        return self.rewrite.masked_columns if self.rewrite else ()

    @property
    def row_filters(self) -> tuple[str, ...]:
        return self.rewrite.row_filters_applied if self.rewrite else ()

    @property
    def row_cap(self) -> int | None:
        if self.rewrite is not None:
            return self.rewrite.row_cap
        return self.decision.obligations.row_cap if self.decision and self.decision.allowed else None

    def to_dict(self) -> dict[str, Any]:
        decision = self.decision.to_dict() if self.decision else None
        return {
            "effect": self.effect,
            "stage": self.stage,
            "rules": decision["rules"] if decision else [],
            "reason_code": self.reason_code,
            "reason": self.reason,
            "errors": decision["errors"] if decision else [],
            "relations": list(self.analysis.relations) if self.analysis else [],
            "obligations": decision["obligations"] if decision else None,
            "masked_columns": list(self.masked_columns),
            "row_filters": list(self.row_filters),
            "row_cap": self.row_cap,
            "sql": self.rewrite.sql if self.rewrite else None,
            "policy_revision": decision["policy_revision"] if decision else None,
        }


def explain_call(policy: PolicySet, principal: Mapping[str, Any] | Principal, *, tool: str,
                 arguments: Mapping[str, Any] | None = None, sql: str | None = None,
                 method: str = "tools/call", upstream: str = "", catalog: Catalog | None = None,
                 now: datetime | None = None) -> Explanation:
    """Analyse `sql` (if any), decide, and enforce the obligations on an allowed statement."""
    args = dict(arguments or {})
    if sql is not None:
        args["sql"] = sql
    request = RequestInfo(method=method, tool=tool, arguments=args, upstream=upstream)
    statement = None
    if sql is not None:
        try:
            statement = parse_statement(sql, search_path=policy.search_path, catalog=catalog)
        except GuardDenied as denied:
            return Explanation("deny", "analyse", str(denied.code), denied.message, None, None, None)
    analysis = statement.analysis if statement is not None else None
    decision = policy.decide(principal, request, analysis, now)
    if not decision.allowed or statement is None:
        return Explanation(decision.effect, "decide",
                           None if decision.reason_code is None else str(decision.reason_code),
                           decision.reason, decision, analysis, None)
    try:
        rewrite = enforce(statement, decision.obligations, catalog)
    except GuardDenied as denied:
        code = denied.code if isinstance(denied.code, Reason) else Reason(denied.code)
        return Explanation("deny", "enforce", str(code), denied.message, decision, analysis, None)
    return Explanation("allow", "enforce", None, decision.reason, decision, analysis, rewrite)
