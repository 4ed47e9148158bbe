"""Types shared by the guard, the policy engine and the proxy pipeline.

This module is the contract between the pieces: the guard produces an `Analysis` (or raises
`GuardDenied`), the policy engine turns it into `Obligations`, the guard's enforcement applies
them and returns a `Rewrite`. Everything here is plain, immutable data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Stable reason codes of a denial: safe to return to the model, to log and to test on."""

    UNPARSEABLE = "sql.unparseable"
    EMPTY = "sql.empty"
    MULTIPLE_STATEMENTS = "sql.multiple_statements"
    NOT_READ_ONLY = "sql.not_read_only"            # DML/DDL/SET/transaction control anywhere
    UNSUPPORTED_STATEMENT = "sql.unsupported_statement"  # parsed, but not a query we accept
    LOCKING = "sql.locking_clause"
    SELECT_INTO = "sql.select_into"
    FUNCTION_NOT_ALLOWED = "sql.function_not_allowed"
    TYPE_NOT_ALLOWED = "sql.type_not_allowed"       # cast/declared type outside the allow-list (reg*, …)
    RELATION_NOT_ALLOWED = "sql.relation_not_allowed"
    COLUMN_NOT_ALLOWED = "sql.column_not_allowed"
    UNKNOWN_COLUMNS = "sql.catalog_unknown"         # masked/filtered table with no column list
    PARSER_DISAGREEMENT = "sql.parser_disagreement"  # pglast saw something sqlglot did not
    TOO_LARGE = "sql.too_large"
    POLICY_DENY = "policy.deny"                      # an explicit deny rule matched
    POLICY_NO_MATCH = "policy.no_matching_allow"
    POLICY_ERROR = "policy.error"                    # a rule failed to evaluate: fail closed
    TOOL_NOT_ALLOWED = "policy.tool_not_allowed"
    AUDIT_WRITE_FAILED = "audit.write_failed"        # strict audit: the record could not be written


class GuardDenied(Exception):  # named for the decision, not an internal error
    """A statement the guard refuses. `message` is short, human, and never holds SQL literals."""

    def __init__(self, code: Reason, message: str, *, detail: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.detail = detail or {}


@dataclass(frozen=True, slots=True)
class Analysis:
    """What an SQL statement does, as far as the guard can prove. Exposed to CEL as `sql`.

    Relation names are always schema-qualified and lower-case unless quoted
    (`"public.orders"`); CTE names never appear in `relations`.
    """

    kind: str                                   # "select" | "union" | "intersect" | "except" | "values"
    relations: tuple[str, ...]                  # physical relations read, sorted, unique
    columns: dict[str, tuple[str, ...]]         # relation -> columns read (where resolvable), sorted
    star_relations: tuple[str, ...]             # relations read through `*` / whole-row references
    functions: tuple[str, ...]                  # lower-case function names called, sorted, unique
    limit: int | None                           # the effective outer LIMIT when a literal, else None
    has_limit: bool
    set_operations: tuple[str, ...]             # e.g. ("union",)
    has_aggregate: bool
    has_window: bool
    has_subquery: bool
    has_cte: bool
    has_recursive_cte: bool
    has_lateral: bool
    tables_aliased: dict[str, tuple[str, ...]] = field(default_factory=dict)  # relation -> aliases

    def to_cel(self) -> dict[str, Any]:
        """A JSON-able view for the policy engine's activation."""
        return {
            "kind": self.kind,
            "relations": list(self.relations),
            "columns": {k: list(v) for k, v in self.columns.items()},
            "star_relations": list(self.star_relations),
            "functions": list(self.functions),
            "limit": -1 if self.limit is None else self.limit,
            "has_limit": self.has_limit,
            "set_operations": list(self.set_operations),
            "has_aggregate": self.has_aggregate,
            "has_window": self.has_window,
            "has_subquery": self.has_subquery,
            "has_cte": self.has_cte,
            "has_recursive_cte": self.has_recursive_cte,
            "has_lateral": self.has_lateral,
        }


@dataclass(frozen=True, slots=True)
class Mask:
    """How one column is masked. `kind` names an entry of the guard's mask library.

    kinds: "null", "fixed" (param `text`), "partial" (param `keep_last`, optional `fill`),
    "email" (keep the domain), "hash" (sha256 hex, optional `salt`), "sql" (param `expression`,
    an SQL expression over the column `value`, built only from allowed functions).
    """

    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)


@dataclass(frozen=True, slots=True)
class RowFilter:
    """Keep only rows where `column` equals one of `values` (literals from the principal)."""

    column: str
    values: tuple[str | int | float | bool, ...]


@dataclass(frozen=True, slots=True)
class Obligations:
    """What the policy decided must hold for the statement to go through.

    All keys are schema-qualified relation names. The most restrictive merge of every matching
    allow rule: union of masks, AND of row filters, smallest row cap.
    """

    allowed_relations: frozenset[str] = frozenset()
    masks: dict[str, dict[str, Mask]] = field(default_factory=dict)          # relation -> column -> mask
    row_filters: dict[str, tuple[RowFilter, ...]] = field(default_factory=dict)
    row_cap: int | None = None
    extra_functions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Rewrite:
    """The statement to send on, generated from the rewritten tree and re-validated by pglast."""

    sql: str
    normalized: str                              # `sql` with every constant as `$n` (for audit)
    fingerprint: str                             # stable hash of `normalized`: constants ignored
    masked_columns: tuple[str, ...]              # "schema.table.column"
    row_filters_applied: tuple[str, ...]         # "schema.table.column"
    row_cap: int | None
    relations: tuple[str, ...]
