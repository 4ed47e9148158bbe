"""Lines on the proxy's pipes, read by the event loop as they arrive: the stdio front's reader
(`stdio_front._PipeLines`) and the upstream's tapped stdout (`pipe.PipeLink`). Real pipes and a
real child process; the bytes are cut where a pipe may cut them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.stdio import StdioServerParameters
from mcp_types import CONNECTION_CLOSED

from pgwarden.proxy.relay import stdio_front
from pgwarden.proxy.relay.pipe import pipe_client
from pgwarden.proxy.relay.stdio_front import TOO_LONG, _line_source

pytestmark = pytest.mark.anyio

RAW_UPSTREAM = Path(__file__).parent / "relay_fast_upstream.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Offers:
    """An `offer` hook that takes the lines it is told to and remembers every line it saw."""

    def __init__(self, take: set[bytes] | None = None) -> None:
        self.take = take or set()
        self.seen: list[bytes] = []

    def __call__(self, line: bytes) -> bool:
        self.seen.append(line)
        return line in self.take


@asynccontextmanager
async def piped_lines(offer: Offers | None) -> AsyncIterator[tuple[int, AsyncIterator[tuple[bytes, bool]]]]:
    """A real pipe: the test writes to the fd it gets; the front's reader reads the other end."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    try:
        yield write_fd, _line_source(reader, offer)
    finally:
        reader.close()


async def collect(lines: AsyncIterator[tuple[bytes, bool]]) -> list[tuple[bytes, bool]]:
    return [item async for item in lines]


async def test_lines_cut_anywhere_come_whole_and_a_last_line_needs_no_newline() -> None:
    offer = Offers()
    got: list[tuple[bytes, bool]] = []
    async with piped_lines(offer) as (fd, lines):

        async def read() -> None:
            got.extend(await collect(lines))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.sleep(0.05)  # the reader is waiting on the pipe
            for piece in (b'{"a":', b' 1}\n\n  \n{"b"', b":2}\n", b'{"c":3}'):
                os.write(fd, piece)
                await anyio.sleep(0.02)  # each piece is its own read
            os.close(fd)
    # Each complete line was offered as it arrived (nothing waited before it); the last one,
    # ended by the end of the stream, is offered by the reader.
    assert got == [(b'{"a": 1}', True), (b'{"b":2}', True), (b'{"c":3}', False)]
    assert offer.seen == [b'{"a": 1}', b'{"b":2}']  # blank lines are never offered


async def test_a_line_taken_on_arrival_never_reaches_the_reader() -> None:
    offer = Offers(take={b"fast-1", b"fast-2"})
    async with piped_lines(offer) as (fd, lines):
        os.write(fd, b"fast-1\nslow\nfast-2\n")
        os.close(fd)
        got = await collect(lines)
    # "fast-2" arrived while "slow" waited for the reader: it waits its turn, unoffered, so the
    # reader offers it after "slow" (lines are handled in the order they came).
    assert got == [(b"slow", True), (b"fast-2", False)]
    assert offer.seen == [b"fast-1", b"slow"]


async def test_a_line_over_the_limit_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio_front, "MAX_LINE_BYTES", 64)
    async with piped_lines(Offers()) as (fd, lines):
        os.write(fd, b"ok\n" + b"x" * 100)  # no newline yet, already too long
        got = await collect(lines)
        os.close(fd)
    assert got == [(b"ok", True), (TOO_LONG, True)]


async def test_a_complete_line_over_the_limit_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio_front, "MAX_LINE_BYTES", 64)
    async with piped_lines(Offers()) as (fd, lines):
        os.write(fd, b"y" * 100 + b"\nnever\n")
        got = await collect(lines)
        os.close(fd)
    assert got == [(TOO_LONG, True)]


async def test_a_reader_that_falls_behind_pauses_the_pipe_and_loses_nothing() -> None:
    count = 2000  # far beyond the lines kept waiting before the pipe is paused
    async with piped_lines(Offers()) as (fd, lines):

        def write_all() -> None:
            for i in range(count):
                os.write(fd, f"line-{i}\n".encode())
            os.close(fd)

        writer = asyncio.get_running_loop().run_in_executor(None, write_all)
        got: list[bytes] = []
        async for line, _ in lines:
            got.append(line)
            if len(got) % 100 == 0:
                await anyio.sleep(0.01)  # a slow reader
        await writer
    assert got == [f"line-{i}".encode() for i in range(count)]


# -- the upstream's stdout ----------------------------------------------------------------------


@asynccontextmanager
async def raw_upstream() -> AsyncIterator[Any]:
    params = StdioServerParameters(command=sys.executable, args=[str(RAW_UPSTREAM)])
    async with pipe_client(params, sys.stderr) as link:
        yield link


