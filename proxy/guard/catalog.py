"""Table -> columns, for secure-view substitution and `*` expansion of masked tables.

Two sources: columns declared in configuration (`Catalog.from_mapping`) or read-only
introspection of a database (`Catalog.from_dsn`), cached until `refresh()`. The guard never asks
the upstream MCP server: a catalog is trusted configuration.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_INTROSPECTION_SQL = """
SELECT n.nspname, c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND n.nspname NOT IN ('pg_toast')
  AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
ORDER BY n.nspname, c.relname, a.attnum
"""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str | None  # Postgres type as `format_type` prints it; None when not declared


Tables = dict[str, tuple[Column, ...]]


class Catalog:
    """Known relations (`schema.table`) and their columns in table order."""

    def __init__(self, tables: Mapping[str, tuple[Column, ...]] | None = None, *, dsn: str | None = None,
                 schemas: tuple[str, ...] | None = None) -> None:
        self._tables: Tables = dict(tables or {})
        self._dsn = dsn
        self._schemas = schemas
        self._loaded = dsn is None
        self._lock = threading.Lock()
        self.generation = 0  # bumped by every refresh: what was derived from older columns is stale

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Iterable[str] | Mapping[str, str]]) -> Catalog:
        """Declared columns: `{"public.customers": ("id", "email")}` or `{… : {"id": "integer"}}`."""
        tables: Tables = {}
        for relation, columns in mapping.items():
            if "." not in relation:
                raise ValueError(f"catalog relation {relation!r} must be schema-qualified")
            if isinstance(columns, Mapping):
                tables[relation] = tuple(Column(str(n), str(t)) for n, t in columns.items())
            elif isinstance(columns, str):
                raise ValueError(f"columns of {relation!r} must be a sequence of names")
            else:
                tables[relation] = tuple(Column(str(n), None) for n in columns)
        return cls(tables)

    @classmethod
    def from_dsn(cls, dsn: str, *, schemas: Iterable[str] | None = None) -> Catalog:
        """Introspect `dsn` (read-only) on first use; `schemas` limits which schemas are read."""
        return cls(dsn=dsn, schemas=tuple(schemas) if schemas is not None else None)

    def refresh(self) -> None:
        """Re-read the catalog from its DSN (no-op for declared catalogs)."""
        if self._dsn is None:
            return
        tables = _introspect(self._dsn, self._schemas)
        with self._lock:
            self._tables = tables
            self._loaded = True
            self.generation += 1

    def _ensure(self) -> Tables:
        if not self._loaded:
            with self._lock:
                loaded = self._loaded
            if not loaded:
                self.refresh()
        return self._tables

    def columns(self, relation: str) -> tuple[str, ...] | None:
        """Column names of `relation` in table order, or None when unknown."""
        found = self._ensure().get(relation)
        return None if found is None else tuple(c.name for c in found)

    def column_types(self, relation: str) -> dict[str, str | None] | None:
        found = self._ensure().get(relation)
        return None if found is None else {c.name: c.type for c in found}

    def relations(self) -> Iterable[str]:
        return tuple(self._ensure())

    def knows(self, relation: str) -> bool:
        return relation in self._ensure()


def _introspect(dsn: str, schemas: tuple[str, ...] | None) -> Tables:
    import psycopg  # only catalogs built from a DSN need a driver

    tables: dict[str, list[Column]] = {}
    with psycopg.connect(dsn, options="-c default_transaction_read_only=on",
                         autocommit=False) as conn:
        conn.read_only = True
        rows = conn.execute(_INTROSPECTION_SQL).fetchall()
        conn.rollback()
    for schema, table, column, type_name in rows:
        if schemas is not None and schema not in schemas:
            continue
        tables.setdefault(f"{schema}.{table}", []).append(Column(column, type_name))
    return {k: tuple(v) for k, v in tables.items()}
