"""Fixtures of the security suite: a scratch copy of the demo database, its secrets, and
long-lived proxy sessions per principal (started on first use, a few kept open at a time).

The upstream of the attack sessions is `pgwarden server` connected as the database OWNER (a
superuser) with its own SQL check switched off (`--no-statement-check`) and its row cap raised:
the proxy is then the only SQL-level wall, so a case that gets through is a proxy failure, not
hidden by the server's own hardening (its read-only transaction still runs, as it would in any
deployment). That is why the suite runs on its own database, seeded like the demo: a failure
cannot damage the shared one.
"""

from __future__ import annotations

import importlib.util
import os
import secrets as pysecrets
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from security_harness import (
    PRINCIPALS,
    McpSession,
    Secrets,
    create_scratch_database,
    database_fingerprint,
    drop_database,
    proxy_command,
    read_secrets,
    reader_of,
    server_command,
    stdio_proxy_session,
)

from pgwarden.server import embedded


def _proxy_helpers() -> Any:
    """The proxy tests' helpers (reference server command, node checks), from tests/proxy."""
    path = Path(__file__).resolve().parent.parent / "proxy" / "proxy_helpers.py"
    spec = importlib.util.spec_from_file_location("pgwarden_test_proxy_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


PROXY_HELPERS = _proxy_helpers()
REFERENCE = "reference:"  # session key prefix: the same principal in front of server-postgres 0.6.2

OPEN_SESSIONS = 3  # proxies kept open at once (each is a proxy and a server process)


@dataclass(frozen=True)
class ScratchDatabase:
    name: str
    admin_dsn: str
    reader_dsn: str


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


class SessionPool:
    """One stdio proxy session per principal, at most `OPEN_SESSIONS` open at a time."""

    def __init__(self, scratch: ScratchDatabase, log_dir: Path) -> None:
        self.scratch = scratch
        self.log_dir = log_dir
        self.open: OrderedDict[str, McpSession] = OrderedDict()
        self.calls: dict[str, int] = {}  # principal -> calls made (for the audit count)

    def audit_path(self, key: str) -> Path:
        return self.log_dir / f"audit-{key.replace(':', '-')}.jsonl"

    def get(self, key: str) -> McpSession:
        if key in self.open:
            self.open.move_to_end(key)
            return self.open[key]
        while len(self.open) >= OPEN_SESSIONS:
            _, oldest = self.open.popitem(last=False)
            oldest.__exit__(None, None, None)
        if key.startswith(REFERENCE):
            # The reference server runs whatever it gets in a READ ONLY transaction that
            # `COMMIT; …` escapes: with the owner's DSN, only the proxy stands in the way.
            upstream = PROXY_HELPERS.reference_command(self.scratch.admin_dsn)
        else:
            upstream = server_command(
                self.scratch.admin_dsn, "--no-statement-check", "--max-rows", "100000",
                "--max-result-bytes", "50000000",
            )
        command = proxy_command(
            PRINCIPALS[key.removeprefix(REFERENCE)], upstream=upstream, catalog_dsn=self.scratch.reader_dsn,
            audit_log=self.audit_path(key),
        )
        session = stdio_proxy_session(command).__enter__()
        self.open[key] = session
        return session

    def close(self) -> None:
        while self.open:
            _, session = self.open.popitem()
            session.__exit__(None, None, None)


@pytest.fixture(scope="session")
def proxy_pool(scratch_db: ScratchDatabase, fingerprint_before: dict[str, object],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionPool]:
    pool = SessionPool(scratch_db, tmp_path_factory.mktemp("security-proxies"))
    yield pool
    pool.close()
