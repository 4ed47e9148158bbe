"""Compiled rules: what a rule of a policy file becomes once it has been validated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from celpy import celtypes
from celpy.evaluation import Activation

from pgwarden.proxy.guard.model import Mask
from pgwarden.proxy.policy import cel_inspect, cel_runtime
from pgwarden.proxy.policy.activation import ROW_FILTER_VARIABLES
from pgwarden.proxy.policy.cel_runtime import CelEvaluationError, Program
from pgwarden.proxy.policy.globs import name_matches, relation_matches

Effect = Literal["allow", "deny"]


@dataclass(frozen=True, slots=True, eq=False)
class Condition:
    """A rule's CEL condition, plus the parts of it that do not depend on the call.

    `listing` holds the top-level `&&` conjuncts that read neither `sql` nor
    `request.arguments`: when all of them are true the rule *may* match some call of the tool
    (used to filter tools/list and resources/list, never to allow a call).
    """

    source: str
    program: Program | None                 # None for the literals `true` / `false`
    constant: bool | None
    listing: tuple[Program, ...]
    call_dependent: bool
    variables: frozenset[str] = frozenset()  # top-level variables the condition reads

    def evaluate(self, activation: Activation) -> bool:
        """True or False; raises `CelEvaluationError` on error or a non-boolean result."""
        if self.program is None:
            return bool(self.constant)
        return _as_bool(self.program.evaluate(activation))

    def may_hold(self, activation: Activation) -> bool:
        """True unless a call-independent conjunct is false; raises on error."""
        if self.constant is not None:
            return self.constant
        return all(_as_bool(p.evaluate(activation)) for p in self.listing)


def _as_bool(value: Any) -> bool:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    raise CelEvaluationError("condition did not evaluate to a boolean")


def compile_condition(source: str) -> Condition:
    """Compile a condition. Raises `CelCompileError`; no static checks (the loader does them)."""
    stripped = source.strip()
    if stripped in ("true", "false"):
        return Condition(source, None, stripped == "true", (), False)
    tree = cel_runtime.parse(source)
    program = cel_runtime.compile_program(source, tree)
    variables = frozenset(cel_inspect.references(tree).variables)
    listing: list[Program] = []
    dependent = False
    for part in cel_inspect.conjuncts(tree):
        if cel_inspect.references(part).call_dependent:
            dependent = True
            continue
        text = cel_inspect.source_of(part, source)
        listing.append(cel_runtime.compile_program(text))
    return Condition(source, program, None, tuple(listing), dependent, variables)


@dataclass(frozen=True, slots=True, eq=False)
class RowFilterRule:
    """Keep rows of `relation` whose `column` is in the value(s) of `value` (a CEL program)."""

    relation: str
    column: str
    value: Program
    reads: frozenset[str] = ROW_FILTER_VARIABLES  # the variables `value` reads (all it may, if unknown)


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """One validated rule. Rules are identified by `id`, unique in a policy set."""

    id: str
    effect: Effect
    condition: Condition
    description: str = ""
    reason: str | None = None
    methods: frozenset[str] = frozenset({"tools/call"})
    tools: tuple[str, ...] = ("*",)
    tables: tuple[str, ...] = ()
    masks: dict[str, dict[str, Mask]] = field(default_factory=dict)
    row_filters: tuple[RowFilterRule, ...] = ()
    row_cap: int | None = None
    functions: frozenset[str] = frozenset()
    file: str = ""
    line: int | None = None

    @property
    def is_sql(self) -> bool:
        """A rule about SQL statements: it grants tables or carries SQL obligations."""
        return bool(self.tables or self.masks or self.row_filters or self.functions)

    @property
    def restricts(self) -> bool:
        """It carries obligations that narrow what a call returns."""
        return bool(self.masks or self.row_filters or self.row_cap is not None)

    @property
    def variables(self) -> frozenset[str]:
        """Activation variables the rule reads (its condition and its row filters)."""
        used = self.condition.variables
        for row_filter in self.row_filters:
            used = used | row_filter.reads
        return used

    @property
    def mentions(self) -> tuple[str, ...]:
        """Relation patterns the rule is about: its tables and the relations it masks or filters."""
        named = set(self.masks) | {f.relation for f in self.row_filters}
        return tuple(dict.fromkeys((*self.tables, *sorted(named))))

    def targets(self, method: str, tool: str) -> bool:
        return method in self.methods and any(name_matches(tool, p) for p in self.tools)

    def mentions_relation(self, relation: str) -> bool:
        return any(relation_matches(relation, p) for p in self.mentions)

    def grants(self, relation: str) -> bool:
        return any(relation_matches(relation, p) for p in self.tables)
