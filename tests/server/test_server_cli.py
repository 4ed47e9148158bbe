"""`pgwarden server` as a command: help, the start-up role check, seeding, the embedded demo."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import psycopg
import pytest
from psycopg import sql
from server_helpers import call_tool, server_env, stdio_params

from pgwarden.server import demo_data
from pgwarden.server.config import ServerSettings
from pgwarden.server.database import Database
from pgwarden.server.privileges import RoleReport, check_role

PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))


def _run(args: list[str], dsn: str | None, extra_env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(args, env=server_env(dsn, extra_env), input=b"", capture_output=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize("command", [[PGWARDEN, "server", "--help"],
                                     [sys.executable, "-m", "pgwarden.server", "--help"]])
def test_help_explains_the_command(command: list[str]) -> None:
    done = _run(command, None)
    assert done.returncode == 0
    out = done.stdout.decode()
    for flag in ["--dsn", "--transport", "--host", "--port", "--max-rows", "--statement-timeout-ms",
                 "--require-readonly-role", "--demo-size", "--seed-only"]:
        assert flag in out
    assert "read-only" in out


def test_pgwarden_lists_the_server_subcommand() -> None:
    done = _run([PGWARDEN, "--help"], None)
    assert "server" in done.stdout.decode()


def _report(dsn: str) -> RoleReport:
    async def go():
        async with Database(dsn, ServerSettings(pool_max_size=1)) as db:
            return await check_role(db)
    return anyio.run(go)


def test_reader_role_has_no_problems(reader_dsn: str) -> None:
    report = _report(reader_dsn)
    assert report.role == "pgwarden_reader" and report.problems == []


def test_superuser_is_a_problem(admin_dsn: str) -> None:
    assert _report(admin_dsn).problems == ["role 'postgres' is a superuser"]


@pytest.fixture
def writer_dsn(admin_dsn: str):
    """A scratch schema and a role that can INSERT into it and CREATE in it; dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    schema, role = f"scratch_{suffix}", f"pgwarden_writer_{suffix}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {}.notes (id int)").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(sql.Identifier(schema),
                                                                             sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT, INSERT ON {}.notes TO {}").format(sql.Identifier(schema),
                                                                             sql.Identifier(role)))
    yield psycopg.conninfo.make_conninfo(admin_dsn, user=role), schema
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_write_and_create_privileges_are_problems(writer_dsn) -> None:
    dsn, schema = writer_dsn
    report = _report(dsn)
    assert report.writable_tables == [f"{schema}.notes"]
    assert report.creatable_schemas == [schema]
    assert len(report.problems) == 2


def test_writer_sees_only_tables_it_can_read(writer_dsn) -> None:
    dsn, schema = writer_dsn
    result = call_tool(stdio_params(dsn), "list_tables", {})
    assert [f"{t['schema']}.{t['name']}" for t in result.structured_content["tables"]] == [f"{schema}.notes"]


def test_start_warns_loudly_about_a_superuser(admin_dsn: str) -> None:
    done = _run([sys.executable, "-m", "pgwarden.server"], admin_dsn)  # stdin closes at once
    assert done.returncode == 0
    err = done.stderr.decode()
    assert "WARNING" in err and "superuser" in err
    assert done.stdout == b""


def test_require_readonly_role_refuses_to_start(admin_dsn: str) -> None:
    done = _run([sys.executable, "-m", "pgwarden.server", "--require-readonly-role"], admin_dsn)
    assert done.returncode == 3
    assert "superuser" in done.stderr.decode() and "Refusing to start" in done.stderr.decode()


def test_require_readonly_role_accepts_the_reader(reader_dsn: str) -> None:
    done = _run([sys.executable, "-m", "pgwarden.server", "--require-readonly-role"], reader_dsn)
    assert done.returncode == 0
    assert "WARNING" not in done.stderr.decode()


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    dsn = f"host={tmp_path} dbname=nope user=nobody"
    done = _run([sys.executable, "-m", "pgwarden.server"], dsn)
    assert done.returncode == 2
    assert "cannot connect" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()


def test_seed_only_seeds_an_empty_database(admin_dsn: str) -> None:
    name = f"pgwarden_seed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    try:
        done = _run([PGWARDEN, "server", "--seed-only", "--demo-size", "tiny"], target)
        assert done.returncode == 0, done.stderr.decode()
        assert f"dbname={name}" in done.stdout.decode() and "user=pgwarden_reader" in done.stdout.decode()
        with psycopg.connect(target) as conn:
            orders = conn.execute("SELECT count(*) FROM public.orders").fetchone()
        assert orders == (demo_data.SIZES["tiny"].orders,)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_without_a_dsn_the_embedded_demo_starts_and_is_served_read_only(tmp_path: Path) -> None:
    from pgserver.postgres_server import get_server

    data_dir = tmp_path / "embedded"
    params = stdio_params(None, "--demo-size", "tiny", extra_env={"PGWARDEN_DATA_DIR": str(data_dir)})
    try:
        count = call_tool(params, "query", {"sql": "SELECT count(*) FROM public.orders"})
        who = call_tool(params, "query", {"sql": "SELECT current_user, current_database()"})
    finally:
        if data_dir.exists():
            get_server(str(data_dir), cleanup_mode="stop").cleanup()
    assert count.structured_content["rows"] == [[demo_data.SIZES["tiny"].orders]]
    assert who.structured_content["rows"] == [["pgwarden_reader", "pgwarden_demo_tiny"]]
