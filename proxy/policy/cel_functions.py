"""Helper functions available to policy expressions, where CEL alone is clumsy.

* `glob(text, pattern)` — whole-string match, `*` any run of characters, `?` one character.
* `relation_matches(relation, pattern)` — schema-qualified relation glob (`public.*`): the
  wildcards never cross the dot.
* `any_relation_matches(relations, pattern_or_patterns)` — true when some relation matches one
  of the patterns (`any_relation_matches(sql.relations, ["hr.*", "public.secrets"])`).
* `all_relations_match(relations, pattern_or_patterns)` — true when every relation matches
  one of the patterns (true for an empty list).

Bad arguments (a malformed pattern, a non-string) make the expression fail, which fails closed.
Failures are returned as cel-python error values with fixed messages, never raised with data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celpy import celtypes
from celpy.evaluation import CELEvalError

from pgwarden.proxy.policy import globs

BAD_PATTERN = "invalid relation pattern"
BAD_ARGUMENT = "no such overload"


def _patterns(value: Any) -> list[str] | None:
    if isinstance(value, celtypes.StringType):
        return [str(value)]
    if isinstance(value, celtypes.ListType) and all(isinstance(p, celtypes.StringType) for p in value):
        return [str(p) for p in value]
    return None


def _relations(value: Any) -> list[str] | None:
    if isinstance(value, celtypes.ListType) and all(isinstance(r, celtypes.StringType) for r in value):
        return [str(r) for r in value]
    return None


def _match_any(relation: str, patterns: list[str]) -> bool:
    return any(globs.relation_matches(relation, p) for p in patterns)


def glob(text: Any, pattern: Any) -> Any:
    if not isinstance(text, celtypes.StringType) or not isinstance(pattern, celtypes.StringType):
        return CELEvalError(BAD_ARGUMENT, TypeError, ())
    return celtypes.BoolType(globs.name_matches(str(text), str(pattern)))


def relation_matches(relation: Any, pattern: Any) -> Any:
    patterns = _patterns(pattern)
    if not isinstance(relation, celtypes.StringType) or patterns is None:
        return CELEvalError(BAD_ARGUMENT, TypeError, ())
    try:
        return celtypes.BoolType(_match_any(str(relation), patterns))
    except globs.GlobError:
        return CELEvalError(BAD_PATTERN, ValueError, ())


def any_relation_matches(relations: Any, pattern: Any) -> Any:
    names, patterns = _relations(relations), _patterns(pattern)
    if names is None or patterns is None:
        return CELEvalError(BAD_ARGUMENT, TypeError, ())
    try:
        for p in patterns:  # validate every pattern even when the list is empty
            globs.relation_matches("x.x", p)
        return celtypes.BoolType(any(_match_any(r, patterns) for r in names))
    except globs.GlobError:
        return CELEvalError(BAD_PATTERN, ValueError, ())


def all_relations_match(relations: Any, pattern: Any) -> Any:
    names, patterns = _relations(relations), _patterns(pattern)
    if names is None or patterns is None:
        return CELEvalError(BAD_ARGUMENT, TypeError, ())
    try:
        for p in patterns:
            globs.relation_matches("x.x", p)
        return celtypes.BoolType(all(_match_any(r, patterns) for r in names))
    except globs.GlobError:
        return CELEvalError(BAD_PATTERN, ValueError, ())


def operator_in(item: Any, container: Any) -> Any:
    """CEL `in`, as cel-python's but without its per-call typing overhead."""
    if isinstance(item, CELEvalError):
        return item
    if isinstance(container, CELEvalError):
        return container
    if isinstance(container, celtypes.MapType):
        try:
            return celtypes.BoolType(item in container)
        except TypeError:
            return CELEvalError(BAD_ARGUMENT, TypeError, ())
    if not isinstance(container, celtypes.ListType):
        return CELEvalError(BAD_ARGUMENT, TypeError, ())
    result: Any = celtypes.BoolType(False)
    for element in container:
        try:
            if element == item:
                return celtypes.BoolType(True)
        except TypeError:
            result = CELEvalError(BAD_ARGUMENT, TypeError, ())
    return result


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "glob": glob,
    "relation_matches": relation_matches,
    "any_relation_matches": any_relation_matches,
    "all_relations_match": all_relations_match,
    "_in_": operator_in,
}
