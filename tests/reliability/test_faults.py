"""Faults under load: the proxy keeps serving, every failed call gets a clear error, nothing is
lost (one audit record per call, every answer echoes its own marker) and nothing is let through.

- the upstream MCP server is killed (SIGKILL) mid-load and restarted by the proxy's supervisor;
- PostgreSQL (a private pgserver instance, not the shared test database) restarts mid-query;
- a hanging and a slow upstream call next to fast ones (the call timeout bounds the hang);
- a client disconnects with a call in flight;
- the policy file is rewritten (non-atomically, sometimes invalid) under load;
- the audit sink is full (/dev/full) or its path cannot be created.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from load_driver import LoadStats, audit_records, run_load
from mcp import Client
from pgserver._commands import pg_ctl
from pgserver.postgres_server import get_server
from reliability_profile import FAULT_LOAD
from security_harness import (
    PRINCIPALS,
    RAW,
    McpSession,
    ProxyProcess,
    clean_env,
    free_port,
    proxy_command,
    server_command,
    stdio_proxy_session,
)

from pgwarden.proxy.audit import verify_files
from pgwarden.proxy.policy import load_policy
from pgwarden.server import embedded

FAKE_UPSTREAM = [sys.executable, str(Path(__file__).with_name("fake_upstream.py"))]
RECOVERY_S = 30.0
ANALYST = PRINCIPALS["analyst"]


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(t) for t in text]
    return found


def upstream_pid(proxy_pid: int, needle: str) -> int:
    for child in children(proxy_pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if needle in cmdline:
            return child
    raise AssertionError(f"no upstream child matching {needle!r}")


def http_proxy(tmp: Path, upstream: list[str], catalog_dsn: str, *, policy: list[Path] | None = None,
               call_timeout_s: float = 20.0, audit: Path | None = None) -> ProxyProcess:
    port = free_port()
    command = proxy_command(
        ANALYST, upstream=upstream, catalog_dsn=catalog_dsn, audit_log=audit or tmp / "audit.jsonl",
        listen=f"http://127.0.0.1:{port}/mcp", call_timeout_s=call_timeout_s, policy_paths=policy,
    )
    return ProxyProcess(command, log_dir=tmp, port=port)


def assert_accounted(stats: LoadStats, audit: Path, before: int) -> None:
    """No call lost, none crossed over, each failure a clear message, one record per call."""
    assert stats.mixed == 0, stats.errors
    assert stats.sessions_failed == 0, stats.errors
    assert stats.ok + stats.refused + stats.rpc_errors == stats.attempts
    assert not any("Traceback" in e for e in stats.errors), stats.errors
    assert all(e.strip() for e in stats.errors), "an error without a message"
    deadline = time.monotonic() + 10
    while len(audit_records(audit)) - before < stats.attempts and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(audit_records(audit)) - before == stats.attempts, stats.as_dict()


def recovered(url: str, sql: str = "SELECT 1 AS marker") -> bool:
    """Whether a fresh session gets a correct answer within RECOVERY_S."""
    deadline = time.monotonic() + RECOVERY_S
    while time.monotonic() < deadline:
        with McpSession(url) as session:
            reply = session.query(sql)
            if not reply.is_error:
                return True
        time.sleep(0.5)
    return False


def load_with(url: str, fault: Any, *, at: float, sql: Any = None) -> LoadStats:
    """Run the fault profile's load and call `fault()` (in a thread) `at` seconds in."""
    async def main() -> LoadStats:
        stats = LoadStats()
        async with anyio.create_task_group() as tg:
            async def inject() -> None:
                await anyio.sleep(at)
                await anyio.to_thread.run_sync(fault)
            tg.start_soon(inject)
            kwargs = {"sql": sql} if sql is not None else {}
            await run_load(url, sessions=FAULT_LOAD.sessions, seconds=FAULT_LOAD.seconds, stats=stats,
                           **kwargs)
        return stats
    return anyio.run(main)


def _slow_sql(n: int) -> str:
    return f"SELECT {n} AS marker FROM (SELECT count(*) FROM generate_series(1, 200000)) s"


def test_upstream_killed_mid_load_is_restarted(reader_dsn: str, tmp_path: Path, record_property: Any) -> None:
    proxy = http_proxy(tmp_path, server_command(reader_dsn), reader_dsn)
    try:
        audit = tmp_path / "audit.jsonl"
        killed: list[int] = []

        def kill() -> None:
            pid = upstream_pid(proxy.process.pid, "pgwarden.server")
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        stats = load_with(proxy.url, kill, at=FAULT_LOAD.seconds / 3)
        record_property("fault_upstream_killed", json.dumps(stats.as_dict()))
        print(stats.as_dict())
        assert killed and proxy.alive()
        assert_accounted(stats, audit, 0)
        assert recovered(proxy.url), "the proxy did not serve again after the upstream restart"
        assert upstream_pid(proxy.process.pid, "pgwarden.server") != killed[0]
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def private_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, embedded.DemoDatabase]]:
    """A pgserver instance of our own (it gets restarted), seeded with the tiny demo."""
    data_dir = tmp_path_factory.mktemp("private-pg")
    server = get_server(str(data_dir), cleanup_mode="stop")
    pg = embedded.EmbeddedPostgres(data_dir=data_dir, admin_dsn=server.get_uri())
    yield server, embedded.ensure_demo_database(pg, size="tiny")
    server.cleanup()  # stops the postmaster it started; a restarted one is stopped here:
    if (data_dir / "postmaster.pid").exists():
        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)


