"""The stdio front: newline-delimited JSON-RPC on the process's stdin and stdout.

Like the SDK's `stdio_server`, with two differences that matter for a proxy:

- a line that is not a JSON-RPC message is answered with a JSON-RPC error (Parse error, or
  Invalid Request with the line's id when it has one) and the proxy keeps serving;
- when stdin and stdout are pipes (how MCP clients launch servers) they are read and written
  with non-blocking I/O on the event loop instead of a worker thread per line, and a line the
  fast path serves is taken right in the loop's read callback (no reader task switch);
- messages the SDK sends are written at once by the sending task (no writer task between);
- a `take` hook (the relay's fast path, `fast.py`) may serve a parsed line itself before the
  SDK sees it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, BinaryIO, Protocol, Self

import anyio
import mcp_types as types
from mcp.shared._context_streams import create_context_streams
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from pydantic_core import from_json

from pgwarden.proxy.relay.wire import split_lines

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024 * 1024  # one message; longer lines are refused, not buffered forever


def _is_pipe(stream: BinaryIO) -> bool:
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


Offer = Callable[[bytes], bool]
"""Serves a line on the spot (True), or leaves it to the reader task (False)."""

TOO_LONG = b"\x00too-long"
"""Stands for a line over `MAX_LINE_BYTES`: answered as a parse error, then the stream ends."""

_QUEUED_LINES_HIGH = 64  # lines waiting for the reader task before the pipe stops being read


class _PipeLines(asyncio.Protocol):
    """A pipe's lines, split as the bytes arrive.

    While the reader task has no line to handle, each new line is first offered to `offer`
    right in the event loop's read callback: a line the fast path serves costs no task switch
    and no stream buffer. Every other line waits, in order, for `lines()`; a line that arrives
    while the reader has lines to handle is offered only when its turn comes, so lines are
    always handled in the order they came (a request never overtakes the notification before
    it on its way to the SDK). Too many waiting lines pause the pipe until the reader catches up.
    """

    def __init__(self, offer: Offer | None) -> None:
        self._offer = offer
        self._partial = bytearray()
        self._queue: deque[tuple[bytes, bool]] = deque()  # (line, offered already)
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._paused = False
        self._ended = False
        self._handling = False  # the reader task is handling a line (e.g. handing it to the SDK)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._ended:
            return
        for line in split_lines(self._partial, data):
            if len(line) > MAX_LINE_BYTES:
                self._too_long()
                return
            if not line.strip():
                continue
            offer = None if self._queue or self._handling else self._offer
            if offer is not None and offer(line):
                continue
            self._put(line, offer is not None)
        if len(self._partial) > MAX_LINE_BYTES:
            self._too_long()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _put(self, line: bytes, offered: bool) -> None:
        self._queue.append((line, offered))
        if len(self._queue) > _QUEUED_LINES_HIGH and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def _too_long(self) -> None:
        self._partial.clear()
        self._queue.append((TOO_LONG, True))  # answered as a parse error; the stream cannot resync
        self._ended = True
        if self._transport is not None:
            self._transport.pause_reading()
        self._wake()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._partial.strip():  # a last line without its newline
            self._queue.append((bytes(self._partial), False))
        self._partial.clear()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def lines(self) -> AsyncIterator[tuple[bytes, bool]]:
        """The lines not served on the spot, in order, each with whether it was offered."""
        queue = self._queue
        while True:
            while queue:
                item = queue.popleft()
                if self._paused and len(queue) <= _QUEUED_LINES_HIGH // 2 and not self._ended:
                    self._paused = False
                    assert self._transport is not None
                    self._transport.resume_reading()
                self._handling = True  # until the reader comes back for the next line
                try:
                    yield item
                finally:
                    self._handling = False
            if self._ended:
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


async def _line_source(stream: BinaryIO, offer: Offer | None) -> AsyncIterator[tuple[bytes, bool]]:
    """Lines from `stream`, each with whether `offer` has seen it already: for a pipe, read by
    the event loop and offered on arrival (`_PipeLines`); otherwise read by a worker thread."""
    if _is_pipe(stream):
        loop = asyncio.get_running_loop()
        _, lines = await loop.connect_read_pipe(lambda: _PipeLines(offer), stream)
        async for item in lines.lines():
            yield item
    else:
        wrapped = anyio.wrap_file(stream)
        while True:
            line = await wrapped.readline()
            if not line:
                return
            yield line, False


Emit = Callable[[bytes], Awaitable[None]]


class LineTaker(Protocol):
    """Serves some parsed lines before the SDK sees them (the relay's fast path)."""

    def take(self, body: Any) -> bool:
        """True when `body` was served here (the SDK never sees it), False to pass it on."""
        ...

    async def aclose(self) -> None:
        """The front is closing: finish or cancel what was taken."""
        ...


async def _line_sink(stream: BinaryIO) -> Emit:
    """Write whole lines: on a pipe each line is one non-blocking write (atomic, in call order),
    waiting only while the pipe is full; otherwise a worker thread under a lock."""
    if _is_pipe(stream):
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stream)
        writer = asyncio.StreamWriter(transport, protocol, None, loop)

        async def write_pipe(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        return write_pipe
    wrapped = anyio.wrap_file(stream)
    lock = anyio.Lock()

    async def write_file(data: bytes) -> None:
        async with lock:
            await wrapped.write(data)
            await wrapped.flush()

    return write_file


class _InlineWriteStream:
    """The SDK's write stream: each message is serialised and written by the task sending it."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._closed = False

    async def send(self, item: SessionMessage) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            await self._emit(_encode(item.message))
        except (BrokenPipeError, ConnectionResetError) as exc:  # the client went away
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def error_for_line(line: bytes) -> types.JSONRPCError:
    """The JSON-RPC error answering a line that is not a valid message."""
    try:
        body: Any = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting exhausts json's recursion
        return types.JSONRPCError(
            jsonrpc="2.0", id=None, error=types.ErrorData(code=types.PARSE_ERROR, message="Parse error")
        )
    rid = body.get("id") if isinstance(body, dict) else None
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        rid = None
    return types.JSONRPCError(
        jsonrpc="2.0", id=rid, error=types.ErrorData(code=types.INVALID_REQUEST, message="Invalid Request")
    )


def _encode(message: types.JSONRPCMessage) -> bytes:
    return message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"


@asynccontextmanager
async def stdio_front(
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    *,
    taker: Callable[[Emit], LineTaker] | None = None,
) -> AsyncIterator[tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]]:
    """Serve JSON-RPC over stdin/stdout (or the given binary streams) as SDK message streams.

    `taker`, when given, builds (from the line writer) what is offered every parsed line first.
    """
    source = stdin if stdin is not None else sys.stdin.buffer
    emit = await _line_sink(stdout if stdout is not None else sys.stdout.buffer)
    read_writer, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream = _InlineWriteStream(emit)

    def offer(hook: Callable[[Any], bool]) -> Offer:
        def offered(line: bytes) -> bool:
            try:
                body = from_json(line)
            except ValueError:
                return False  # answered by the reader task, as the SDK path answers it
            try:
                return hook(body)
            except Exception:  # a bug in the hook: the SDK still answers the line
                logger.exception("the fast path failed on a line; the SDK handles it")
                return False

        return offered

    async def reader(hook: Callable[[Any], bool] | None) -> None:
        offer_line = offer(hook) if hook is not None else None
        async with read_writer:
            async for line, offered in _line_source(source, offer_line):
                if not line.strip():
                    continue
                if offer_line is not None and not offered and offer_line(line):
                    continue
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except ValueError:
                    try:
                        await emit(_encode(error_for_line(line)))
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the client went away
                    continue
                await read_writer.send(SessionMessage(message))

    taken = taker(emit) if taker is not None else None
    async with anyio.create_task_group() as tg:
        tg.start_soon(reader, taken.take if taken is not None else None)
        try:
            yield read_stream, write_stream
        finally:
            if taken is not None:
                await taken.aclose()
            tg.cancel_scope.cancel()
