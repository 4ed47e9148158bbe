"""`pgwarden server`: serve a PostgreSQL database to MCP clients, read-only."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import click
from psycopg.conninfo import make_conninfo

from pgwarden.server import demo_data, embedded
from pgwarden.server.config import (
    DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_MAX_ROWS,
    DEFAULT_STATEMENT_TIMEOUT_MS,
    ServerSettings,
)

EXIT_CANNOT_CONNECT = 2
EXIT_ROLE_NOT_READ_ONLY = 3


def _warn(lines: list[str], *, fatal: bool) -> None:
    title = "ERROR" if fatal else "WARNING"
    bar = "!" * 78
    click.echo(bar, err=True)
    click.echo(f"{title}: the database role of pgwarden server can do more than read:", err=True)
    for line in lines:
        click.echo(f"  - {line}", err=True)
    if fatal:
        click.echo("Refusing to start (--require-readonly-role). Use a role with SELECT only.", err=True)
    else:
        click.echo("The server still only runs read-only SELECTs, but give it a role with SELECT only "
                   "(and start with --require-readonly-role to enforce that).", err=True)
    click.echo(bar, err=True)


async def run_server(dsn: str, settings: ServerSettings, *, transport: str, host: str, port: int,
                     require_readonly_role: bool, http_responses: str = "sse") -> int:
    """Open the pool, check the role, serve until the client or a signal ends it; the exit code."""
    from pgwarden.server.app import build_server
    from pgwarden.server.database import Database, QueryError
    from pgwarden.server.privileges import check_role
    from pgwarden.server.transports import LOOPBACK_HOSTS, serve_http, serve_stdio

    db = Database(dsn, settings)
    try:
        await db.open()
    except QueryError as exc:
        click.echo(f"pgwarden server: {exc.message}", err=True)
        return EXIT_CANNOT_CONNECT
    try:
        problems = (await check_role(db)).problems
        if problems:
            _warn(problems, fatal=require_readonly_role)
            if require_readonly_role:
                return EXIT_ROLE_NOT_READ_ONLY
        server = build_server(db)
        if transport == "stdio":
            await serve_stdio(server)
        else:
            if host not in LOOPBACK_HOSTS:
                click.echo(f"WARNING: serving on {host}, beyond loopback, with no authentication: anyone "
                           "who reaches this port can query the database. Put the pgwarden proxy in front.",
                           err=True)
            await serve_http(server, host, port, json_response=http_responses == "json")
    finally:
        await db.close()
    return 0


def _seed(dsn: str | None, size: str, data_dir: Path | None) -> None:
    started = time.perf_counter()
    if dsn:
        seeded = demo_data.seed_if_empty(dsn, size=size)
        reader = make_conninfo(dsn, user=demo_data.READER_ROLE)
        admin = dsn
    else:
        demo = embedded.ensure_demo(size, data_dir)
        admin, reader, seeded = demo.admin_dsn, demo.reader_dsn, True
    elapsed = time.perf_counter() - started
    state = "ready" if seeded else "already seeded"
    click.echo(f"demo database ({size}) {state} in {elapsed:.1f}s", err=True)
    click.echo(f"reader DSN: {reader}")
    click.echo(f"admin DSN:  {admin}")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--dsn", envvar=embedded.DSN_ENV, metavar="DSN",
              help="PostgreSQL connection string (env PGWARDEN_DSN). Without it, an embedded PostgreSQL "
                   "starts in a per-user data directory with a seeded demo database, served through its "
                   "SELECT-only role.")
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True,
              help="stdio for one client that launches the server; http for Streamable HTTP at /mcp.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP bind address.")
@click.option("--http-responses", type=click.Choice(["sse", "json"]), envvar="PGWARDEN_HTTP_RESPONSES",
              default="sse", show_default=True,
              help="HTTP: answer each call as an SSE stream or as one JSON body "
                   "(env PGWARDEN_HTTP_RESPONSES).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="HTTP port.")
@click.option("--max-rows", type=click.IntRange(min=1), default=DEFAULT_MAX_ROWS, show_default=True,
              help="Most rows a query returns; clients may ask for fewer, never more.")
@click.option("--max-result-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_RESULT_BYTES,
              show_default=True, help="Most bytes of JSON rows a query returns.")
@click.option("--statement-timeout-ms", type=click.IntRange(min=1), default=DEFAULT_STATEMENT_TIMEOUT_MS,
              show_default=True, help="Postgres statement_timeout for every statement.")
@click.option("--idle-in-transaction-timeout-ms", type=click.IntRange(min=1),
              default=DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS, show_default=True,
              help="Postgres idle_in_transaction_session_timeout.")
@click.option("--pool-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="Most concurrent database connections.")
@click.option("--require-readonly-role", is_flag=True,
              help="Refuse to start when the role is a superuser or can write or create anything.")
@click.option("--no-statement-check", "statement_check", flag_value=False, default=True,
              help="Skip the server's own SQL check (one plain SELECT). Read-only transactions, the "
                   "named cursor and rollback still apply. For testing those layers only.")
@click.option("--demo-size", type=click.Choice(list(demo_data.SIZES)), default="small", show_default=True,
              help="Size of the embedded demo database (large: over 1M orders, for benchmarks). Each "
                   "size is its own database: pgwarden_demo, pgwarden_demo_tiny, pgwarden_demo_large.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar=embedded.DATA_DIR_ENV,
              help="Data directory of the embedded PostgreSQL (env PGWARDEN_DATA_DIR; default: per-user).")
@click.option("--seed-only", is_flag=True,
              help="Create and seed the demo database (embedded, or the empty database of --dsn), "
                   "print its DSNs and exit.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True, help="Log level (logs go to stderr).")
def server(dsn: str | None, transport: str, host: str, http_responses: str, port: int, max_rows: int,
           max_result_bytes: int,
           statement_timeout_ms: int, idle_in_transaction_timeout_ms: int, pool_size: int,
           require_readonly_role: bool, statement_check: bool, demo_size: str, data_dir: Path | None,
           seed_only: bool, log_level: str) -> None:
    """Serve a PostgreSQL database to MCP clients, read-only.

    Tools: query, list_tables, describe_table, explain_query. Resources: one JSON schema per
    readable table (postgres://<database>/<schema>/<table>/schema) and an overview
    (postgres://<database>/schemas). Prompts: summarize_table, data_quality_report,
    trend_over_time, find_anomalies, question_to_sql.

    Every statement runs alone, in a read-only transaction that is rolled back, under a
    statement timeout, through a server-side cursor; rows are capped. Set
    OTEL_TRACES_EXPORTER=otlp or console to export OpenTelemetry traces.

    \b
    Examples:
      pgwarden server                                   # embedded demo, stdio
      pgwarden server --transport http --port 8000      # http://127.0.0.1:8000/mcp
      pgwarden server --dsn postgresql://reader@db/app --require-readonly-role
      pgwarden server --demo-size large --seed-only     # build the benchmark database
    """
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if seed_only:
        _seed(dsn, demo_size, data_dir)
        return
    settings = ServerSettings(
        max_rows=max_rows, max_result_bytes=max_result_bytes, statement_timeout_ms=statement_timeout_ms,
        idle_in_transaction_timeout_ms=idle_in_transaction_timeout_ms,
        pool_min_size=1, pool_max_size=pool_size, statement_check=statement_check,
    )
    # Nothing may reach stdout but the protocol: the embedded start-up's output goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        resolved = embedded.resolve_dsn(dsn, size=demo_size, data_dir=data_dir)
    from pgwarden.server.telemetry import configure_tracing_from_env

    try:
        provider: Any = configure_tracing_from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        code = anyio.run(lambda: run_server(resolved, settings, transport=transport, host=host, port=port,
                                            require_readonly_role=require_readonly_role,
                                            http_responses=http_responses))
    except KeyboardInterrupt:
        code = 0
    finally:
        if provider is not None:
            provider.shutdown()
    sys.exit(code)
