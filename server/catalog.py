"""What the connection can read, from pg_catalog: tables, their columns, keys and indexes.

Only relations the role may SELECT from (table or any column privilege, with USAGE on the
schema) are listed; columns the role cannot select are left out. System schemas
(pg_catalog, information_schema, pg_toast, temporary schemas) are never listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from pgwarden.server.database import Database, QueryError

# A readable relation: c = pg_class, n = pg_namespace.
_READABLE = """
    c.relkind IN ('r', 'p', 'v', 'm', 'f')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_(toast|temp_)'
    AND has_schema_privilege(n.oid, 'USAGE')
    AND (has_table_privilege(c.oid, 'SELECT') OR has_any_column_privilege(c.oid, 'SELECT'))
"""

_KIND = """
    CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                   WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' END
"""

_TABLES_SQL = f"""
SELECT n.nspname::text AS schema, c.relname::text AS name, {_KIND} AS kind,
       CASE WHEN c.relkind IN ('v', 'f') OR c.reltuples < 0 THEN NULL
            ELSE c.reltuples::bigint END AS row_estimate,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_READABLE} AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)
ORDER BY 1, 2
"""

_FIND_EXACT_SQL = f"""
SELECT c.oid::int8 AS oid, n.nspname::text AS schema, c.relname::text AS name, {_KIND} AS kind,
       CASE WHEN c.relkind IN ('v', 'f') OR c.reltuples < 0 THEN NULL
            ELSE c.reltuples::bigint END AS row_estimate,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_READABLE} AND n.nspname = %(schema)s::text AND c.relname = %(name)s::text
"""

_FIND_NAME_SQL = f"""
SELECT n.nspname::text AS schema, c.relname::text AS name,
       array_position(current_schemas(false), n.nspname::text) AS search_position
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
     (SELECT parse_ident(%(ident)s::text) AS parts) p
WHERE {_READABLE}
  AND ((cardinality(p.parts) = 2 AND n.nspname = p.parts[1] AND c.relname = p.parts[2])
    OR (cardinality(p.parts) = 1 AND c.relname = p.parts[1]))
ORDER BY 3 NULLS LAST, 1
"""

_COLUMNS_SQL = """
SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable, pg_get_expr(d.adbin, d.adrelid) AS default,
       col_description(a.attrelid, a.attnum) AS comment
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %(oid)s::oid AND a.attnum > 0 AND NOT a.attisdropped
  AND has_column_privilege(a.attrelid, a.attnum, 'SELECT')
ORDER BY a.attnum
"""

_CONSTRAINTS_SQL = """
SELECT con.conname::text AS name, con.contype::text AS type,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       fn.nspname::text AS ref_schema, fc.relname::text AS ref_table,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS ref_columns
FROM pg_constraint con
LEFT JOIN pg_class fc ON fc.oid = con.confrelid
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
WHERE con.conrelid = %(oid)s::oid AND con.contype IN ('p', 'f')
ORDER BY con.contype DESC, con.conname
"""

_INDEXES_SQL = """
SELECT ic.relname::text AS name, pg_get_indexdef(i.indexrelid) AS definition,
       i.indisunique AS unique, i.indisprimary AS primary
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = %(oid)s::oid
ORDER BY ic.relname
"""

_SCHEMAS_SQL = """
SELECT n.nspname::text AS name, obj_description(n.oid, 'pg_namespace') AS comment
FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
  AND has_schema_privilege(n.oid, 'USAGE')
