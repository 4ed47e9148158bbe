"""`pgwarden proxy` as shipped, over HTTP: `--http-responses` / `http_responses:` pick SSE streams
or JSON bodies, a bad value is refused before anything starts, and the HTTP front runs on uvloop
(when installed) while a stdio proxy keeps asyncio's loop.

The processes are the real command line in front of pgwarden's server on the demo database.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
import yaml
from proxy_helpers import child_env, free_port, stop_process, wait_for_port

from pgwarden.proxy.relay.serve import HTTP_RESPONSES_ENV

ROOT = Path(__file__).resolve().parents[2]
PGWARDEN = str(Path(sys.executable).parent / "pgwarden")
POLICY = str(ROOT / "policies" / "analyst.yaml")
PRINCIPAL = '{"id": "ann", "roles": ["analyst"]}'
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "cli-front-test", "version": "0"},
    },
}


def _env() -> dict[str, str]:
    return {k: v for k, v in child_env().items() if k != HTTP_RESPONSES_ENV}


@contextmanager
def _proxy(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """`pgwarden proxy --listen http://…` with `args`; yields its URL and process id."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    log = tmp_path / f"proxy-{port}.log"
    command = [PGWARDEN, "proxy", "--listen", url, "--policy", POLICY, "--principal", PRINCIPAL,
               "--audit-log", str(tmp_path / "audit.jsonl"), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env=env if env is not None else _env())
        try:
            wait_for_port(port, process, log, timeout=60)
            yield url, process.pid
        finally:
            stop_process(process)


def _upstream(reader_dsn: str) -> list[str]:
    return ["--catalog-dsn", reader_dsn, "--", PGWARDEN, "server", "--dsn", reader_dsn]


def _content_type(url: str) -> str:
    response = httpx2.post(url, json=INITIALIZE, headers=ACCEPT, timeout=30)
    assert response.status_code == 200, response.text
    assert '"serverInfo"' in response.text  # a real answer, whatever its framing
    return response.headers["content-type"]


def _loads_uvloop(pid: int) -> bool:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "/uvloop/" in maps


@pytest.mark.parametrize(
    ("args", "environment", "expected"),
    [
        ([], None, "text/event-stream"),
        (["--http-responses", "json"], None, "application/json"),
        ([], "json", "application/json"),
        (["--http-responses", "sse"], "json", "text/event-stream"),  # the option wins
    ],
)
def test_the_answer_framing_follows_the_option_then_the_environment(
    reader_dsn: str, tmp_path: Path, args: list[str], environment: str | None, expected: str
) -> None:
    env = _env()
    if environment is not None:
        env[HTTP_RESPONSES_ENV] = environment
    with _proxy([*args, *_upstream(reader_dsn)], tmp_path, env) as (url, _pid):
        assert _content_type(url).startswith(expected)


def test_the_config_file_field_picks_json(reader_dsn: str, tmp_path: Path) -> None:
    config = tmp_path / "pgwarden.yaml"
    config.write_text(yaml.safe_dump({"http_responses": "json"}))
    with _proxy(["--config", str(config), *_upstream(reader_dsn)], tmp_path) as (url, _pid):
        assert _content_type(url).startswith("application/json")


def test_a_bad_answer_mode_in_the_config_is_refused_by_name(reader_dsn: str, tmp_path: Path) -> None:
    config = tmp_path / "pgwarden.yaml"
    config.write_text(yaml.safe_dump({"http_responses": "xml"}))
    done = subprocess.run(
        [PGWARDEN, "proxy", "--config", str(config), "--listen", f"http://127.0.0.1:{free_port()}/mcp",
         "--policy", POLICY, "--principal", PRINCIPAL, *_upstream(reader_dsn)],
        capture_output=True, text=True, timeout=60, env=_env(),
    )
    assert done.returncode == 2, done.stderr
    assert "http_responses" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_answer_mode_option_is_refused(reader_dsn: str) -> None:
    done = subprocess.run(
        [PGWARDEN, "proxy", "--http-responses", "xml", "--policy", POLICY, "--principal", PRINCIPAL,
         *_upstream(reader_dsn)],
        capture_output=True, text=True, timeout=60, env=_env(),
    )
    assert done.returncode == 2
    assert "--http-responses" in done.stderr and "xml" in done.stderr


def test_the_http_front_runs_on_uvloop(reader_dsn: str, tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    with _proxy(_upstream(reader_dsn), tmp_path) as (url, pid):
        _content_type(url)  # serving
        assert _loads_uvloop(pid)
