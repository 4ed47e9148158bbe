"""Server processes shared by the server tests (one of each per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_helpers import ATTACK_TIMEOUT_MS, HttpServer


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def reader_http(reader_dsn: str, server_logs) -> Iterator[HttpServer]:
    """The server over HTTP with the demo's SELECT-only role (the default deployment)."""
    server = HttpServer(reader_dsn, log_dir=server_logs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def admin_http(admin_dsn: str, server_logs) -> Iterator[HttpServer]:
    """The server with the SUPERUSER DSN: only the server's own hardening stands in the way."""
    server = HttpServer(admin_dsn, "--statement-timeout-ms", str(ATTACK_TIMEOUT_MS), log_dir=server_logs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def admin_unchecked_http(admin_dsn: str, server_logs) -> Iterator[HttpServer]:
    """Superuser DSN and no pglast check: only the Postgres-level layers stand in the way."""
    server = HttpServer(admin_dsn, "--no-statement-check", "--statement-timeout-ms", str(ATTACK_TIMEOUT_MS),
                        log_dir=server_logs)
    yield server
    server.stop()
