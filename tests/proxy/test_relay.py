"""The relay itself, with the test gates, over real pipes and real HTTP: progress, cancellation,
server-to-client requests, faults (upstream killed, hanging, garbage from the client)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CreateMessageResult, TextContent
from proxy_helpers import RELAY_PROCESS, TEST_UPSTREAM, child_env, free_port, http_process, relay_params

pytestmark = pytest.mark.anyio
MODES = ["legacy", "2026-07-28"]
UPSTREAM = [sys.executable, str(TEST_UPSTREAM)]


@pytest.mark.parametrize("mode", MODES)
async def test_progress_arrives_while_the_call_runs(mode: str) -> None:
    seen: list[tuple[float, float]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, time.monotonic()))

    async with Client(relay_params("--", *UPSTREAM), mode=mode) as client:
        await client.call_tool("echo", {"text": "warm"})
        started = time.monotonic()
        result = await client.call_tool("slow", {"steps": 3, "delay": 0.3}, progress_callback=on_progress)
        finished = time.monotonic()
    assert result.content[0].text == "done after 3 steps"  # type: ignore[union-attr]
    assert [p for p, _ in seen] == [1.0, 2.0, 3.0]
    # live, not buffered: the first update came well before the result
    assert seen[0][1] - started < finished - started - 0.4


@pytest.mark.parametrize("mode", MODES)
async def test_cancellation_reaches_the_upstream(mode: str, tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    async with Client(relay_params("--", *UPSTREAM), mode=mode) as client:
        with anyio.move_on_after(1.0):
            await client.call_tool("sleep", {"seconds": 30, "marker": str(marker)})
        with anyio.move_on_after(10):
            while not marker.exists():  # noqa: ASYNC110 - polling a file another process writes
                await anyio.sleep(0.05)
        assert marker.exists(), "the upstream never saw the cancellation"
        assert (await client.call_tool("echo", {"text": "still here"})).content[0].text == "still here"  # type: ignore[union-attr]


async def test_server_to_client_requests_are_relayed() -> None:
    async def sampling(context: object, params: object) -> CreateMessageResult:
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text="hi from the client"), model="test"
        )

    params = relay_params("--protocol", "legacy", "--", *UPSTREAM)
    async with Client(params, mode="legacy", sampling_callback=sampling) as client:
        result = await client.call_tool("ask", {})
    assert result.content[0].text == "hi from the client"  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_upstream_killed_mid_session_is_restarted(mode: str) -> None:
    async with Client(relay_params("--", *UPSTREAM), mode=mode) as client:
        assert (await client.call_tool("echo", {"text": "a"})).content[0].text == "a"  # type: ignore[union-attr]
        with pytest.raises(MCPError, match="went away during the call"):
            await client.call_tool("crash", {})
        result = await client.call_tool("echo", {"text": "b"})  # waits for the restarted upstream
        assert result.content[0].text == "b"  # type: ignore[union-attr]


async def test_hanging_upstream_hits_the_call_timeout() -> None:
    params = relay_params("--timeout", "1", "--", *UPSTREAM, "--hang-after", "1")
    async with Client(params, mode="legacy") as client:
        await client.call_tool("echo", {"text": "first call answers"})
        started = time.monotonic()
        with pytest.raises(MCPError, match="did not answer within 1 s"):
            await client.call_tool("echo", {"text": "this one hangs"})
        assert time.monotonic() - started < 5
        assert [t.name for t in (await client.list_tools()).tools]  # still serving


def test_garbage_on_the_client_pipe_gets_errors_and_the_proxy_keeps_serving() -> None:
    process = subprocess.Popen(
        [sys.executable, str(RELAY_PROCESS), "--", *UPSTREAM],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    assert process.stdin is not None and process.stdout is not None
    lines = [
        b"this is not json\n",
        b'{"jsonrpc": "2.0", "id": 7, "method": 5}\n',
        b"[1, 2\n",
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            }
        ).encode()
        + b"\n",
        b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n',
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "ok"}},
            }
        ).encode()
        + b"\n",
    ]
    try:
        for line in lines:
            process.stdin.write(line)
        process.stdin.flush()
        answers = [json.loads(process.stdout.readline()) for _ in range(5)]
    finally:
        process.stdin.close()
        process.wait(timeout=15)
    assert answers[0] == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
    assert answers[1]["id"] == 7 and answers[1]["error"]["code"] == -32600
    assert answers[2]["id"] is None and answers[2]["error"]["code"] == -32700
    assert answers[3]["id"] == 1 and answers[3]["result"]["serverInfo"]["name"] == "pgwarden-proxy"
    assert answers[4]["id"] == 2 and answers[4]["result"]["content"][0]["text"] == "ok"


@pytest.mark.parametrize("mode", MODES)
async def test_http_front_and_deny_gate(mode: str, tmp_path: Path) -> None:
    port = free_port()
    args = [
        sys.executable,
        str(RELAY_PROCESS),
        "--gate",
        "deny",
        "--http",
        f"127.0.0.1:{port}",
        "--",
        *UPSTREAM,
    ]
    with http_process(args, port=port, log=tmp_path / "relay.log") as url:
        async with Client(url, mode=mode) as client:
            assert (client.protocol_version == "2026-07-28") == (mode != "legacy")
            assert (await client.list_tools()).tools == []
            result = await client.call_tool("crash", {})
            assert result.is_error and "pgwarden denied" in result.content[0].text  # type: ignore[union-attr]
            # the denied crash never reached the upstream: it still answers
            assert (await client.list_tools()).tools == []


@pytest.mark.parametrize("mode", MODES)
async def test_http_front_relays_calls(mode: str, tmp_path: Path) -> None:
    port = free_port()
    args = [sys.executable, str(RELAY_PROCESS), "--http", f"127.0.0.1:{port}", "--", *UPSTREAM]
    with http_process(args, port=port, log=tmp_path / "relay.log") as url:
        async with Client(url, mode=mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"echo", "slow", "sleep"} <= names
            assert (await client.call_tool("echo", {"text": "über"})).content[0].text == "über"  # type: ignore[union-attr]
