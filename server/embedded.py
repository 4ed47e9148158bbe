"""The embedded PostgreSQL (pgserver) used when no DSN is configured.

One data directory per user (or per test session). pgserver runs initdb/pg_ctl itself and
works as root (it switches to an OS user of its own); the server it starts keeps running
after this process exits and is reused by the next start on the same directory.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import psycopg

from pgwarden.server import demo_data

DSN_ENV = "PGWARDEN_DSN"
DATA_DIR_ENV = "PGWARDEN_DATA_DIR"
DEMO_DATABASE = "pgwarden_demo"


def default_data_dir() -> Path:
    """The per-user data directory of the embedded Postgres (override with PGWARDEN_DATA_DIR)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir("pgwarden")) / "pg16"


@dataclass(frozen=True)
class EmbeddedPostgres:
    data_dir: Path
    admin_dsn: str

    def dsn(self, database: str) -> str:
        """A DSN for `database` on this instance (Unix socket, no password)."""
        return psycopg.conninfo.make_conninfo(self.admin_dsn, dbname=database)


def start(data_dir: Path | None = None, *, stop_at_exit: bool = False,
          delete_at_exit: bool = False) -> EmbeddedPostgres:
    """Start (or reuse) the embedded Postgres in `data_dir` and return how to reach it.

    With `stop_at_exit` the server is stopped when this process exits (tests); otherwise it
    keeps running for the next start on the same directory.
    """
    # pgserver asks platformdirs for a runtime dir (at import), which warns when XDG_RUNTIME_DIR
    # is unset, as it is in containers and CI; nothing is wrong then.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from pgserver.postgres_server import get_server  # lazily: only needed without a DSN

    path = data_dir or default_data_dir()
    path.mkdir(parents=True, exist_ok=True)
    cleanup = "delete" if delete_at_exit else "stop" if stop_at_exit else None
    server = get_server(str(path), cleanup_mode=cleanup)
    return EmbeddedPostgres(data_dir=path, admin_dsn=server.get_uri())


def stop(data_dir: Path) -> None:
    """Stop the embedded Postgres running on `data_dir`, when this process holds its last handle
    (or no process does). Call it before deleting the directory: pgserver's own stop at exit
    reads its handle list there, and leaves the server running when the directory is gone."""
    from pgserver.postgres_server import get_server

    if (data_dir / "postmaster.pid").exists():  # running (get_server would start one otherwise)
        get_server(str(data_dir), cleanup_mode="stop").cleanup()


@dataclass(frozen=True)
class DemoDatabase:
    admin_dsn: str   # the owner: seeds, and lets tests check the database after an attack
    reader_dsn: str  # a role with SELECT only: what the server is given by default


def ensure_demo_database(pg: EmbeddedPostgres, *, size: str = "small", seed: int = 42,
                         database: str = DEMO_DATABASE) -> DemoDatabase:
    """Create and seed the demo database on first use; return how to reach it."""
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database)))
    dsn = pg.dsn(database)
    demo_data.seed_if_empty(dsn, size=size, seed=seed)
    reader = psycopg.conninfo.make_conninfo(dsn, user=demo_data.READER_ROLE)
    return DemoDatabase(admin_dsn=dsn, reader_dsn=reader)


def demo_database_name(size: str = "small") -> str:
    """`pgwarden_demo` for the default size, `pgwarden_demo_<size>` for the others.

    One database per size, so a large benchmark database and the small default coexist.
    """
    if size not in demo_data.SIZES:
        raise ValueError(f"unknown demo size {size!r}; choose one of {', '.join(demo_data.SIZES)}")
    return DEMO_DATABASE if size == "small" else f"{DEMO_DATABASE}_{size}"


def ensure_demo(size: str = "small", data_dir: Path | None = None) -> DemoDatabase:
    """Start the embedded Postgres (per-user data directory) and seed the demo of `size`."""
    return ensure_demo_database(start(data_dir), size=size, database=demo_database_name(size))


def resolve_dsn(explicit: str | None = None, *, size: str = "small", data_dir: Path | None = None) -> str:
    """The DSN to serve: --dsn, else PGWARDEN_DSN, else the embedded demo database.

    The embedded demo is served through its SELECT-only role (`pgwarden_reader`).
    """
    if explicit:
        return explicit
    from_env = os.environ.get(DSN_ENV)
    if from_env:
        return from_env
    return ensure_demo(size, data_dir).reader_dsn
