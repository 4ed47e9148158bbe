"""The mask library: each `Mask` becomes an SQL expression over the raw column, built as a tree.

| kind      | params                          | SQL (over a text value `v`)                              |
|-----------|---------------------------------|----------------------------------------------------------|
| `null`    |                                 | `CAST(NULL AS <column type>)` (plain NULL if type unknown) |
| `fixed`   | `text` (default `'***'`)        | `CAST('<text>' AS TEXT)`                                 |
| `partial` | `keep_last` (4), `fill` (`'*'`) | `REPEAT(fill, LENGTH(v) - k) || RIGHT(v, k)` (*)           |
| `email`   |                                 | `'***@' || SPLIT_PART(v, '@', 2)`                        |
| `hash`    | `salt` (`''`)                   | `ENCODE(SHA256(CONVERT_TO(salt || v, 'UTF8')), 'hex')`   |
| `sql`     | `expression` over `value`       | the expression with `value` bound to the column          |

(*) `k = LEAST(keep_last, LENGTH(v) / 2)`: `partial` never reveals more than half of a value,
so short values are not shown whole. Masks
other than `null` on non-text columns apply to `CAST(col AS TEXT)` and return text; `null` keeps
the column's type when the catalog knows it, so comparisons still type-check. NULL stays NULL.
A `hash` of a low-entropy value (a national id) can be brute-forced unless salted; the salt is
part of the SQL sent upstream.
"""

from __future__ import annotations

from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from pgwarden.proxy.guard.functions import sqlglot_function_name, type_is_allowed
from pgwarden.proxy.guard.model import GuardDenied, Mask, Reason

MASK_KINDS = frozenset({"null", "fixed", "partial", "email", "hash", "sql"})

_TEXT_TYPES = ("text", "character varying", "varchar", "character", "char", "bpchar", "citext", "name")


def is_text(type_name: str | None) -> bool:
    if type_name is None:
        return True
    base = type_name.lower().split("(", 1)[0].strip()
    return base in _TEXT_TYPES


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    node = exp.func(name, *args, dialect="postgres")
    assert isinstance(node, exp.Expression)
    return node


def _text(value: str) -> exp.Expression:
    return exp.Literal.string(value)


def _int(value: int) -> exp.Expression:
    return exp.Literal.number(value)


def _as_text(column: exp.Expression, type_name: str | None) -> exp.Expression:
    return column if is_text(type_name) else exp.Cast(this=column, to=exp.DataType.build("text"))


def _null(type_name: str | None) -> exp.Expression:
    if type_name is None:
        return exp.null()
    if not type_is_allowed(type_name):
        return exp.null()
    try:
        target = exp.DataType.build(type_name, dialect="postgres")
    except (SqlglotError, ValueError):
        return exp.null()
    return exp.Cast(this=exp.null(), to=target)


@lru_cache(maxsize=256)
def _parsed_sql_mask(expression: str, allowed: frozenset[str]) -> exp.Expression:
    """Parse and vet a custom mask expression once; raise ValueError when it is not safe."""
    try:
        tree = sqlglot.parse_one(expression, dialect="postgres")
    except SqlglotError as error:
        raise ValueError("mask expression does not parse") from error
    if not isinstance(tree, exp.Expression) or isinstance(tree, (exp.Query, exp.Command, exp.Block)):
        raise ValueError("mask expression must be a single scalar expression")
    for node in tree.walk():
        if isinstance(node, (exp.Query, exp.Table, exp.Subquery, exp.Star, exp.Parameter,
                             exp.Placeholder, exp.DML, exp.DDL, exp.Command)):
            raise ValueError("mask expression may only use the column `value`, literals and functions")
        if isinstance(node, exp.Column) and (node.table or node.name.lower() != "value"):
            raise ValueError("mask expression may only reference the column `value`")
        if isinstance(node, exp.Func):
            name = sqlglot_function_name(node, allowed)
            if name is not None and name not in allowed:
                raise ValueError(f"mask expression calls a function that is not allowed: {name}")
    return tree


def validate_mask(mask: Mask, allowed_functions: frozenset[str]) -> None:
    """Raise ValueError if `mask` cannot be applied (policy load time check)."""
    if mask.kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {mask.kind!r}; choose one of {sorted(MASK_KINDS)}")
    if mask.kind == "partial":
        keep = mask.param("keep_last", 4)
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            raise ValueError("partial mask: keep_last must be a non-negative integer")
        if not isinstance(mask.param("fill", "*"), str) or not mask.param("fill", "*"):
            raise ValueError("partial mask: fill must be a non-empty string")
    elif mask.kind == "fixed" and not isinstance(mask.param("text", "***"), str):
        raise ValueError("fixed mask: text must be a string")
    elif mask.kind == "hash" and not isinstance(mask.param("salt", ""), str):
        raise ValueError("hash mask: salt must be a string")
    elif mask.kind == "sql":
        expression = mask.param("expression")
        if not isinstance(expression, str) or not expression.strip():
            raise ValueError("sql mask: expression must be a non-empty string")
        _parsed_sql_mask(expression, allowed_functions)


def mask_expression(mask: Mask, column: exp.Expression, type_name: str | None,
                    allowed_functions: frozenset[str]) -> exp.Expression:
    """The SQL expression that replaces `column` under `mask` (a fresh tree)."""
    try:
        validate_mask(mask, allowed_functions)
    except ValueError as error:
        raise GuardDenied(Reason.POLICY_ERROR, f"invalid mask: {error}") from error
    kind = mask.kind
    if kind == "null":
        return _null(type_name)
    if kind == "fixed":
        return exp.Cast(this=_text(mask.param("text", "***")), to=exp.DataType.build("text"))
    value = _as_text(column, type_name)
    if kind == "partial":
        keep = exp.Paren(this=_fn("LEAST", _int(mask.param("keep_last", 4)),
                                  exp.Div(this=_fn("LENGTH", value.copy()), expression=_int(2),
                                          typed=True)))
        hidden = exp.Sub(this=_fn("LENGTH", value.copy()), expression=keep.copy())
        return exp.Paren(this=exp.DPipe(this=_fn("REPEAT", _text(mask.param("fill", "*")), hidden),
                                        expression=_fn("RIGHT", value.copy(), keep), safe=True))
    if kind == "email":
        return exp.Paren(this=exp.DPipe(this=_text("***@"),
                                        expression=_fn("SPLIT_PART", value, _text("@"), _int(2)),
                                        safe=True))
    if kind == "hash":
        salt = mask.param("salt", "")
        salted = exp.DPipe(this=_text(salt), expression=value, safe=True) if salt else value
        digest = exp.Anonymous(this="SHA256", expressions=[
            exp.Anonymous(this="CONVERT_TO", expressions=[salted, _text("UTF8")])])
        return exp.Anonymous(this="ENCODE", expressions=[digest, _text("hex")])
    tree: exp.Expression = _parsed_sql_mask(mask.param("expression"), allowed_functions).copy()
    for node in list(tree.find_all(exp.Column)):
        node.replace(value.copy())
    return exp.Paren(this=tree)
