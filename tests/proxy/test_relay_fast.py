"""The relay's lean paths, byte for byte on real pipes: the stdio front's fast path (requests
of an initialised handshake-era connection, served without the SDK's dispatcher) and the
upstream pipe's raw request path (`proxy/relay/pipe.py`).

Every request below that follows the handshake takes the fast path; the ones before it, or
carrying a 2026-07-28 envelope, must still get the SDK's answers.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcp_types import INTERNAL_ERROR
from proxy_helpers import (
    ANALYST,
    PGWARDEN,
    RELAY_PROCESS,
    TEST_UPSTREAM,
    child_env,
    pgwarden_server_command,
    proxy_args,
)

from pgwarden.proxy.relay.pipe import RAW_ID_BASE, _error_of, _raw_id

UPSTREAM = [sys.executable, str(TEST_UPSTREAM)]
RAW_UPSTREAM = [sys.executable, str(Path(__file__).parent / "relay_fast_upstream.py")]


class RawClient:
    """Newline-delimited JSON-RPC on the proxy's own stdin/stdout, nothing in between."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._in = process.stdin
        self._out = process.stdout

    def send(self, message: dict[str, Any]) -> None:
        self._in.write(json.dumps(message).encode() + b"\n")
        self._in.flush()

    def read(self, timeout: float = 15.0) -> dict[str, Any]:
        ready, _, _ = select.select([self._out], [], [], timeout)
        assert ready, f"no line from the proxy within {timeout} s"
        line = self._out.readline()
        assert line, "the proxy closed its stdout"
        message: dict[str, Any] = json.loads(line)
        return message

    def close_input(self) -> None:
        self._in.close()

    def silent_for(self, seconds: float) -> bool:
        ready, _, _ = select.select([self._out], [], [], seconds)
        return not ready

    def request(self, rid: int | str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        answer = self.read()
        assert answer.get("id") == rid, answer
        return answer

    def call(self, rid: int | str, tool: str, text: str) -> str:
        return text_of(self.request(rid, "tools/call", {"name": tool, "arguments": {"text": text}}))

    def echo(self, rid: int | str, text: str) -> str:
        return self.call(rid, "echo", text)

    def handshake(self) -> None:
        answer = self.request(
            0,
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        )
        assert answer["result"]["serverInfo"]["name"] == "pgwarden-proxy"
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})


