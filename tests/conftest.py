"""Shared fixtures: one real PostgreSQL per test session.

By default an embedded PostgreSQL (pgserver) in a temporary directory, seeded with the demo
database; set PGWARDEN_TEST_DSN to an *empty* database you own to test against another server
(it is seeded the same way).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from pgwarden.server import demo_data, embedded


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.DemoDatabase]:
    """The seeded demo database: `.admin_dsn` (owner) and `.reader_dsn` (SELECT-only role)."""
    external = os.environ.get("PGWARDEN_TEST_DSN")
    if external:
        demo_data.seed_if_empty(external, size="small")
        reader = psycopg.conninfo.make_conninfo(external, user=demo_data.READER_ROLE)
        yield embedded.DemoDatabase(admin_dsn=external, reader_dsn=reader)
        return
    pg = embedded.start(tmp_path_factory.mktemp("pg"), stop_at_exit=True)
    yield embedded.ensure_demo_database(pg, size="small")


@pytest.fixture(scope="session")
def admin_dsn(demo_db: embedded.DemoDatabase) -> str:
    return demo_db.admin_dsn


@pytest.fixture(scope="session")
def reader_dsn(demo_db: embedded.DemoDatabase) -> str:
    return demo_db.reader_dsn
