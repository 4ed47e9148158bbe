"""Shared pieces of the security suite's fixtures: the scratch database, the pool of
long-lived proxy sessions per principal (started on first use, a few kept open at a time).
(Named uniquely: test modules import this, never `conftest`.)

The upstream of the attack sessions is `pgwarden server` connected as the database OWNER (a
superuser) with its own SQL check switched off (`--no-statement-check`) and its row cap raised:
the proxy is then the only SQL-level wall, so a case that gets through is a proxy failure, not
hidden by the server's own hardening (its read-only transaction still runs, as it would in any
deployment). That is why the suite runs on its own database, seeded like the demo: a failure
cannot damage the shared one.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from security_harness import (
    PRINCIPALS,
    McpSession,
    proxy_command,
    server_command,
    stdio_proxy_session,
)


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


