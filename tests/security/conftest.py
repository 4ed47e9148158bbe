"""Fixtures of the security suite: a scratch copy of the demo database, its secrets, and
long-lived proxy sessions per principal (see `security_sessions`)."""

from __future__ import annotations

import os
import secrets as pysecrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from security_harness import (
    Secrets,
    create_scratch_database,
    database_fingerprint,
    drop_database,
    read_secrets,
    reader_of,
)
from security_sessions import ScratchDatabase, SessionPool

from pgwarden.server import embedded


@pytest.fixture(scope="session")
def scratch_db(demo_db: embedded.DemoDatabase) -> Iterator[ScratchDatabase]:
    """A database of our own on the test server, seeded exactly like the demo."""
    name = f"pgwarden_sec_{os.getpid()}_{pysecrets.token_hex(3)}"
    dsn = create_scratch_database(demo_db.admin_dsn, name)
    yield ScratchDatabase(name, dsn, reader_of(dsn))
    drop_database(demo_db.admin_dsn, name)


@pytest.fixture(scope="session")
def canary_file() -> Iterator[tuple[Path, str]]:
    """A file holding a random secret, readable by the Postgres server's OS user."""
    token = f"pgwarden-canary-{pysecrets.token_hex(16)}"
    fd, name = tempfile.mkstemp(prefix="pgwarden-canary-", suffix=".txt", dir=tempfile.gettempdir())
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    path = Path(name)
    path.chmod(0o644)
    yield path, token
    path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def db_secrets(scratch_db: ScratchDatabase, canary_file: tuple[Path, str]) -> Secrets:
    found = read_secrets(scratch_db.admin_dsn)
    found.common["canary_file"] = {canary_file[1]}
    return found


@pytest.fixture(scope="session")
def fingerprint_before(scratch_db: ScratchDatabase) -> dict[str, object]:
    return database_fingerprint(scratch_db.admin_dsn)


@pytest.fixture(scope="session")
def proxy_pool(scratch_db: ScratchDatabase, fingerprint_before: dict[str, object],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionPool]:
    pool = SessionPool(scratch_db, tmp_path_factory.mktemp("security-proxies"))
    yield pool
    pool.close()