@contextmanager
def raw_proxy(*extra: str, upstream: list[str] = UPSTREAM) -> Iterator[RawClient]:
    process = subprocess.Popen(
        [sys.executable, str(RELAY_PROCESS), *extra, "--", *upstream],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    try:
        yield RawClient(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def text_of(answer: dict[str, Any]) -> str:
    content = answer["result"]["content"]
    assert content[0]["type"] == "text", answer
    text: str = content[0]["text"]
    return text


def test_fast_path_answers_calls_lists_pings_and_unknown_methods() -> None:
    with raw_proxy() as client:
        client.handshake()
        answer = client.request(1, "tools/call", {"name": "echo", "arguments": {"text": "über"}})
        assert answer["jsonrpc"] == "2.0" and text_of(answer) == "über"
        assert "resultType" not in answer["result"]  # a handshake-era client gets no 2026 keys
        # string ids come back verbatim
        assert client.echo("call-2", "b") == "b"
        names = {t["name"] for t in client.request(3, "tools/list")["result"]["tools"]}
        assert {"echo", "slow", "sleep"} <= names
        unknown = client.request(5, "tools/frobnicate", {})
        assert unknown["error"]["code"] == -32601 and unknown["error"]["data"] == "tools/frobnicate"
        bad = client.request(6, "tools/call", {"name": 7})
        assert bad["error"]["code"] == -32602
        # the proxy still serves after the errors
        assert client.echo(7, "c") == "c"


def test_ping_is_relayed_to_a_handshake_era_upstream() -> None:
    with raw_proxy("--protocol", "legacy") as client:
        client.handshake()
        assert client.request(1, "ping")["result"] == {}
        assert client.echo(2, "legacy upstream") == "legacy upstream"


def test_before_the_handshake_and_modern_envelopes_the_sdk_answers() -> None:
    with raw_proxy() as client:
        early = client.request(1, "tools/call", {"name": "echo", "arguments": {"text": "too early"}})
        assert "error" in early and "result" not in early
        client.handshake()
        enveloped = client.request(
            2,
            "tools/call",
            {
                "name": "echo",
                "arguments": {"text": "x"},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"},
            },
        )
        assert enveloped["error"]["code"] == -32600, enveloped
        assert client.echo(3, "ok") == "ok"


def test_cancelled_call_is_never_answered_and_the_upstream_is_told(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    with raw_proxy() as client:
        client.handshake()
        client.send(
            {
                "jsonrpc": "2.0",
                "id": "slow-1",
                "method": "tools/call",
                "params": {"name": "sleep", "arguments": {"seconds": 30, "marker": str(marker)}},
            }
        )
        time.sleep(0.5)
        client.send(
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow-1"}}
        )
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the upstream never saw the cancellation"
        assert client.silent_for(0.5), "a cancelled request was answered"
        # the next answer is the next call's: nothing was written for the cancelled one
        assert client.echo(2, "after") == "after"


def test_progress_is_written_live_with_the_clients_token() -> None:
    with raw_proxy() as client:
        client.handshake()
        client.send(
            {
                "jsonrpc": "2.0",
                "id": 9,
                "method": "tools/call",
                "params": {
                    "name": "slow",
                    "arguments": {"steps": 3, "delay": 0.2},
                    "_meta": {"progressToken": "tok-1"},
                },
            }
        )
        lines = [client.read() for _ in range(4)]
    progress = [m for m in lines if m.get("method") == "notifications/progress"]
    assert [p["params"]["progressToken"] for p in progress] == ["tok-1"] * 3
    assert [p["params"]["progress"] for p in progress] == [1.0, 2.0, 3.0]
    assert lines[-1]["id"] == 9 and text_of(lines[-1]) == "done after 3 steps"


def test_a_call_in_flight_when_the_client_hangs_up_is_answered_connection_closed(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    with raw_proxy() as client:
        client.handshake()
        client.send(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "sleep", "arguments": {"seconds": 30, "marker": str(marker)}},
            }
        )
        time.sleep(0.5)
        client.close_input()
        answer = client.read()
        assert answer["id"] == 3 and answer["error"]["code"] == -32000, answer
        assert client.process.wait(timeout=15) == 0


def test_a_result_larger_than_a_pipe_read_arrives_whole() -> None:
    text = "päyload-" * 40_000  # ~360 KB of UTF-8 in both directions: many reads of the pipe
    with raw_proxy() as client:
        client.handshake()
        answer = client.request(1, "tools/call", {"name": "echo", "arguments": {"text": text}})
        assert text_of(answer) == text
        assert client.echo(2, "x") == "x"


def test_the_per_call_timeout_holds_on_the_raw_path(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    with raw_proxy("--timeout", "1") as client:
        client.handshake()
        started = time.monotonic()
        answer = client.request(
            1, "tools/call", {"name": "sleep", "arguments": {"seconds": 30, "marker": str(marker)}}
        )
        assert time.monotonic() - started < 5
        assert answer["error"]["code"] == -32001 and "did not answer within 1 s" in answer["error"]["message"]
        assert client.echo(2, "y") == "y"


def test_an_upstream_answer_that_is_not_a_response_is_an_error() -> None:
    assert _error_of({"jsonrpc": "2.0", "id": 1, "error": "nope"}).code == INTERNAL_ERROR
    assert _error_of({"jsonrpc": "1.0", "id": 1, "error": {"code": 1, "message": "m"}}).code == INTERNAL_ERROR
    assert _error_of({"jsonrpc": "2.0", "id": 1, "result": [1]}).code == INTERNAL_ERROR
    error = {"code": -32602, "message": "bad", "data": 3}
    upstream_error = _error_of({"jsonrpc": "2.0", "id": 1, "error": error})
    assert (upstream_error.code, upstream_error.message, upstream_error.data) == (-32602, "bad", 3)


def test_ids_echoed_as_strings_match() -> None:
    assert _raw_id(str(RAW_ID_BASE + 5)) == RAW_ID_BASE + 5
    assert _raw_id(RAW_ID_BASE + 5) == RAW_ID_BASE + 5
    assert _raw_id(5) is None and _raw_id("5") is None and _raw_id(True) is None and _raw_id("x") is None


def test_a_misbehaving_upstream_gets_errors_not_hangs() -> None:
    with raw_proxy("--protocol", "legacy", "--timeout", "5", upstream=RAW_UPSTREAM) as client:
        client.handshake()
        started = time.monotonic()
        assert client.call(1, "string_id", "s") == "s"
        bad = client.request(2, "tools/call", {"name": "bad_result", "arguments": {}})
        assert bad["error"]["code"] == INTERNAL_ERROR and "invalid response" in bad["error"]["message"]
        assert time.monotonic() - started < 4, "an answer waited for the call timeout"
        assert client.call(3, "garbage_first", "g") == "g"
        assert client.call(4, "split", "ü" * 50) == "ü" * 50
        assert client.echo(5, "still serving") == "still serving"


SLOW_SQL = "SELECT count(*) FROM orders a CROSS JOIN orders b CROSS JOIN tenants t"  # seconds of work
QUICK_SQL = "SELECT id FROM products ORDER BY id LIMIT 1"


def test_real_gate_audits_each_fast_path_call_once_even_cancelled_or_cut_off(
    reader_dsn: str, tmp_path: Path
) -> None:
    """`pgwarden proxy` with its real gate: a call the client cancels, a normal call, and a call
    in flight when the client hangs up each leave exactly one audit record."""
    audit = tmp_path / "audit.jsonl"
    args = proxy_args(pgwarden_server_command(reader_dsn), ANALYST, audit=audit, catalog_dsn=reader_dsn)
    process = subprocess.Popen(
        [PGWARDEN, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    client = RawClient(process)
    try:
        client.handshake()
        query = {"name": "query", "arguments": {"sql": SLOW_SQL}}
        client.send({"jsonrpc": "2.0", "id": "slow", "method": "tools/call", "params": query})
        time.sleep(0.3)
        client.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow"}})
        quick = client.request(2, "tools/call", {"name": "query", "arguments": {"sql": QUICK_SQL}})
        assert quick["result"]["structuredContent"]["rows"] == [[1]], quick
        client.send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": query})
        time.sleep(0.3)
        client.close_input()
        cut_off = client.read()
        assert cut_off["id"] == 3 and cut_off["error"]["code"] == -32000, cut_off
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert sorted(r["request_id"] for r in records) == ["2", "3", "slow"], records
    assert all(r["tool"] == "query" and r["principal"] == "ann" for r in records)


def test_real_gate_answers_once_the_decision_is_journaled_and_records_after(
    reader_dsn: str, tmp_path: Path
) -> None:
    """On the fast path a journaled call's answer leaves once its decision is in the journal;
    its record, with the outcome, follows in the chain under the same intent."""
    from pgwarden.proxy.audit import verify_files
    from pgwarden.proxy.audit.journal import journal_path, read_journal

    audit = tmp_path / "audit.jsonl"
    args = proxy_args(pgwarden_server_command(reader_dsn), ANALYST, audit=audit, catalog_dsn=reader_dsn)
    process = subprocess.Popen(
        [PGWARDEN, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    client = RawClient(process)
    try:
        client.handshake()
        client.request(4, "tools/call", {"name": "query", "arguments": {"sql": QUICK_SQL}})  # the log's first
        answer = client.request(5, "tools/call", {"name": "query", "arguments": {"sql": QUICK_SQL}})
        assert answer["result"]["structuredContent"]["rows"] == [[1]], answer
        journaled = read_journal(journal_path(audit))
        assert journaled is not None
        (intent,) = [i for i in journaled.intents if i.entry["request_id"] == "5"]
        assert intent.entry["decision"] == "allow" and "rows" not in intent.entry
        deadline = time.monotonic() + 10
        records: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(records) < 2:
            records = [json.loads(line) for line in audit.read_text().splitlines()]
            time.sleep(0.01)
        assert [r["request_id"] for r in records] == ["4", "5"]
        assert (records[1]["intent"], records[1]["rows"]) == (intent.id, 1)
        client.close_input()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert journal_path(audit).stat().st_size == 0  # every decision has its durable record
    assert verify_files([audit]).ok
