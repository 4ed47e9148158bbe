"""Which table a resource or a tool argument names, for the servers pgwarden knows.

- pgwarden's server: `postgres://<database>/<schema>/<table>/schema` (percent-encoded parts);
- the reference server-postgres: `postgres://<user>@<host>/<table>/schema` (tables of `public`).

Anything else names no table (`None`) and is decided by the policy as an ordinary resource.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


def resource_relation(uri: str, *, default_schema: str = "public") -> str | None:
    """`schema.table` for a table-schema resource URI, else None."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if parts.scheme not in ("postgres", "postgresql") or parts.query or parts.fragment:
        return None
    segments = parts.path.split("/")[1:]
    if len(segments) < 2 or segments[-1] != "schema":
        return None
    names = [unquote(s) for s in segments[:-1]]
    if not all(names) or any("{" in n or "}" in n for n in names):
        return None
    if len(names) == 1:
        return f"{default_schema}.{names[0]}"
    if len(names) == 2:
        return f"{names[0]}.{names[1]}"
    return None


def table_argument_relation(value: object, *, default_schema: str = "public") -> str | None:
    """`schema.table` for a tool argument naming a table (`orders`, `hr.employees`), else None."""
    if not isinstance(value, str) or not value or len(value) > 256:
        return None
    name = value.strip()
    if '"' in name:
        return None  # quoted identifiers: not guessed at, the call is denied
    pieces = name.split(".")
    if len(pieces) == 1:
        pieces = [default_schema, pieces[0]]
    if len(pieces) != 2 or not all(p.strip() for p in pieces):
        return None
    return f"{pieces[0].strip().lower()}.{pieces[1].strip().lower()}"