def test_postgres_restart_mid_query(private_postgres: tuple[Any, embedded.DemoDatabase], tmp_path: Path,
                                    record_property: Any) -> None:
    server, demo = private_postgres
    proxy = http_proxy(tmp_path, server_command(demo.reader_dsn), demo.reader_dsn)
    try:
        def restart() -> None:
            pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=30)

        # Each call keeps Postgres busy for a moment, so the restart lands mid-query.
        stats = load_with(proxy.url, restart, at=FAULT_LOAD.seconds / 3, sql=_slow_sql)
        record_property("fault_postgres_restart", json.dumps(stats.as_dict()))
        print(stats.as_dict())
        assert proxy.alive()
        assert_accounted(stats, tmp_path / "audit.jsonl", 0)
        assert recovered(proxy.url), "no correct answer after Postgres came back"
    finally:
        proxy.stop()


def test_hanging_and_slow_upstream_calls_are_bounded(tmp_path: Path, reader_dsn: str) -> None:
    command = proxy_command(ANALYST, upstream=FAKE_UPSTREAM, catalog_dsn=reader_dsn,
                            audit_log=tmp_path / "audit.jsonl", call_timeout_s=2.0)
    with stdio_proxy_session(command) as session:
        results: dict[str, Any] = {}

        def call(name: str, sql: str) -> None:
            results[name] = session.query(sql)

        threads = [threading.Thread(target=call, args=("hang", "SELECT 'hang' AS mode")),
                   threading.Thread(target=call, args=("slow", "SELECT 'slow' AS mode"))]
        for t in threads:
            t.start()
        time.sleep(0.2)
        fast = [session.query(f"SELECT {n} AS marker") for n in range(5)]
        for t in threads:
            t.join(timeout=30)
        hang, slow = results["hang"], results["slow"]
        assert hang.is_error and hang.elapsed_s < 10, hang.summary()
        assert "did not answer within 2 s" in hang.text, hang.summary()
        assert not slow.is_error and "'slow'" in slow.text, slow.summary()
        assert all(not r.is_error and r.elapsed_s < 1.5 for r in fast), [r.summary() for r in fast]
        after = session.query("SELECT 'fine' AS mode")
        assert not after.is_error, after.summary()
    assert len(audit_records(tmp_path / "audit.jsonl")) == 8


def test_client_disconnect_mid_call(tmp_path: Path, reader_dsn: str) -> None:
    proxy = http_proxy(tmp_path, FAKE_UPSTREAM, reader_dsn, call_timeout_s=3.0)
    try:
        async def abandon() -> None:
            with anyio.move_on_after(0.7):
                async with Client(proxy.url, mode="legacy") as client:
                    request = types.CallToolRequest(params=types.CallToolRequestParams(
                        name="query", arguments={"sql": "SELECT 'hang' AS mode"}))
                    await client.session.send_request(request, RAW)

        for _ in range(3):
            anyio.run(abandon)
        assert proxy.alive()
        with McpSession(proxy.url) as session:
            reply = session.query("SELECT 'after' AS mode")
            assert not reply.is_error, reply.summary()
        deadline = time.monotonic() + 15
        while len(audit_records(tmp_path / "audit.jsonl")) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        records = audit_records(tmp_path / "audit.jsonl")
        assert len(records) == 4, records  # three abandoned calls and one answered, each once
    finally:
        proxy.stop()


def test_a_proxy_killed_mid_call_leaves_that_calls_decision_in_the_chain(
    tmp_path: Path, reader_dsn: str
) -> None:
    """SIGKILL while the upstream works on an allowed call: the decision was journaled before the
    call was forwarded, so the next start records it (outcome unknown); nothing is recorded twice."""
    audit = tmp_path / "audit.jsonl"
    journal = tmp_path / ".audit.jsonl.journal"
    proxy = http_proxy(tmp_path, FAKE_UPSTREAM, reader_dsn, call_timeout_s=30.0)
    try:
        with McpSession(proxy.url) as session:
            assert not session.query("SELECT 'first' AS mode").is_error
            hung = threading.Thread(target=session.query, args=("SELECT 'hang' AS mode",), daemon=True)
            hung.start()
            deadline = time.monotonic() + 15
            while journal.read_bytes().count(b'"intent"') < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert journal.read_bytes().count(b'"intent"') == 2
            proxy.process.kill()
            proxy.process.wait()
    finally:
        proxy.stop()
    assert [r.get("reason_code") for r in audit_records(audit)] == [None]  # the hung call: no record yet
    restarted = http_proxy(tmp_path, FAKE_UPSTREAM, reader_dsn)
    try:
        with McpSession(restarted.url) as session:
            assert not session.query("SELECT 'after' AS mode").is_error
    finally:
        restarted.stop()
    first, lost, after = audit_records(audit)
    assert lost["reason_code"] == "audit.outcome_lost" and lost["decision"] == "allow"
    assert lost["principal"] == ANALYST.principal["id"] and lost["rows"] is None
    assert "hang" not in json.dumps(lost)  # literals stay redacted in the recovered record
    assert lost["sql_sent"]["text"] == first["sql_sent"]["text"]  # same shape, other literal
    assert lost["intent"] != first["intent"]
    assert after.get("reason_code") is None and after["seq"] == lost["seq"] + 1
    assert journal.read_bytes().count(b'"intent"') == 0
    assert verify_files([audit]).ok


