"""JSON-RPC frame fuzzing at the proxy's transports.

Raw bytes go to a real `pgwarden proxy` process: garbage lines and mutated JSON-RPC frames on its
stdin, garbage and mutated POST bodies (with and without a session, with odd headers) to its
Streamable HTTP endpoint. Each frame must be answered with a JSON-RPC error (or a 4xx, or
ignored), never crash the process; after each one a valid `tools/call` must still get its
correct answer. Every line the proxy writes to stdout must be a JSON-RPC message.

Budget: `FRAME_EXAMPLES` per transport (more under `PGWARDEN_SOAK=1`).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_harness import (
    PRINCIPALS,
    McpSession,
    ProxyProcess,
    clean_env,
    free_port,
    proxy_command,
    server_command,
)
from security_sessions import ScratchDatabase

SOAK = os.environ.get("PGWARDEN_SOAK") == "1"
FRAME_EXAMPLES = 1500 if SOAK else 120
PROBE_SQL = "SELECT count(*) FROM products"
PROTOCOL = "2025-11-25"

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=30),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
METHODS = st.sampled_from([
    "tools/call", "tools/list", "resources/read", "resources/list", "prompts/get", "initialize",
    "notifications/initialized", "notifications/cancelled", "ping", "logging/setLevel",
    "completion/complete", "server/discover", "sampling/createMessage", "tools/call ", "TOOLS/CALL",
    "", "x" * 300, "rpc.discover",
])
SQLS = st.sampled_from([
    "SELECT api_key FROM secrets", "SELECT 1; DELETE FROM orders", PROBE_SQL, "",
    "SELECT national_id FROM customers",
])


@st.composite
def rpc_frames(draw: st.DrawFn) -> Any:
    frame: dict[str, Any] = {}
    if draw(st.booleans()):
        frame["jsonrpc"] = draw(st.sampled_from(["2.0", "1.0", "2", 2.0, None]))
    if draw(st.integers(0, 3)):
        frame["id"] = draw(st.one_of(st.integers(-(2**64), 2**64), st.text(max_size=10), st.none(),
                                     st.floats(allow_nan=False), st.lists(st.integers(), max_size=2)))
    frame["method"] = draw(st.one_of(METHODS, JSON_SCALARS))
    arguments = draw(st.one_of(
        st.fixed_dictionaries({"sql": SQLS}), st.fixed_dictionaries({"sql": st.lists(SQLS, max_size=3)}),
        st.fixed_dictionaries({"query": SQLS}), JSON_VALUES,
    ))
    frame["params"] = draw(st.one_of(
        st.fixed_dictionaries({
            "name": st.one_of(st.sampled_from(["query", "list_tables", "nope"]), JSON_SCALARS),
            "arguments": st.just(arguments),
        }),
        st.fixed_dictionaries({"uri": st.one_of(st.text(max_size=40), JSON_SCALARS)}),
        JSON_VALUES,
    ))
    if draw(st.booleans()):
        frame["result"] = draw(JSON_VALUES)
    if draw(st.integers(0, 4)) == 0:
        frame["error"] = draw(JSON_VALUES)
    if draw(st.integers(0, 5)) == 0:
        return [frame, frame]  # a batch
    return frame


VALID = json.dumps({"jsonrpc": "2.0", "id": 77, "method": "tools/call",
                    "params": {"name": "query", "arguments": {"sql": "SELECT api_key FROM secrets"}}})

SPECIAL = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "query", "arguments": {"sql": "x" * 3_000_000}}}).encode(),
    b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"s": "\\ud800"}}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\x00',
    b"\xff\xfe\x00garbage",
    b"[]",
    b"null",
    b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "id": 2}',
    b'{"jsonrpc": "2.0", "id": "probe-0", "result": {}}',
    b'{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "probe-1"}}',
    b'{"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {"protocolVersion": "1999-01-01"}}',
]


@st.composite
def mutated_valid(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID.encode())
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[pos]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


FRAMES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    rpc_frames().map(lambda v: json.dumps(v).encode()),
    mutated_valid(),
    st.sampled_from(SPECIAL),
)


def _upstream(scratch: ScratchDatabase) -> list[str]:
    return server_command(scratch.reader_dsn)


class RawStdioProxy:
    """A proxy process spoken to in raw bytes; stdout lines are collected by a reader thread."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log.open("wb")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, env=clean_env())
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.bad: list[bytes] = []
        self.probes = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data + b"\n")
        self.process.stdin.flush()

    def request(self, method: str, params: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        self.probes += 1
        ident = f"probe-{self.probes}"
        frame = {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}
        self.write(json.dumps(frame).encode())
        while True:
            line = self.lines.get(timeout=timeout)
            try:
                message = json.loads(line)
            except ValueError:
                self.bad.append(line)
                continue
            if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
                self.bad.append(line)
                continue
            if message.get("id") == ident:
                return message

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def raw_proxy(scratch_db: ScratchDatabase,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawStdioProxy]:
    logs = tmp_path_factory.mktemp("frame-fuzz")
    command = proxy_command(PRINCIPALS["analyst"], upstream=_upstream(scratch_db),
                            catalog_dsn=scratch_db.reader_dsn, audit_log=logs / "audit.jsonl")
    proxy = RawStdioProxy(command, logs / "stdio-proxy.log")
    init = proxy.request("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                        "clientInfo": {"name": "fuzzer", "version": "0"}})
    assert "result" in init, init
    proxy.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode())
    yield proxy
    proxy.stop()


def probe_stdio(proxy: RawStdioProxy) -> None:
    answer = proxy.request("tools/call", {"name": "query", "arguments": {"sql": PROBE_SQL}})
    result = answer.get("result") or {}
    assert result.get("isError") is False, answer
    assert result["structuredContent"]["rows"] == [[60]], answer


@settings(max_examples=FRAME_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame=FRAMES)
def test_stdio_frames_never_crash_the_proxy(raw_proxy: RawStdioProxy, frame: bytes) -> None:
    raw_proxy.write(frame)
    assert raw_proxy.process.poll() is None, "the proxy exited"
    probe_stdio(raw_proxy)
    assert not raw_proxy.bad, f"non-JSON-RPC output: {raw_proxy.bad[:3]!r}"


@pytest.mark.parametrize("frame", SPECIAL, ids=[f"special-{i}" for i in range(len(SPECIAL))])
def test_stdio_special_frames(raw_proxy: RawStdioProxy, frame: bytes) -> None:
    """Deep nesting (json's recursion limit), 3 MB lines, lone surrogates, NUL, duplicate keys,
    responses to requests never made, cancelling a probe that does not exist yet, bad versions."""
    raw_proxy.write(frame)
    assert raw_proxy.process.poll() is None, "the proxy exited"
    probe_stdio(raw_proxy)
    assert not raw_proxy.bad, f"non-JSON-RPC output: {raw_proxy.bad[:3]!r}"


# -- Streamable HTTP ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_proxy(scratch_db: ScratchDatabase,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    logs = tmp_path_factory.mktemp("frame-fuzz-http")
    port = free_port()
    command = proxy_command(PRINCIPALS["analyst"], upstream=_upstream(scratch_db),
                            catalog_dsn=scratch_db.reader_dsn, audit_log=logs / "audit.jsonl",
                            listen=f"http://127.0.0.1:{port}/mcp")
    proxy = ProxyProcess(command, log_dir=logs, port=port)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def http_client(http_proxy: ProxyProcess) -> Iterator[tuple[httpx2.Client, str]]:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with httpx2.Client(timeout=30, headers=headers) as client:
        init = client.post(http_proxy.url, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "f", "version": "0"}},
        })
        assert init.status_code == 200, init.text
        session = init.headers["mcp-session-id"]
        client.post(http_proxy.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                    headers={"mcp-session-id": session, "mcp-protocol-version": PROTOCOL})
        yield client, session


