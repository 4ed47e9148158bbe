"""Shared fixtures: one real PostgreSQL per test session.

By default an embedded PostgreSQL (pgserver) in a temporary directory, seeded with the demo
database; set PGWARDEN_TEST_DSN to an *empty* database you own to test against another server
(it is seeded the same way).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgwarden.server import demo_data, embedded


@pytest.fixture(scope="session")
def demo_db() -> Iterator[embedded.DemoDatabase]:
    """The seeded demo database: `.admin_dsn` (owner) and `.reader_dsn` (SELECT-only role)."""
    external = os.environ.get("PGWARDEN_TEST_DSN")
    if external:
        demo_data.seed_if_empty(external, size="small")
        reader = psycopg.conninfo.make_conninfo(external, user=demo_data.READER_ROLE)
        yield embedded.DemoDatabase(admin_dsn=external, reader_dsn=reader)
        return
    # Not under pytest's basetemp: Postgres runs as its own OS user, and a concurrent pytest
    # session resets the basetemp root to mode 0700, which would lock it out.
    data_dir = Path(tempfile.mkdtemp(prefix="pgwarden-test-pg-"))
    data_dir.chmod(0o755)
    pg = embedded.start(data_dir, delete_at_exit=True)
    yield embedded.ensure_demo_database(pg, size="small")


@pytest.fixture(scope="session")
def admin_dsn(demo_db: embedded.DemoDatabase) -> str:
    return demo_db.admin_dsn


@pytest.fixture(scope="session")
def reader_dsn(demo_db: embedded.DemoDatabase) -> str:
    return demo_db.reader_dsn
