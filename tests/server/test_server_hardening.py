"""Writes are impossible, even with a SUPERUSER DSN: the server's own layers hold.

Each attack runs through a real HTTP session against a server connected as the superuser,
then the database is checked with the admin DSN: contents, relations, roles and large objects
are unchanged. The same attacks run again with the server's pglast check turned off, to show
the Postgres-level layers (read-only transaction, named cursor, rollback) hold by themselves.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from server_helpers import ATTACK_TIMEOUT_MS, fingerprint, query, run, session, text_of

ATTACKS = [
    "COMMIT; INSERT INTO public.secrets VALUES (9999, 1, 'x', 'stolen', now())",
    "COMMIT; DELETE FROM public.secrets",
    "SET TRANSACTION READ WRITE; DELETE FROM public.secrets",
    "SET TRANSACTION READ WRITE",
    "SET default_transaction_read_only = off",
    "ROLLBACK; BEGIN READ WRITE; DELETE FROM public.secrets; COMMIT",
    "SELECT 1; DELETE FROM public.secrets",
    "WITH d AS (DELETE FROM public.secrets RETURNING *) SELECT * FROM d",
    "WITH u AS (UPDATE public.customers SET email = 'x' RETURNING 1) SELECT count(*) FROM u",
    "WITH i AS (INSERT INTO public.tenants VALUES (99, 'evil', 'free', now()) RETURNING 1) SELECT 1",
    "SELECT * FROM public.secrets FOR UPDATE",
    "SELECT * FROM public.secrets s JOIN public.tenants t ON t.id = s.tenant_id FOR SHARE OF s",
    "SELECT * INTO public.stolen FROM public.secrets",
    "CREATE TABLE public.evil AS SELECT * FROM public.secrets",
    "DELETE FROM public.secrets",
    "UPDATE public.customers SET email = 'pwned@example.com'",
    "TRUNCATE public.secrets CASCADE",
    "MERGE INTO public.tenants t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN DELETE",
    "DO $$ BEGIN DELETE FROM public.secrets; END $$",
    "CALL pg_catalog.pg_sleep(0)",
    "COPY public.secrets TO STDOUT",
    "COPY (SELECT * FROM public.secrets) TO '/tmp/pgwarden-stolen.csv'",
    "COPY public.secrets FROM '/etc/hostname'",
    "SELECT lo_import('/etc/hostname')",
    "SELECT lo_create(424242)",
    "PREPARE p AS DELETE FROM public.secrets",
    "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM public.secrets",
    "CREATE ROLE evil SUPERUSER LOGIN",
    "ALTER ROLE pgwarden_reader SUPERUSER",
    "GRANT ALL ON public.secrets TO PUBLIC",
    "ALTER SYSTEM SET statement_timeout = 0",
    "CREATE TEMP TABLE t AS SELECT 1",
    "LOCK TABLE public.secrets IN ACCESS EXCLUSIVE MODE",
    "VACUUM public.secrets",
    "EXPLAIN ANALYZE DELETE FROM public.secrets",
    "SET ROLE postgres",
    "RESET ALL",
    "DISCARD ALL",
    "LISTEN x",
    "NOTIFY x",
    "",
    "   -- only a comment",
    "SELEC * FROM public.secrets",
]


@pytest.fixture(scope="module")
def before(admin_dsn: str):
    return fingerprint(admin_dsn)


@pytest.mark.parametrize("sql", ATTACKS)
def test_attack_is_refused_and_changes_nothing(admin_http, admin_dsn: str, before, sql: str) -> None:
    result = query(admin_http.url, sql)
    assert result.is_error, f"accepted: {sql!r}: {text_of(result)}"
    assert "Traceback" not in text_of(result)
    assert fingerprint(admin_dsn) == before


@pytest.mark.parametrize("sql", [a for a in ATTACKS if a.strip() and not a.strip().startswith("--")])
def test_postgres_layers_alone_refuse_the_attack(admin_unchecked_http, admin_dsn: str, before,
                                                  sql: str) -> None:
    """Without the server's SQL check, the read-only transaction and named cursor still hold."""
    result = query(admin_unchecked_http.url, sql)
    assert result.is_error, f"accepted without the check: {sql!r}: {text_of(result)}"
    assert text_of(result).startswith("ERROR ")  # refused by Postgres itself, with its SQLSTATE
    assert fingerprint(admin_dsn) == before


@pytest.mark.parametrize(("sql", "reason"), [
    ("SET statement_timeout = 0", "only SELECT queries are allowed, got VariableSetStmt"),
    ("COMMIT; INSERT INTO public.secrets VALUES (1)", "exactly one statement is allowed, got 2"),
    ("WITH d AS (DELETE FROM public.secrets RETURNING *) SELECT * FROM d", "(DELETE) is not allowed"),
    ("SELECT * FROM public.secrets FOR UPDATE", "locking clauses"),
    ("SELECT * INTO public.stolen FROM public.secrets", "SELECT … INTO"),
])
def test_refusals_say_why_before_reaching_postgres(admin_http, sql: str, reason: str) -> None:
    text = text_of(query(admin_http.url, sql))
    assert text.startswith("refused: ")
    assert reason in text


def test_sleep_past_the_timeout_is_cancelled_quickly(admin_http) -> None:
    started = time.monotonic()
    result = query(admin_http.url, "SELECT pg_sleep(30)")
    elapsed = time.monotonic() - started
    assert result.is_error
    assert text_of(result) == "ERROR 57014: canceling statement due to statement timeout"
    assert elapsed < 10 * ATTACK_TIMEOUT_MS / 1000


def test_disabling_the_timeout_from_inside_the_query_does_not_work(admin_http) -> None:
    sql = "SELECT set_config('statement_timeout', '0', false), pg_sleep(30)"
    result = query(admin_http.url, sql)
    assert text_of(result) == "ERROR 57014: canceling statement due to statement timeout"


def test_session_settings_do_not_leak_into_later_calls(admin_http) -> None:
    """set_config() inside a SELECT is allowed (it is only a function call) but never outlives the call:
    every transaction is rolled back and the pool runs DISCARD ALL before reusing a connection."""
    async def go():
        async with session(admin_http.url) as client:
            changes = []
            for _ in range(8):  # more calls than pooled connections
                changes.append(await client.call_tool("query", {"sql":
                    "SELECT set_config('statement_timeout', '0', false), "
                    "set_config('default_transaction_read_only', 'off', false), "
                    "set_config('search_path', 'hr', false)"}))
            after = await client.call_tool("query", {"sql":
                "SELECT current_setting('statement_timeout'), current_setting('transaction_read_only'), "
                "current_setting('search_path')"})
            sleep = await client.call_tool("query", {"sql": "SELECT pg_sleep(30)"})
            return changes, after, sleep

    changes, after, sleep = run(go)
    assert all(not c.is_error for c in changes)
    assert after.structured_content["rows"] == [["1s", "on", '"$user", public']]
    assert sleep.is_error and "57014" in text_of(sleep)


def test_advisory_locks_do_not_outlive_the_call(admin_http, admin_dsn: str) -> None:
    result = query(admin_http.url, "SELECT pg_advisory_lock(4242), pg_try_advisory_lock(4243)")
    assert not result.is_error, text_of(result)
    with psycopg.connect(admin_dsn) as conn:
        held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
    assert held == (0,)


def test_reader_role_gets_postgres_permission_errors_too(reader_http, admin_dsn: str) -> None:
    before = fingerprint(admin_dsn)
    result = query(reader_http.url, "SELECT lo_import('/etc/hostname')")
    assert result.is_error
    assert fingerprint(admin_dsn) == before
