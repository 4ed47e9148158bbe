"""Name patterns used by policies: relation globs and tool-name globs.

Relation globs are schema-qualified (`public.*`, `hr.salaries`, `*.audit_*`): exactly one dot,
`*` matches any run of characters and `?` one character, never crossing the dot. Tool globs
(`*`, `pg_*`, `get_?able`) use the same two wildcards on the whole name. Nothing else is special:
no brackets, no escapes, so a pattern says plainly what it matches.
"""

from __future__ import annotations

import re
from functools import lru_cache

_PART = r"[A-Za-z0-9_$*?]+"
_RELATION_PATTERN = re.compile(rf"^{_PART}\.{_PART}$")
_TOOL_PATTERN = re.compile(r"^[A-Za-z0-9_$*?./:\-]+$")
_RELATION_NAME = re.compile(r"^[A-Za-z0-9_$]+\.[A-Za-z0-9_$]+$")
_COLUMN_NAME = re.compile(r"^[A-Za-z0-9_$]+\.[A-Za-z0-9_$]+\.[A-Za-z0-9_$]+$")


class GlobError(ValueError):
    """A pattern that is not a valid glob; the message says why."""


def relation_glob_problem(pattern: str) -> str | None:
    """Why `pattern` is not a valid relation glob, or None when it is."""
    if not isinstance(pattern, str) or not pattern:
        return "a relation pattern must be a non-empty string"
    if "**" in pattern:
        return f"relation pattern {pattern!r}: '**' is not supported, '*' already matches any name"
    if not _RELATION_PATTERN.match(pattern):
        return (f"relation pattern {pattern!r} must be schema-qualified (schema.table) and use only "
                "letters, digits, '_', '$' and the wildcards '*' and '?'")
    return None


def tool_glob_problem(pattern: str) -> str | None:
    """Why `pattern` is not a valid tool (or prompt, or resource) name glob, or None."""
    if not isinstance(pattern, str) or not pattern:
        return "a tool pattern must be a non-empty string"
    if not _TOOL_PATTERN.match(pattern):
        return (f"tool pattern {pattern!r} may use only letters, digits, '_', '$', '.', '/', ':', '-' "
                "and the wildcards '*' and '?'")
    return None


def is_relation_name(name: str) -> bool:
    """True for a plain schema-qualified relation name (no wildcards)."""
    return bool(_RELATION_NAME.match(name))


def is_column_name(name: str) -> bool:
    """True for a plain `schema.table.column` name."""
    return bool(_COLUMN_NAME.match(name))


def has_wildcard(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


@lru_cache(maxsize=4096)
def _relation_regex(pattern: str) -> re.Pattern[str]:
    problem = relation_glob_problem(pattern)
    if problem:
        raise GlobError(problem)
    body = "".join("[^.]*" if c == "*" else "[^.]" if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$")


@lru_cache(maxsize=4096)
def _tool_regex(pattern: str) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.DOTALL)


def relation_matches(relation: str, pattern: str) -> bool:
    """Does the schema-qualified `relation` match the relation glob `pattern`?

    >>> relation_matches("public.orders", "public.*"), relation_matches("hr.salaries", "public.*")
    (True, False)

    Raises `GlobError` for an invalid pattern.
    """
    return _relation_regex(pattern).match(relation) is not None


def name_matches(name: str, pattern: str) -> bool:
    """Does `name` match the whole-name glob `pattern` (`*` any run, `?` one character)?

    >>> name_matches("query", "*"), name_matches("list_tables", "list_*"), name_matches("query", "q")
    (True, True, False)
    """
    if pattern == "*":
        return True
    if not has_wildcard(pattern):
        return name == pattern
    return _tool_regex(pattern).match(name) is not None
