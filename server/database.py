"""Every Postgres execution of the server: read-only, single-statement, bounded, rolled back.

Each call takes a pooled connection whose session was started with
`default_transaction_read_only=on`, `statement_timeout` and
`idle_in_transaction_session_timeout`; runs in an explicit `BEGIN READ ONLY` transaction that
is always rolled back; and the pool runs `DISCARD ALL` before a connection is reused, so no
session state (settings, advisory locks, temp objects) carries over from one call to the next.
Queries go through a server-side named cursor (`DECLARE … CURSOR FOR`, extended protocol:
Postgres itself refuses stacked statements, writable CTEs and SELECT INTO), and rows are
fetched in batches up to the cap plus one, so the rest of a large result is never loaded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pgwarden.server.config import ServerSettings
from pgwarden.server.statement_check import StatementRefused, check_select, explain_statement
from pgwarden.server.telemetry import db_span, mark_error
from pgwarden.server.values import SESSION_OPTIONS, configure_loaders, converter

logger = logging.getLogger(__name__)

FETCH_BATCH = 200
CURSOR_NAME = "pgwarden_query"


class QueryError(Exception):
    """A statement that was refused or failed; `message` and `sqlstate` are safe to return.

    `sqlstate` is Postgres's error code, or None when the server refused the statement
    itself (`refused` is then True) or the failure was not Postgres's (pool, connection).
    """

    def __init__(self, message: str, *, sqlstate: str | None = None, refused: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.refused = refused

    @classmethod
    def from_psycopg(cls, exc: psycopg.Error) -> QueryError:
        diag = exc.diag
        message = diag.message_primary or str(exc).strip().splitlines()[0] or type(exc).__name__
        if diag.message_hint:
            message = f"{message} (hint: {diag.message_hint})"
        return cls(message, sqlstate=exc.sqlstate)


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass
class QueryResult:
    """The rows of one query, already converted to JSON values (see `values`)."""

    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    truncated_by: str | None = None  # "max_rows" or "max_result_bytes"
    max_rows: int = 0

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def structured(self) -> dict[str, Any]:
        """The tool result's structuredContent: `{columns, rows, row_count, truncated}`."""
        return {
            "columns": [{"name": c.name, "type": c.type} for c in self.columns],
            "rows": self.rows,
            "row_count": self.row_count,
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class _TypeInfo:
    display: str  # format_type(): "timestamp with time zone", "integer[]"
    key: str      # internal name for value conversion: "timestamptz", "int4[]"


def session_options(settings: ServerSettings, existing: str | None = None) -> str:
    """The libpq `options` string that fixes the session's safety settings (ours come last)."""
    pairs = {
        "default_transaction_read_only": "on",
        "statement_timeout": str(settings.statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(settings.idle_in_transaction_timeout_ms),
        **SESSION_OPTIONS,
    }
    ours = " ".join(f"-c {name}={value}" for name, value in pairs.items())
    return f"{existing} {ours}" if existing else ours


class Database:
    """A pool of hardened connections to one database and the executions the server needs."""

    def __init__(self, dsn: str, settings: ServerSettings) -> None:
        self.settings = settings
        params = psycopg.conninfo.conninfo_to_dict(dsn)
        kwargs: dict[str, Any] = {
            "options": session_options(settings, str(params.get("options") or "") or None),
            "application_name": settings.application_name,
            "prepare_threshold": None,
            "autocommit": False,
        }
        self._dsn, self._kwargs = dsn, kwargs
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            dsn, kwargs=kwargs, min_size=settings.pool_min_size, max_size=settings.pool_max_size,
            timeout=settings.pool_timeout_s, open=False, configure=self._configure, reset=self._reset,
            name="pgwarden-server",
        )
        self.database = ""
        self._types: dict[int, _TypeInfo] = {}

    @staticmethod
    async def _configure(conn: AsyncConnection[Any]) -> None:
        configure_loaders(conn)
        await conn.set_read_only(True)

    @staticmethod
    async def _reset(conn: AsyncConnection[Any]) -> None:
        # Outside any transaction: forget settings, advisory locks, temp objects, listeners.
        await conn.set_autocommit(True)
        await conn.execute("DISCARD ALL")
        await conn.set_autocommit(False)

    async def open(self) -> None:
        """Open the pool and learn the database's name; raise QueryError if unreachable."""
        try:
            # One direct attempt first: libpq's own message, at once, instead of a pool timeout.
            probe = await AsyncConnection.connect(self._dsn, **self._kwargs)
            await probe.close()
        except psycopg.Error as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise QueryError(f"cannot connect to the database: {first_line}") from None
        try:
            await self._pool.open(wait=True, timeout=self.settings.pool_timeout_s)
        except PoolTimeout:
            raise QueryError("cannot connect to the database") from None
        rows = await self.catalog("SELECT current_database() AS name")
        self.database = str(rows[0]["name"])

    async def close(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def _read_only(self, operation: str) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection inside a read-only transaction that is always rolled back."""
        with db_span(operation, self.database or "postgres") as span:
            try:
                async with self._pool.connection() as conn, conn.transaction(force_rollback=True):
                    yield conn
            except psycopg.Error as exc:
                error = QueryError.from_psycopg(exc)
                mark_error(span, error.sqlstate or type(exc).__name__, error.sqlstate)
                raise error from None
            except PoolTimeout:
                mark_error(span, "pool_timeout")
                raise QueryError(
                    f"the server is busy: no database connection free within {self.settings.pool_timeout_s}s"
                ) from None

    async def catalog(self, sql: LiteralString, params: Mapping[str, Any] | Sequence[Any] | None = None,
                      ) -> list[dict[str, Any]]:
        """Run one of the server's own catalog queries (trusted text, values as parameters)."""
        async with self._read_only("SELECT") as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql, params, prepare=False)
            return await cur.fetchall()

    def _check(self, sql: str) -> None:
        if not self.settings.statement_check:
            return
        try:
            check_select(sql)
        except StatementRefused as exc:
            raise QueryError(f"refused: {exc.reason}", refused=True) from None

    async def query(self, sql: str, max_rows: int | None = None) -> QueryResult:
        """Run one read-only SELECT; return at most `max_rows` (≤ the server cap) converted rows."""
        cap = self.settings.max_rows if max_rows is None else max(1, min(max_rows, self.settings.max_rows))
        self._check(sql)
        async with self._read_only("SELECT") as conn:
            cursor = conn.cursor(name=CURSOR_NAME)
            await cursor.execute(sql)  # type: ignore[arg-type]  # client text, by design
            description = cursor.description or []
            oids = [int(d.type_code) for d in description]
            # Declared but not yet run: the session is still exactly as the pool gave it.
            types = await self._type_info(conn, oids)
            result = QueryResult(
                columns=[Column(d.name, types[o].display) for d, o in zip(description, oids, strict=True)],
                max_rows=cap,
            )
            await self._fetch_capped(cursor, [converter(types[oid].key) for oid in oids], result)
        return result

    async def _fetch_capped(self, cursor: psycopg.AsyncServerCursor[Any],
                            convert: list[Callable[[Any], Any]], result: QueryResult) -> None:
        """Fetch at most `result.max_rows` rows in batches, reading one more to learn whether
        more exist, and stop as soon as the rows' JSON exceeds the byte cap."""
        cap = result.max_rows
        budget = self.settings.max_result_bytes
        while True:
            want = min(FETCH_BATCH, cap + 1 - len(result.rows))
            batch = await cursor.fetchmany(want)
            for raw in batch:
                if len(result.rows) == cap:
                    result.truncated, result.truncated_by = True, "max_rows"
                    return
                row = [fn(value) for fn, value in zip(convert, raw, strict=True)]
                budget -= len(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode())
                if budget < 0:
                    result.truncated, result.truncated_by = True, "max_result_bytes"
                    return
                result.rows.append(row)
            if len(batch) < want:
                return

    async def _type_info(self, conn: AsyncConnection[Any], oids: list[int]) -> dict[int, _TypeInfo]:
        missing = sorted({oid for oid in oids if oid not in self._types})
        if missing:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """
                SELECT t.oid::pg_catalog.int8 AS oid, pg_catalog.format_type(t.oid, NULL) AS display,
                       CASE WHEN t.typcategory OPERATOR(pg_catalog.=) 'A' AND e.oid IS NOT NULL
                            THEN e.typname::pg_catalog.text OPERATOR(pg_catalog.||) '[]'
                            ELSE t.typname::pg_catalog.text END AS key
                FROM pg_catalog.pg_type t
                LEFT JOIN pg_catalog.pg_type e ON e.oid OPERATOR(pg_catalog.=) t.typelem
                WHERE t.oid OPERATOR(pg_catalog.=) ANY(%(oids)s::pg_catalog.oid[])
                """,
                {"oids": missing}, prepare=False,
            )
            for row in await cur.fetchall():
                self._types[int(row["oid"])] = _TypeInfo(str(row["display"]), str(row["key"]))
        unknown = _TypeInfo("unknown", "unknown")
        return {oid: self._types.get(oid, unknown) for oid in oids}

    async def explain(self, sql: str) -> Any:
        """The planner's plan for one read-only SELECT, as Postgres's JSON (never executed)."""
        if self.settings.statement_check:
            try:
                statement = explain_statement(sql)
            except StatementRefused as exc:
                raise QueryError(f"refused: {exc.reason}", refused=True) from None
        else:
            statement = "EXPLAIN (FORMAT JSON)\n" + sql
        async with self._read_only("EXPLAIN") as conn:
            cursor = conn.cursor()
            plan: Any = None
            # stream() uses the extended protocol: Postgres refuses more than one statement.
            async for row in cursor.stream(statement):  # type: ignore[arg-type]
                plan = row[0]
            return plan