POLICY_TEMPLATE = """\
version: 1
description: Reload test ({label}).
rules:
  - id: reload.orders
    effect: allow
    when: '"analyst" in principal.roles'
    tools: [query]
    tables: [public.orders]
    row_cap: {cap}
"""


def _write_slowly(path: Path, text: str) -> None:
    """Truncate, write half, pause, write the rest: a watcher may see the half-written file."""
    with path.open("w") as f:
        f.write(text[: len(text) // 2])
        f.flush()
        time.sleep(0.01)
        f.write(text[len(text) // 2:])


def test_policy_reloaded_under_load_is_never_seen_half_loaded(tmp_path: Path, reader_dsn: str) -> None:
    versions = {5: POLICY_TEMPLATE.format(label="A", cap=5), 7: POLICY_TEMPLATE.format(label="B", cap=7)}
    revisions = {}
    for cap, text in versions.items():
        probe = tmp_path / f"probe-{cap}.yaml"
        probe.write_text(text)
        revisions[load_policy([probe]).revision] = cap
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    policy = policy_dir / "policy.yaml"
    policy.write_text(versions[5])
    proxy = http_proxy(tmp_path, server_command(reader_dsn), reader_dsn, policy=[policy])
    stop = threading.Event()

    def rewrite() -> None:
        cycle = 0
        while not stop.is_set():
            cycle += 1
            if cycle % 4 == 0:
                _write_slowly(policy, "version: 1\nrules:\n  - id: [broken\n")  # invalid: kept out
            _write_slowly(policy, versions[7 if cycle % 2 else 5])
            time.sleep(0.15)

    counts: list[int] = []
    failures: list[str] = []

    async def load() -> None:
        deadline = time.monotonic() + FAULT_LOAD.seconds

        async def worker() -> None:
            async with Client(proxy.url, mode="legacy") as client:
                while time.monotonic() < deadline:
                    request = types.CallToolRequest(params=types.CallToolRequestParams(
                        name="query", arguments={"sql": "SELECT id FROM orders"}))
                    raw = await client.session.send_request(request, RAW)
                    if raw.get("isError"):
                        failures.append(str(raw.get("content"))[:200])
                    else:
                        counts.append(len(raw["structuredContent"]["rows"]))

        async with anyio.create_task_group() as tg:
            for _ in range(FAULT_LOAD.sessions):
                tg.start_soon(worker)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        anyio.run(load)
    finally:
        stop.set()
        writer.join()
        proxy.stop()
    assert not failures, failures[:3]
    assert set(counts) <= {5, 7}, sorted(set(counts))
    seen = {r.get("policy_revision") for r in audit_records(tmp_path / "audit.jsonl")}
    assert seen <= set(revisions), seen
    assert len(seen) == 2, "the policy was never reloaded during the load"
    assert len(audit_records(tmp_path / "audit.jsonl")) == len(counts)


def test_full_audit_sink_denies_every_call_and_keeps_serving(tmp_path: Path, reader_dsn: str) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.symlink_to("/dev/full")
    command = proxy_command(ANALYST, upstream=server_command(reader_dsn), catalog_dsn=reader_dsn,
                            audit_log=audit)
    with stdio_proxy_session(command) as session:
        for _ in range(5):
            reply = session.query("SELECT count(*) FROM products")
            assert reply.is_error, reply.summary()
            assert "audit record" in reply.text, reply.summary()
            assert reply.rows == [] and "60" not in reply.text
        denied = session.query("SELECT api_key FROM secrets")
        assert denied.is_error


def _start_with_unwritable_audit(tmp_path: Path, reader_dsn: str) -> subprocess.CompletedProcess[str]:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    command = proxy_command(ANALYST, upstream=server_command(reader_dsn), catalog_dsn=reader_dsn,
                            audit_log=blocker / "audit.jsonl")
    return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=clean_env(),
                          timeout=60)


def test_unwritable_audit_path_refuses_to_start(tmp_path: Path, reader_dsn: str) -> None:
    done = _start_with_unwritable_audit(tmp_path, reader_dsn)
    assert done.returncode != 0


def test_unwritable_audit_path_is_reported_in_one_clear_line(tmp_path: Path, reader_dsn: str) -> None:
    done = _start_with_unwritable_audit(tmp_path, reader_dsn)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "audit" in done.stderr


