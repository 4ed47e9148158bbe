"""`pgwarden server --transport http --http-responses json` (or `PGWARDEN_HTTP_RESPONSES=json`)
answers with one JSON body per request, and a query still returns the database's rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import psycopg
import pytest

PGWARDEN = str(Path(sys.executable).parent / "pgwarden")
ENV = "PGWARDEN_HTTP_RESPONSES"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PROTOCOL = "2025-06-18"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def _server(reader_dsn: str, tmp_path: Path, args: list[str], env_value: str | None) -> Iterator[str]:
    import socket
    import time

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if env_value is not None:
        env[ENV] = env_value
    log = tmp_path / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PGWARDEN, "server", "--dsn", reader_dsn, "--transport", "http", "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            process.terminate()
            process.wait(timeout=10)


def _post(
    client: httpx2.Client, url: str, message: dict[str, object], session: str | None
) -> httpx2.Response:
    headers = dict(ACCEPT)
    if session is not None:
        headers.update({"mcp-session-id": session, "mcp-protocol-version": PROTOCOL})
    return client.post(url, json=message, headers=headers)


@pytest.mark.parametrize(("args", "env_value", "expected"), [
    ([], None, "text/event-stream"),
    (["--http-responses", "json"], None, "application/json"),
    ([], "json", "application/json"),
])
def test_the_server_answers_in_the_chosen_framing(
    reader_dsn: str, admin_dsn: str, tmp_path: Path, args: list[str], env_value: str | None, expected: str
) -> None:
    with _server(reader_dsn, tmp_path, args, env_value) as url, httpx2.Client(timeout=30) as client:
        hello = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
        init = _post(client, url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}, None)
        assert init.status_code == 200, init.text
        assert init.headers["content-type"].startswith(expected)
        session = init.headers["mcp-session-id"]
        ack = _post(client, url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        assert ack.status_code == 202
        call = _post(client, url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "query", "arguments": {"sql": "SELECT count(*) AS n FROM products"}}}, session)
        assert call.headers["content-type"].startswith(expected)
        body = call.text if expected == "application/json" else next(
            line[5:] for line in call.text.splitlines() if line.startswith("data:") and '"id":2' in line)
        answer = json.loads(body)
        with psycopg.connect(admin_dsn) as conn:
            count = conn.execute("SELECT count(*) FROM products").fetchone()
        assert count is not None
        assert answer["result"]["structuredContent"]["rows"] == [[count[0]]]


def test_a_bad_framing_is_refused(reader_dsn: str) -> None:
    done = subprocess.run([PGWARDEN, "server", "--dsn", reader_dsn, "--transport", "http",
                           "--http-responses", "xml"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--http-responses" in done.stderr
