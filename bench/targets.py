"""The MCP endpoints a benchmark talks to, and how to start them.

A `Target` is one way of reaching a Postgres MCP server: directly, through `pgwarden proxy`,
or through a relay without policy. stdio targets are spawned by the client session itself;
HTTP targets are started with `launched()` and reached by URL.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PGWARDEN = str(BIN / "pgwarden")
REFERENCE_SERVER = (
    REPO
    / "tests"
    / "node"
    / "node_modules"
    / "@modelcontextprotocol"
    / "server-postgres"
    / "dist"
    / "index.js"
)
RELAY_VENV = REPO / "bench" / ".venv-relay"
MCP_PROXY = RELAY_VENV / "bin" / "mcp-proxy"
POLICIES = REPO / "bench" / "policies"
PRINCIPAL = {"id": "bench-analyst", "roles": ["analyst"], "tenant": 1}

PGWARDEN_SERVER = "pgwarden server"
REFERENCE = "server-postgres 0.6.2"


@dataclass(frozen=True)
class Target:
    label: str  # how the report names it ("direct", "pgwarden proxy", ...)
    upstream: str  # PGWARDEN_SERVER or REFERENCE
    transport: str  # "stdio" | "http"
    command: tuple[str, ...]  # stdio: what the client spawns; http: the process to launch
    port: int | None = None
    measured: str | None = None  # a cmdline fragment of the process whose CPU/RSS we read
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def key(self) -> str:
        return f"{self.transport}|{self.upstream}|{self.label}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_url(dsn: str) -> str:
    """A libpq conninfo (Unix socket) as a URL node-postgres accepts."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user, db, host = info.get("user", "postgres"), info.get("dbname", "postgres"), info.get("host", "")
    if str(host).startswith("/"):
        return f"postgresql://{user}@localhost/{db}?host={host}"
    return f"postgresql://{user}@{host}:{info.get('port', 5432)}/{db}"


def has_reference_server() -> bool:
    from shutil import which

    return which("node") is not None and REFERENCE_SERVER.exists()


def has_mcp_proxy() -> bool:
    return MCP_PROXY.exists()


def server_command(upstream: str, dsn: str) -> list[str]:
    if upstream == REFERENCE:
        return ["node", str(REFERENCE_SERVER), node_url(dsn)]
    return [PGWARDEN, "server", "--dsn", dsn]


def child_env() -> dict[str, str]:
    """The environment of spawned processes: ours, minus OpenTelemetry exporters."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def proxy_command(
    upstream_cmd: Sequence[str],
    *,
    policy: str,
    catalog_dsn: str,
    audit: Path,
    listen: str | None = None,
    principal: dict[str, object] | None = None,
) -> list[str]:
    cmd = [
        PGWARDEN,
        "proxy",
        "--policy",
        str(POLICIES / f"{policy}.yaml"),
        "--principal",
        json.dumps(principal or PRINCIPAL),
        "--catalog-dsn",
        catalog_dsn,
        "--audit-log",
        str(audit),
    ]
    if listen:
        cmd += ["--listen", listen]
    return [*cmd, "--", *upstream_cmd]


def plain_relay_command(upstream_cmd: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "bench.plain_relay", "--", *upstream_cmd]


def byte_relay_command(upstream_cmd: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "bench.byte_relay", "--", *upstream_cmd]


def asyncio_relay_command(upstream_cmd: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "bench.asyncio_relay", "--", *upstream_cmd]


def passthrough_command(upstream_cmd: Sequence[str], listen: str | None = None) -> list[str]:
    extra = ["--listen", listen] if listen else []
    return [sys.executable, "-m", "bench.passthrough_relay", *extra, "--", *upstream_cmd]


def mcp_proxy_command(upstream_cmd: Sequence[str], port: int) -> list[str]:
    return [
        str(MCP_PROXY),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--pass-environment",
        "--log-level",
        "WARNING",
        "--",
        *upstream_cmd,
    ]


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


@contextmanager
def launched_all(targets: Sequence[Target], timeout: float = 60.0) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`launched` for several targets, started together (their start-ups overlap)."""
    with ExitStack() as stack:
        starting = [stack.enter_context(launched(t, timeout, wait=False)) for t in targets]
        for target, proc in zip(targets, starting, strict=True):
            assert target.port is not None
            _wait_port(target.port, proc, timeout)
        yield starting


@contextmanager
def launched(
    target: Target, timeout: float = 60.0, *, wait: bool = True
) -> Iterator[subprocess.Popen[bytes]]:
    """Start an HTTP target's process, wait until it listens (unless `wait` is false), stop it
    on exit."""
    assert target.port is not None
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        target.command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env={**child_env(), **target.env},
        cwd=REPO,
    )
    try:
        try:
            if wait:
                _wait_port(target.port, proc, timeout)
        except Exception:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-2000:])
            raise
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
