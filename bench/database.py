"""The databases the benchmarks run against: an embedded PostgreSQL of their own.

`BenchDatabase.start()` starts a fresh embedded PostgreSQL (pgserver) in a temporary
directory, seeds the small demo database, and stops it when the process exits. Scratch
databases (many tables, a million-row table) are created with unique names and dropped
again by `scratch_database`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pgwarden.server import demo_data, embedded


@dataclass(frozen=True)
class BenchDatabase:
    data_dir: Path
    admin_dsn: str  # owner of the demo database
    reader_dsn: str  # SELECT-only role: what the MCP servers are given
    server: embedded.EmbeddedPostgres
    seed_seconds: float

    @classmethod
    def start(cls, size: str = "small") -> BenchDatabase:
        started = time.perf_counter()
        data_dir = Path(tempfile.mkdtemp(prefix="pgwarden-bench-pg-"))
        os.chmod(data_dir, 0o755)  # pgserver runs Postgres as its own OS user when we are root
        pg = embedded.start(data_dir / "pg", stop_at_exit=True)
        demo = embedded.ensure_demo_database(pg, size=size)
        return cls(data_dir, demo.admin_dsn, demo.reader_dsn, pg, time.perf_counter() - started)

    def version(self) -> str:
        with psycopg.connect(self.admin_dsn) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "unknown"

    def cleanup(self) -> None:
        embedded.stop(self.server.data_dir)  # first: the stop needs the data directory
        shutil.rmtree(self.data_dir, ignore_errors=True)


@contextmanager
def scratch_database(db: BenchDatabase, purpose: str) -> Iterator[str]:
    """A new, empty database (admin DSN) that is dropped on exit; readable by the reader role."""
    name = f"pgwarden_bench_{purpose}_{os.getpid()}"
    with psycopg.connect(db.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = db.server.dsn(name)
    try:
        yield dsn
    finally:
        with psycopg.connect(db.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def reader_of(dsn: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, user=demo_data.READER_ROLE)


def grant_reader(dsn: str, schema: str = "public") -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(demo_data.READER_ROLE)
            )
        )
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(demo_data.READER_ROLE)
            )
        )
