"""Running proxies for the tests: where things are, stdio client parameters, an HTTP proxy
process, result rows. (Named uniquely: test modules import it, never `conftest`.)"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from mcp import StdioServerParameters
from mcp_types import CallToolResult

HERE = Path(__file__).parent
REPO = HERE.parent.parent
NODE_DIR = REPO / "tests" / "node"
REFERENCE_SERVER = (
    NODE_DIR / "node_modules" / "@modelcontextprotocol" / "server-postgres" / "dist" / "index.js"
)
POLICY = HERE / "policies" / "relay.yaml"
PGWARDEN = str(Path(sys.executable).parent / "pgwarden")

ANALYST = {"id": "ann", "roles": ["analyst"]}
SUPPORT = {"id": "sam", "roles": ["support"], "tenant": 2}
NOBODY = {"id": "ivy", "roles": []}


def node_url(dsn: str) -> str:
    """A libpq conninfo (Unix socket) as a URL node-postgres accepts."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user, db, host = info.get("user", "postgres"), info.get("dbname", "postgres"), info.get("host", "")
    if str(host).startswith("/"):
        return f"postgresql://{user}@localhost/{db}?host={host}"
    return f"postgresql://{user}@{host}:{info.get('port', 5432)}/{db}"


def has_node() -> bool:
    return shutil.which("node") is not None and REFERENCE_SERVER.exists()


def reference_command(dsn: str) -> list[str]:
    return ["node", str(REFERENCE_SERVER), node_url(dsn)]


def pgwarden_server_command(dsn: str) -> list[str]:
    return [PGWARDEN, "server", "--dsn", dsn]


def proxy_args(
    upstream: list[str],
    principal: dict[str, object],
    *,
    audit: Path,
    catalog_dsn: str,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """`pgwarden proxy …` arguments for a stdio proxy in front of `upstream`."""
    return [
        "proxy",
        "--policy",
        str(POLICY),
        "--principal",
        json.dumps(principal),
        "--catalog-dsn",
        catalog_dsn,
        "--audit-log",
        str(audit),
        *extra,
        "--",
        *upstream,
    ]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


RELAY_PROCESS = HERE / "relay_process.py"
TEST_UPSTREAM = HERE / "upstream_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stdio_params(args: list[str]) -> StdioServerParameters:
    """`pgwarden <args>` as a stdio MCP server."""
    return StdioServerParameters(command=PGWARDEN, args=args, env=child_env())


def relay_params(*args: str) -> StdioServerParameters:
    """The relay with a test gate (tests/proxy/relay_process.py)."""
    return StdioServerParameters(command=sys.executable, args=[str(RELAY_PROCESS), *args], env=child_env())


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open: {log.read_text(errors='replace')[-2000:]}")


@contextmanager
def http_process(args: list[str], *, port: int, log: Path) -> Iterator[str]:
    """Run `args` (a process serving MCP on `port`) and yield its URL."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=child_env())
        try:
            wait_for_port(port, process, log)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def rpc_answer(response: Any) -> dict[str, Any]:
    """The JSON-RPC answer in an HTTP response, whether a JSON body or an SSE stream."""
    kind = response.headers.get("content-type", "")
    if kind.startswith("application/json"):
        answer: dict[str, Any] = response.json()
        return answer
    assert kind.startswith("text/event-stream"), kind
    for line in response.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            data: dict[str, Any] = json.loads(line[5:])
            if "id" in data:
                return data
    raise AssertionError(f"no answer in the stream: {response.text[:500]}")


def result_text(result: CallToolResult) -> str:
    """Everything the client received, as one string (text items and structured content)."""
    parts = [getattr(c, "text", "") for c in result.content]
    if result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, default=str))
    return "\n".join(parts)


def rows(result: CallToolResult) -> list[dict[str, Any]]:
    """The rows of a result of pgwarden's server (structured) or the reference server (JSON text)."""
    assert not result.is_error, result_text(result)
    sc = result.structured_content
    if sc is not None and "rows" in sc:
        names = [c["name"] for c in sc["columns"]]
        return [dict(zip(names, r, strict=True)) for r in sc["rows"]]
    data = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert isinstance(data, list)
    return data


def db_values(dsn: str, sql: str) -> list[Any]:
    """Every value of a query's rows, as strings (to look for in proxied output)."""
    with psycopg.connect(dsn) as conn:
        return [str(v) for row in conn.execute(sql).fetchall() for v in row if v is not None]