ORDER BY 1
"""


class TableNotFound(Exception):
    """No readable table by that name; the message is safe to return."""


@dataclass(frozen=True)
class TableRef:
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"


_PLAIN_IDENT = re.compile(r"^[a-z_][a-z0-9_$]*$")


def quote_ident(name: str) -> str:
    """`orders` → `orders`; `Order Items` → `"Order Items"` (Postgres identifier quoting)."""
    if _PLAIN_IDENT.match(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def schema_uri(database: str, schema: str, table: str) -> str:
    """`postgres://<database>/<schema>/<table>/schema`, each part percent-encoded."""
    return f"postgres://{quote(database, safe='')}/{quote(schema, safe='')}/{quote(table, safe='')}/schema"


def overview_uri(database: str) -> str:
    return f"postgres://{quote(database, safe='')}/schemas"


def template_uri(database: str) -> str:
    return f"postgres://{quote(database, safe='')}/{{schema}}/{{table}}/schema"


def parse_schema_uri(database: str, uri: str) -> TableRef | None:
    """The table a `schema_uri` names, or None when `uri` is not one for this database."""
    prefix = f"postgres://{quote(database, safe='')}/"
    if not uri.startswith(prefix) or not uri.endswith("/schema"):
        return None
    parts = uri[len(prefix):-len("/schema")].split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return TableRef(unquote(parts[0]), unquote(parts[1]))


async def list_tables(db: Database, schema: str | None = None) -> list[dict[str, Any]]:
    """Readable tables and views: schema, name, kind, row_estimate, comment."""
    return await db.catalog(_TABLES_SQL, {"schema": schema})


async def list_schemas(db: Database) -> list[dict[str, Any]]:
    return await db.catalog(_SCHEMAS_SQL)


async def resolve_table(db: Database, ident: str) -> TableRef:
    """A table named like Postgres would read it (`orders`, `hr.employees`, `"Mixed Case"`).

    An unqualified name picks the first match along the search path, and is ambiguous when
    it exists only outside the search path in several schemas.
    """
    try:
        rows = await db.catalog(_FIND_NAME_SQL, {"ident": ident})
    except QueryError as exc:
        raise TableNotFound(f"not a table name: {exc.message}") from None
    if not rows:
        raise TableNotFound(f"no readable table named {ident!r}")
    if len(rows) > 1 and rows[0]["search_position"] is None:
        options = ", ".join(f"{r['schema']}.{r['name']}" for r in rows)
        raise TableNotFound(f"table name {ident!r} is ambiguous; qualify it: {options}")
    return TableRef(rows[0]["schema"], rows[0]["name"])


async def describe_table(db: Database, table: TableRef) -> dict[str, Any]:
    """The table's schema document (what the resource and `describe_table` return).

    Keys: schema, table, kind, comment, row_estimate (planner's estimate, null if unknown),
    columns [{name, type, nullable, default, comment}], primary_key (list of column names or
    null), foreign_keys [{name, columns, references: {schema, table, columns}}],
    indexes [{name, definition, unique, primary}].
    """
    found = await db.catalog(_FIND_EXACT_SQL, {"schema": table.schema, "name": table.name})
    if not found:
        raise TableNotFound(f"no readable table {table.schema}.{table.name}")
    info = found[0]
    oid = {"oid": info["oid"]}
    columns = await db.catalog(_COLUMNS_SQL, oid)
    constraints = await db.catalog(_CONSTRAINTS_SQL, oid)
    indexes = await db.catalog(_INDEXES_SQL, oid)
    primary = next((c["columns"] for c in constraints if c["type"] == "p"), None)
    foreign = [
        {"name": c["name"], "columns": c["columns"],
         "references": {"schema": c["ref_schema"], "table": c["ref_table"], "columns": c["ref_columns"]}}
        for c in constraints if c["type"] == "f"
    ]
    return {
        "schema": info["schema"],
        "table": info["name"],
        "kind": info["kind"],
        "comment": info["comment"],
        "row_estimate": info["row_estimate"],
        "columns": columns,
        "primary_key": primary,
        "foreign_keys": foreign,
        "indexes": indexes,
    }


async def schemas_overview(db: Database) -> dict[str, Any]:
    """Every readable schema with its readable tables and their schema-resource URIs."""
    tables = await list_tables(db)
    schemas = []
    for schema in await list_schemas(db):
        members = [
            {"name": t["name"], "kind": t["kind"], "row_estimate": t["row_estimate"],
             "uri": schema_uri(db.database, t["schema"], t["name"])}
            for t in tables if t["schema"] == schema["name"]
        ]
        schemas.append({"name": schema["name"], "comment": schema["comment"], "tables": members})
    return {"database": db.database, "schemas": schemas}


_ALL_COLUMNS_SQL = f"""
SELECT n.nspname::text AS schema, c.relname::text AS table, a.attname::text AS name,
       format_type(a.atttypid, a.atttypmod) AS type
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE {_READABLE} AND has_column_privilege(c.oid, a.attnum, 'SELECT')
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)
ORDER BY n.nspname, c.relname, a.attnum
"""


async def compact_schema(db: Database, schema: str | None = None, *, max_tables: int = 200) -> str:
    """One line per readable table, `schema.table(column type, …)`, for prompts."""
    rows = await db.catalog(_ALL_COLUMNS_SQL, {"schema": schema})
    tables: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        column = f"{quote_ident(row['name'])} {row['type']}"
        tables.setdefault((row["schema"], row["table"]), []).append(column)
    shown = list(tables.items())[:max_tables]
    lines = [f"{TableRef(s, t).qualified}({', '.join(cols)})" for (s, t), cols in shown]
    if len(tables) > max_tables:
        lines.append(f"… and {len(tables) - max_tables} more tables (use list_tables)")
    return "\n".join(lines)