HEADER_VARIANTS = st.sampled_from(
    ["session", "no-session", "bad-session", "text-plain", "no-accept", "old-version"]
)


def _headers(variant: str, session: str) -> dict[str, str]:
    headers = {"mcp-session-id": session, "mcp-protocol-version": PROTOCOL}
    if variant == "no-session":
        headers.pop("mcp-session-id")
    elif variant == "bad-session":
        headers["mcp-session-id"] = "not-a-session\x7f"[:-1] + "0" * 40
    elif variant == "text-plain":
        headers["content-type"] = "text/plain"
    elif variant == "no-accept":
        headers["accept"] = "application/xml"
    elif variant == "old-version":
        headers["mcp-protocol-version"] = "1999-01-01"
    return headers


def _json_rpc_error_or_empty(response: httpx2.Response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    body = response.text.strip()
    kind = response.headers.get("content-type", "")
    if not body:
        return
    if not kind.startswith(("application/json", "text/event-stream")):
        # The transport refused the request itself (bad content type, unknown session, ...).
        assert 400 <= response.status_code < 500, f"{response.status_code} {kind}: {body[:200]}"
        return
    if kind.startswith("text/event-stream"):
        payloads = [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
    else:
        payloads = [body]
    for payload in payloads:
        if not payload:
            continue
        message = json.loads(payload)
        messages = message if isinstance(message, list) else [message]
        for m in messages:
            assert isinstance(m, dict) and m.get("jsonrpc") == "2.0", payload[:300]


def probe_http(client: httpx2.Client, url: str, session: str) -> None:
    response = client.post(url, json={"jsonrpc": "2.0", "id": "probe", "method": "tools/call",
                                      "params": {"name": "query", "arguments": {"sql": PROBE_SQL}}},
                           headers={"mcp-session-id": session, "mcp-protocol-version": PROTOCOL})
    assert response.status_code == 200, response.text[:300]
    text = response.text
    payload = next(line[5:] for line in text.splitlines() if line.startswith("data:")) \
        if response.headers.get("content-type", "").startswith("text/event-stream") else text
    result = json.loads(payload)["result"]
    assert result["isError"] is False and result["structuredContent"]["rows"] == [[60]], result


@settings(max_examples=FRAME_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame=FRAMES, variant=HEADER_VARIANTS)
def test_http_frames_never_crash_the_proxy(
    http_proxy: ProxyProcess, http_client: tuple[httpx2.Client, str], frame: bytes, variant: str
) -> None:
    client, session = http_client
    response = client.post(http_proxy.url, content=frame, headers=_headers(variant, session))
    _json_rpc_error_or_empty(response)
    assert http_proxy.alive(), "the proxy exited"
    probe_http(client, http_proxy.url, session)


def test_http_proxy_serves_a_fresh_mcp_session_after_the_fuzzing(http_proxy: ProxyProcess) -> None:
    with McpSession(http_proxy.url) as session:
        reply = session.query(PROBE_SQL)
        assert not reply.is_error and reply.rows == [[60]], reply.summary()
        denied = session.query("SELECT api_key FROM secrets")
        assert denied.denied, denied.summary()
