"""Relation names: how an (optionally qualified) table reference becomes `schema.table`.

Resolution rules, identical for the sqlglot and the pglast side (both must agree):

- `schema.table` stays as written (schema and table lower-cased unless quoted).
- An unqualified name starting with `pg_` is `pg_catalog.<name>`. Postgres searches
  `pg_catalog` before the search path unless told otherwise, and every relation in
  `pg_catalog` is named `pg_*`; so `pg_class`, `pg_user`, `pg_authid` are catalog relations and
  are denied unless a policy allows `pg_catalog.<name>` by name. (A user table called `pg_x` in
  `public` must be written `public.pg_x`; the rewritten SQL pins whatever was decided.)
- Any other unqualified name is looked up in the configured search path: the first schema whose
  catalog knows the table, else the first schema. `pg_temp` and `$user` are refused as search
  path entries, so a temporary table can never shadow a pinned name.
- Catalog-qualified names (`db.schema.table`) are refused.

Identifiers containing a dot, a double quote or a control character are refused, so a relation
string is never ambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pgwarden.proxy.guard.model import GuardDenied, Reason

_BAD_IDENTIFIER = re.compile(r'[."\x00-\x1f\x7f]')
_SIMPLE_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")

Lookup = Callable[[str], "tuple[str, ...] | None"]


def check_identifier(name: str) -> str:
    if not name or _BAD_IDENTIFIER.search(name):
        raise GuardDenied(Reason.UNSUPPORTED_STATEMENT,
                          "identifiers with dots, quotes or control characters are not supported")
    return name


def validate_search_path(search_path: tuple[str, ...]) -> tuple[str, ...]:
    """Refuse search paths that would let a session-level object shadow a pinned relation."""
    if not search_path:
        raise ValueError("search_path must name at least one schema")
    for schema in search_path:
        if not _SIMPLE_IDENTIFIER.fullmatch(schema) or schema.startswith("pg_temp") or schema == "$user":
            raise ValueError(f"unsupported search_path entry {schema!r}")
    return search_path


def qualify(schema: str | None, name: str, search_path: tuple[str, ...],
            known: Callable[[str], bool] | None = None) -> str:
    """`schema.name` for a table reference, following the rules in this module's docstring."""
    check_identifier(name)
    if schema is not None:
        return f"{check_identifier(schema)}.{name}"
    if name.startswith("pg_"):
        return f"pg_catalog.{name}"
    if known is not None and len(search_path) > 1:
        for candidate in search_path:
            if known(f"{candidate}.{name}"):
                return f"{candidate}.{name}"
    return f"{search_path[0]}.{name}"


def split_relation(relation: str) -> tuple[str, str]:
    schema, _, name = relation.partition(".")
    return schema, name


def needs_quotes(name: str) -> bool:
    return _SIMPLE_IDENTIFIER.fullmatch(name) is None