async def test_the_upstreams_stdout_is_tapped_and_answers_resolve_their_requests() -> None:
    async with raw_upstream() as link:
        assert link.tapped
        results = await asyncio.gather(*(
            link.request("tools/call", {"name": name, "arguments": {"text": f"t{i}"}}, timeout_s=20)
            for i, name in enumerate(["echo", "split", "garbage_first", "string_id", "echo"])
        ))
    assert [r["content"][0]["text"] for r in results] == ["t0", "t1", "t2", "t3", "t4"]


async def test_answers_to_ids_that_are_no_numbers_are_dropped_and_the_real_one_still_lands() -> None:
    """Ids that look like digits to `str.isdigit` but not to `int` (a superscript, 5,000 digits)
    are no raw-path ids; the answer after them in the same read still resolves its call."""
    async with raw_upstream() as link:
        with anyio.fail_after(20):
            odd = await link.request("tools/call", {"name": "odd_ids", "arguments": {"text": "odd"}},
                                     timeout_s=20)
            after = await link.request("tools/call", {"name": "echo", "arguments": {"text": "next"}},
                                       timeout_s=20)
    assert odd["content"][0]["text"] == "odd" and after["content"][0]["text"] == "next"


async def test_lines_for_the_sdk_keep_their_order_with_the_answers() -> None:
    async with raw_upstream() as link:
        # The handshake goes through the SDK side of the link (its read stream).
        message = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        await link.write(json.dumps(message).encode() + b"\n")
        with anyio.fail_after(20):
            first = await link.read_stream.receive()
        echo = {"name": "echo", "arguments": {"text": "after"}}
        answer = await link.request("tools/call", echo, timeout_s=20)
    assert first.message.id == 1 and first.message.result["serverInfo"]["name"] == "raw-upstream"
    assert answer["content"][0]["text"] == "after"


async def test_calls_in_flight_when_the_upstream_exits_fail_connection_closed() -> None:
    from mcp.shared.exceptions import MCPError

    async with raw_upstream() as link:
        call = asyncio.ensure_future(
            link.request("tools/call", {"name": "split", "arguments": {"text": "x"}}, timeout_s=20)
        )
        await anyio.sleep(0.05)  # the upstream has written the first piece of its answer
        link._process.kill()
        with pytest.raises(MCPError) as failed:
            await call
    assert failed.value.error.code == CONNECTION_CLOSED


async def test_a_line_never_overtakes_one_the_reader_is_still_handling() -> None:
    offer = Offers(take={b"request"})
    handled: list[bytes] = []
    async with piped_lines(offer) as (fd, lines):
        os.write(fd, b"notification\n")
        async for line, offered in lines:
            if not offered and offer(line):  # as the front's reader task does
                continue
            if line == b"notification":
                # While the reader hands this line on (to the SDK), the next one arrives.
                os.write(fd, b"request\n")
                await anyio.sleep(0.05)
                assert offer.seen == [b"notification"]  # not offered, let alone taken, meanwhile
                os.close(fd)
            handled.append(line)
    assert handled == [b"notification"] and offer.seen == [b"notification", b"request"]


async def test_an_answer_never_overtakes_a_line_still_on_its_way_to_the_sdk() -> None:
    """17 log notifications fill the SDK's read stream (16 deep) and leave the reader waiting
    to hand on the last one; the answer that comes next waits behind it."""
    async with raw_upstream() as link:
        call = asyncio.ensure_future(
            link.request("tools/call", {"name": "chatty", "arguments": {"text": "17"}}, timeout_s=20)
        )
        await anyio.sleep(0.6)  # the answer has arrived by now
        assert not call.done()  # ...and waits behind the notification the SDK has not taken
        with anyio.fail_after(20):
            notes = [await link.read_stream.receive() for _ in range(17)]
            answer = await call
    assert [n.message.params["data"] for n in notes] == [f"note {n}" for n in range(17)]
    assert answer["content"][0]["text"] == "17"


class _FailingTaker:
    def take(self, body: Any) -> bool:
        raise RuntimeError("a bug in the fast path")

    async def aclose(self) -> None:
        pass


async def test_a_fast_path_that_fails_on_a_line_leaves_it_to_the_sdk() -> None:
    read_fd, write_fd = os.pipe()
    out_read, out_write = os.pipe()
    with os.fdopen(read_fd, "rb", buffering=0) as stdin, os.fdopen(out_write, "wb", buffering=0) as stdout:
        front = stdio_front.stdio_front(stdin, stdout, taker=lambda _emit: _FailingTaker())
        async with front as (received, _):
            pings = [b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % rid for rid in (7, 8)]
            os.write(write_fd, b"".join(pings))  # one write: both lines arrive in one read
            with anyio.fail_after(10):
                first, second = await received.receive(), await received.receive()
            os.close(write_fd)
    os.close(out_read)
    assert (first.message.id, second.message.id) == (7, 8)  # both, in order: nothing dropped
