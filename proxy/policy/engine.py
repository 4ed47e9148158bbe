"""The policy decision: which rules match a call, and what the call must then obey.

`PolicySet.decide` is the one entry point for calls; `may_call_tool` and `may_read_relation`
answer the listing questions (tools/list, resources/list) without a statement.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from celpy.evaluation import Activation

from pgwarden.proxy.guard.model import Analysis, Obligations, Reason, RowFilter
from pgwarden.proxy.policy import activation as act
from pgwarden.proxy.policy import obligations as merge_obligations
from pgwarden.proxy.policy.activation import Principal, RequestInfo
from pgwarden.proxy.policy.cel_runtime import CelEvaluationError, from_cel_scalar
from pgwarden.proxy.policy.rules import RowFilterRule, Rule

_CACHE_LIMIT = 4096
_DECISIONS_KEPT = 512
_PER_CALL_VARIABLES = frozenset({"request", "now"})  # a rule reading these is decided every call
_PRINCIPAL_ONLY = frozenset({"principal"})  # rules reading no more share one activation per principal
_MAX_NAMED = 5


@dataclass(frozen=True, slots=True)
class RuleError:
    """A rule that failed to evaluate. `message` is a fixed summary, never evaluation data."""

    rule_id: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one call. `reason_code` is None exactly when the call is allowed."""

    effect: Literal["allow", "deny"]
    rules: tuple[str, ...]
    reason_code: Reason | None
    reason: str
    obligations: Obligations = field(default_factory=Obligations)
    errors: tuple[RuleError, ...] = ()
    relations: tuple[str, ...] = ()
    revision: str = ""

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary for audit records and `policy explain --json`."""
        ob = self.obligations
        return {
            "effect": self.effect,
            "rules": list(self.rules),
            "reason_code": None if self.reason_code is None else str(self.reason_code),
            "reason": self.reason,
            "errors": [{"rule": e.rule_id, "message": e.message} for e in self.errors],
            "relations": list(self.relations),
            "policy_revision": self.revision,
            "obligations": {
                "allowed_relations": sorted(ob.allowed_relations),
                "masks": {f"{rel}.{col}": {"kind": m.kind, **dict(m.params)}
                          for rel, cols in sorted(ob.masks.items()) for col, m in sorted(cols.items())},
                "row_filters": {rel: [{"column": f.column, "values": list(f.values)} for f in fs]
                                for rel, fs in sorted(ob.row_filters.items())},
                "row_cap": ob.row_cap,
                "extra_functions": sorted(ob.extra_functions),
            },
        }


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_NAMED])
    return shown + (f" and {len(items) - _MAX_NAMED} more" if len(items) > _MAX_NAMED else "")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _BoundedCache(dict[Any, Any]):
    """A dict that empties itself when full: keys come from callers (tool and table names)."""

    def put(self, key: Any, value: Any) -> Any:
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        self[key] = value
        return value


class PolicySet:
    """A loaded, validated set of rules. Immutable; replace it to change policy.

    `decide` and the listing methods are safe to call from several threads: CEL programs are
    compiled to reentrant functions (see `cel_runtime`), and the caches are guarded by a lock.
    """

    def __init__(self, rules: Sequence[Rule], *, revision: str = "", files: Sequence[str] = (),
                 search_path: Sequence[str] = ("public",)) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.revision = revision
        self.files: tuple[str, ...] = tuple(files)
        self.search_path: tuple[str, ...] = tuple(search_path)
        self._lock = threading.Lock()
        self._targets = _BoundedCache()     # (method, tool) -> rule indices, file order
        self._mentions = _BoundedCache()    # relation -> indices of rules that mention it
        self._grants = _BoundedCache()      # relation -> indices of rules whose tables match it
        self._activations = _BoundedCache()  # (principal id, variables) -> (principal, _Evaluations)
        self._unscoped = frozenset(i for i, r in enumerate(self.rules) if not r.mentions)
        # Decisions that depend only on the principal and the statement's analysis (no rule
        # involved reads `request` or `now`), by object identity of both: a gate hands the same
        # prepared principal and, for a learned statement shape, the same Analysis every call.
        self._decisions: OrderedDict[tuple[Any, ...], tuple[Principal, Analysis | None, Decision]]
        self._decisions = OrderedDict()
        self.sql_tools: frozenset[str] = frozenset(
            p for r in self.rules if r.effect == "allow" and r.tables and "tools/call" in r.methods
            for p in r.tools)
        """Tool names and patterns that allow rules granting tables cover (for the proxy's tool map)."""

    def __repr__(self) -> str:
        return f"PolicySet({len(self.rules)} rules, revision={self.revision[:12]})"

    @staticmethod
    def prepare_principal(principal: Mapping[str, Any] | Principal) -> Principal:
        """Convert a principal once (per session or token) to skip that work on every call."""
        return principal if isinstance(principal, Principal) else Principal(principal)

    # ---- indexes ----------------------------------------------------------------------------

    def _targeting(self, method: str, tool: str) -> tuple[int, ...]:
        key = (method, tool)
        found = self._targets.get(key)
        if found is None:
            found = self._targets.put(key, tuple(
                i for i, r in enumerate(self.rules) if r.targets(method, tool)))
        return found  # type: ignore[no-any-return]

    def _mentioning(self, relation: str) -> frozenset[int]:
        found = self._mentions.get(relation)
        if found is None:
            found = self._mentions.put(relation, frozenset(
                i for i, r in enumerate(self.rules) if r.mentions and r.mentions_relation(relation)))
        return found  # type: ignore[no-any-return]

    def _granting(self, relation: str) -> frozenset[int]:
        found = self._grants.get(relation)
        if found is None:
            found = self._grants.put(relation, frozenset(
                i for i, r in enumerate(self.rules) if r.tables and r.grants(relation)))
        return found  # type: ignore[no-any-return]

    # ---- decisions --------------------------------------------------------------------------

    def decide(self, principal: Mapping[str, Any] | Principal, request: RequestInfo,
               analysis: Analysis | None = None, now: datetime | None = None) -> Decision:
        """Decide one call. Never raises for a policy problem: every error is a deny."""
        who = self.prepare_principal(principal)
        with self._lock:
            try:
                return self._decide(who, request, analysis, now)
            except Exception:  # a bug must not allow: deny, without details
                return self._deny(Reason.POLICY_ERROR, "the policy engine failed; denied", (), (),
                                  analysis)

    # Precedence, in this order (the only place it is decided):
    #  1. Candidates: rules whose `methods` and `tools` cover the request. No allow rule among
    #     them: the tool is not allowed. A rule that grants tables or carries SQL obligations only applies
    #     to calls with a statement. With a statement, a rule that names relations (tables,
    #     masks, row filters) applies only when one of them matches a relation the statement
    #     reads; for a statement that reads no relation, allow rules apply and deny rules
    #     scoped to tables do not.
    #  2. Deny rules, in file order: the first whose condition is true denies. A deny rule
    #     whose condition fails to evaluate ALSO denies (unlike agentgateway, where a failing
    #     deny is skipped): an error can never turn into an allow.
    #  3. Allow rules: every one whose condition is true matches. One that fails to evaluate
    #     does not match and is recorded; if it carries restrictions (masks, row filters, row
    #     cap) the call is denied, since those restrictions might have applied.
    #  4. No matching allow rule: deny.
    #  5. Every relation the statement reads must be granted by the `tables` of at least one
    #     matching allow rule (the union of their grants; no single rule has to cover all).
    #  6. Obligations: those of every matching allow rule, merged to the most restrictive (see
    #     `obligations`): a mask from any matching rule applies to a table another rule
    #     granted. A row-filter value that fails to evaluate denies.
    def _decide(self, principal: Principal, request: RequestInfo, analysis: Analysis | None,
                now: datetime | None) -> Decision:
        targeting = self._targeting(request.method, request.tool)
        if not any(self.rules[i].effect == "allow" for i in targeting):
            return self._deny(Reason.TOOL_NOT_ALLOWED,
                              f"{_what(request)} is not allowed by policy", (), (), analysis)
        candidates = self._candidates(targeting, analysis)
        variables: frozenset[str] = frozenset().union(*(self.rules[i].variables for i in candidates))
        if now is None and not variables & _PER_CALL_VARIABLES:
            key = (id(principal), id(analysis), request.method, request.tool, request.upstream)
            known = self._decisions.get(key)
            if known is not None and known[0] is principal and known[1] is analysis:
                self._decisions.move_to_end(key)
                return known[2]
            decision = self._evaluate(candidates, principal, request, analysis, now, variables)
            self._decisions[key] = (principal, analysis, decision)
            if len(self._decisions) > _DECISIONS_KEPT:
                self._decisions.popitem(last=False)
            return decision
        return self._evaluate(candidates, principal, request, analysis, now, variables)

    def _evaluate(self, candidates: list[int], principal: Principal, request: RequestInfo,
                  analysis: Analysis | None, now: datetime | None, variables: frozenset[str]) -> Decision:
        relations = analysis.relations if analysis is not None else ()
        evaluations = self._evaluations(principal, request, analysis, now, variables)
        errors: list[RuleError] = []

        for index in candidates:
            rule = self.rules[index]
            if rule.effect != "deny":
                continue
            try:
                hit = evaluations.condition(index, rule)
            except CelEvaluationError as exc:
                errors.append(RuleError(rule.id, exc.summary))
                return self._deny(Reason.POLICY_ERROR,
                                  f"deny rule {rule.id!r} could not be evaluated ({exc.summary}); denied",
                                  (rule.id,), errors, analysis)
            if hit:
                return self._deny(Reason.POLICY_DENY, rule.reason or f"denied by policy rule {rule.id!r}",
                                  (rule.id,), errors, analysis)

        matched: list[int] = []
        failed_restricting: list[str] = []
        for index in candidates:
            rule = self.rules[index]
            if rule.effect != "allow":
                continue
            try:
                if evaluations.condition(index, rule):
                    matched.append(index)
            except CelEvaluationError as exc:
                errors.append(RuleError(rule.id, exc.summary))
                if rule.restricts:
                    failed_restricting.append(rule.id)

        if failed_restricting:
            first = next(e for e in errors if e.rule_id == failed_restricting[0])
            return self._deny(Reason.POLICY_ERROR,
                              f"allow rule {first.rule_id!r} could not be evaluated ({first.message}) and "
                              "carries restrictions that might apply; denied",
                              tuple(failed_restricting), errors, analysis)
        if not matched:
            if errors:
                return self._deny(Reason.POLICY_ERROR,
                                  f"no policy rule allows this call ({len(errors)} rule(s) failed to "
                                  "evaluate)", (), errors, analysis)
            return self._deny(Reason.POLICY_NO_MATCH, f"no policy rule allows {_what(request)}"
                              + (f" on {_names(relations)}" if relations else ""), (), errors, analysis)

        matched_ids = tuple(self.rules[i].id for i in matched)
        if analysis is not None:
            matched_set = set(matched)
            missing = [r for r in relations if not (self._granting(r) & matched_set)]
            if missing:
                return self._deny(Reason.RELATION_NOT_ALLOWED,
                                  f"{'relation' if len(missing) == 1 else 'relations'} {_names(missing)} "
                                  "not allowed by policy", matched_ids, errors, analysis)

        return self._allow(matched, evaluations, analysis, errors)

    def _evaluations(self, principal: Principal, request: RequestInfo, analysis: Analysis | None,
                     now: datetime | None, variables: frozenset[str]) -> _Evaluations:
        """The call's activation (`activation.build`), shared by every call of the principal
        when the candidate rules read nothing but the principal.

        Such an activation holds only the principal's CEL values (converted once per
        principal), so it is the same for every call of that principal; the compiled programs
        never write to it (see `cel_runtime`) and CEL has no side effects, so each program's
        value on it is the same every time too, and is kept with it.
        """
        if not variables <= _PRINCIPAL_ONLY:
            return _Evaluations(act.build(principal, request, analysis, now, variables), None)
        key = (id(principal), variables)
        known = self._activations.get(key)
        if known is not None and known[0] is principal:
            return known[1]  # type: ignore[no-any-return]
        evaluations = _Evaluations(act.build(principal, request, analysis, now, variables), {})
        self._activations.put(key, (principal, evaluations))
        return evaluations

    def _candidates(self, targeting: tuple[int, ...], analysis: Analysis | None) -> list[int]:
        if analysis is None:
            return [i for i in targeting if not self.rules[i].is_sql]
        if not analysis.relations:  # reads no table: allow rules apply, table-scoped denies do not
            return [i for i in targeting if not (self.rules[i].effect == "deny" and self.rules[i].mentions)]
        relevant = set(self._unscoped)
        for relation in analysis.relations:
            relevant |= self._mentioning(relation)
        return [i for i in targeting if i in relevant]

    def _allow(self, matched: list[int], evaluations: _Evaluations, analysis: Analysis | None,
               errors: list[RuleError]) -> Decision:
        relations = analysis.relations if analysis is not None else ()
        in_statement = set(relations)
        filters: list[tuple[str, RowFilter]] = []
        masks = []
        for index in matched:
            rule = self.rules[index]
            if rule.masks:
                masks.append({rel: cols for rel, cols in rule.masks.items() if rel in in_statement})
            for position, row_filter in enumerate(rule.row_filters):
                if row_filter.relation not in in_statement:
                    continue
                try:
                    values = evaluations.row_filter(index, position, row_filter)
                except CelEvaluationError as exc:
                    summary = exc.summary
                    errors.append(RuleError(rule.id, f"row filter {row_filter.relation}.{row_filter.column}: "
                                                     f"{summary}"))
                    return self._deny(Reason.POLICY_ERROR,
                                      f"row filter of rule {rule.id!r} could not be evaluated; denied",
                                      (rule.id,), errors, analysis)
                filters.append((row_filter.relation, RowFilter(row_filter.column, values)))
        obligations = merge_obligations.merge(
            relations, masks, filters, (self.rules[i].row_cap for i in matched),
            (self.rules[i].functions for i in matched))
        ids = tuple(self.rules[i].id for i in matched)
        return Decision("allow", ids, None, f"allowed by {_names(ids)}", obligations,
                        tuple(errors), tuple(relations), self.revision)

    def _deny(self, code: Reason, reason: str, rules: Sequence[str], errors: Sequence[RuleError],
              analysis: Analysis | None) -> Decision:
        return Decision("deny", tuple(rules), code, reason, Obligations(), tuple(errors),
                        analysis.relations if analysis is not None else (), self.revision)

    # ---- listing ----------------------------------------------------------------------------

    def may_call_tool(self, principal: Mapping[str, Any] | Principal, tool: str, *,
                      method: str = "tools/call", upstream: str = "", now: datetime | None = None) -> bool:
        """Could some call of `tool` be allowed? For filtering tools/list (and prompts/list).

        Evaluated without a statement or arguments: an allow rule counts when the parts of its
        condition that do not read `sql` or `request.arguments` are true; a deny rule hides the
        tool only when it names no relations and its whole condition is call-independent and
        true (or fails). Errors never show a tool. The call itself is still decided in full.
        """
        who = self.prepare_principal(principal)
        request = RequestInfo(method=method, tool=tool, arguments={}, upstream=upstream)
        with self._lock:
            try:
                activation = act.build(who, request, None, now)
                return self._may(self._targeting(method, tool), activation, relation=None)
            except Exception:
                return False

    def may_read_relation(self, principal: Mapping[str, Any] | Principal, relation: str, *,
                          tool: str | None = None, upstream: str = "", now: datetime | None = None) -> bool:
        """Could the principal read `relation` through an SQL tool? For resources/list and read.

        `tool` names the SQL tool (default: any tool of the policy's SQL rules). Allow rules
        count as in `may_call_tool` and must grant the relation in `tables`; deny rules that
        apply to the relation are evaluated in full against `SELECT * FROM relation`.
        """
        who = self.prepare_principal(principal)
        analysis = _select_all(relation)
        with self._lock:
            try:
                if tool is not None:
                    targeting = self._targeting("tools/call", tool)
                else:
                    targeting = tuple(i for i, r in enumerate(self.rules) if "tools/call" in r.methods)
                request = RequestInfo(method="tools/call", tool=tool or "", arguments={}, upstream=upstream)
                activation = act.build(who, request, analysis, now)
                candidates = self._candidates(targeting, analysis)
                return self._may(tuple(candidates), activation, relation=relation)
            except Exception:
                return False

    def _may(self, candidates: Sequence[int], activation: Activation, *, relation: str | None) -> bool:
        for index in candidates:
            rule = self.rules[index]
            if rule.effect != "deny":
                continue
            if relation is None and (rule.mentions or rule.condition.call_dependent):
                continue
            try:
                if rule.condition.evaluate(activation):
                    return False
            except CelEvaluationError:
                return False
        for index in candidates:
            rule = self.rules[index]
            if rule.effect != "allow":
                continue
            if relation is not None and not rule.grants(relation):
                continue
            try:
                if rule.condition.may_hold(activation):
                    return True
            except CelEvaluationError:
                continue
        return False


_UNSET = object()


class _Evaluations:
    """Rule programs evaluated on one activation. With `memo` (an activation shared by every
    call of a principal, see `PolicySet._evaluations`), each program's value is computed once
    and kept; an error is not kept (it is raised again by evaluating again)."""

    __slots__ = ("activation", "memo")

    def __init__(self, activation: Activation, memo: dict[tuple[int, int], Any] | None) -> None:
        self.activation = activation
        self.memo = memo

    def condition(self, index: int, rule: Rule) -> bool:
        """`rule.condition.evaluate`; raises `CelEvaluationError`."""
        memo = self.memo
        if memo is None:
            return rule.condition.evaluate(self.activation)
        found = memo.get((index, -1), _UNSET)
        if found is _UNSET:
            found = memo[(index, -1)] = rule.condition.evaluate(self.activation)
        return bool(found)

    def row_filter(self, index: int, position: int,
                   row_filter: RowFilterRule) -> tuple[str | int | float | bool, ...]:
        """The values of the rule's `position`-th row filter; raises `CelEvaluationError`
        (with the message of a `filter_values` TypeError when the value has the wrong type)."""
        memo = self.memo
        found = _UNSET if memo is None else memo.get((index, position), _UNSET)
        if found is _UNSET:
            try:
                found = filter_values(row_filter.value.evaluate(self.activation))
            except TypeError as exc:
                raise CelEvaluationError(str(exc)) from None
            if memo is not None:
                memo[(index, position)] = found
        return found  # type: ignore[return-value]


def _what(request: RequestInfo) -> str:
    if request.method == "tools/call":
        return f"tool {_short(request.tool)!r}"
    return f"{request.method} {_short(request.tool)!r}"


def filter_values(value: Any) -> tuple[str | int | float | bool, ...]:
    """A row-filter value (scalar or list of scalars) as a tuple; TypeError for anything else."""
    from celpy import celtypes

    try:
        if isinstance(value, celtypes.ListType):
            return tuple(from_cel_scalar(v) for v in value)
        return (from_cel_scalar(value),)
    except TypeError:
        raise TypeError("value must be a string, number, boolean or a list of them (not null)") from None


def _select_all(relation: str) -> Analysis:
    return Analysis(kind="select", relations=(relation,), columns={}, star_relations=(relation,),
                    functions=(), limit=None, has_limit=False, set_operations=(), has_aggregate=False,
                    has_window=False, has_subquery=False, has_cte=False, has_recursive_cte=False,
                    has_lateral=False)
