"""Load: many concurrent Streamable HTTP sessions against one proxy process.

Short in CI (50 sessions for about 10 s), long under `PGWARDEN_SOAK=1` (200 sessions for a
minute). Every call carries a unique marker its answer must echo: zero lost, zero mixed-up
responses, and exactly one audit record per call in a chain that verifies.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from load_driver import audit_records, run_load
from reliability_profile import LOAD
from security_harness import PGWARDEN, PRINCIPALS, ProxyProcess, free_port, proxy_command, server_command


@pytest.fixture(scope="module")
def load_proxy(reader_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    logs = tmp_path_factory.mktemp("load")
    port = free_port()
    command = proxy_command(
        PRINCIPALS["analyst"], upstream=server_command(reader_dsn, "--pool-size", "8"),
        catalog_dsn=reader_dsn, audit_log=logs / "audit.jsonl", listen=f"http://127.0.0.1:{port}/mcp",
        call_timeout_s=60,
    )
    proxy = ProxyProcess(command, log_dir=logs, port=port)
    yield proxy
    proxy.stop()


def test_concurrent_sessions_lose_and_mix_nothing_and_audit_every_call(
    load_proxy: ProxyProcess, record_property: Any
) -> None:
    audit = load_proxy.stderr_path.parent / "audit.jsonl"
    before = len(audit_records(audit))
    stats = anyio.run(lambda: run_load(load_proxy.url, sessions=LOAD.sessions, seconds=LOAD.seconds))
    summary = {"sessions": LOAD.sessions, "seconds": LOAD.seconds, **stats.as_dict()}
    record_property("load", json.dumps(summary))
    print(stats.as_dict())
    assert stats.sessions_failed == 0, stats.errors
    assert stats.attempts > LOAD.sessions, "every session made calls"
    assert stats.mixed == 0, stats.errors
    assert stats.ok == stats.attempts, f"{stats.attempts - stats.ok} calls lost or failed: {stats.errors}"
    deadline = time.monotonic() + 10  # a call's record may follow its answer by a moment
    while len(records := audit_records(audit)[before:]) < stats.attempts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(records) == stats.attempts, f"{stats.attempts} calls, {len(records)} audit records"
    assert all(r["decision"] == "allow" for r in records)
    assert load_proxy.alive()
    verify = subprocess.run([PGWARDEN, "audit", "verify", str(audit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
