"""The stdio front: newline-delimited JSON-RPC on the process's stdin and stdout.

Like the SDK's `stdio_server`, with two differences that matter for a proxy:

- a line that is not a JSON-RPC message is answered with a JSON-RPC error (Parse error, or
  Invalid Request with the line's id when it has one) and the proxy keeps serving;
- when stdin and stdout are pipes (how MCP clients launch servers) they are read and written
  with non-blocking I/O on the event loop instead of a worker thread per line;
- messages the SDK sends are written at once by the sending task (no writer task between);
- a `take` hook (the relay's fast path, `fast.py`) may serve a parsed line itself before the
  SDK sees it.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, BinaryIO, Protocol, Self

import anyio
import mcp_types as types
from mcp.shared._context_streams import create_context_streams
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from pydantic_core import from_json

MAX_LINE_BYTES = 64 * 1024 * 1024  # one message; longer lines are refused, not buffered forever


def _is_pipe(stream: BinaryIO) -> bool:
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


async def _line_source(stream: BinaryIO) -> AsyncIterator[bytes]:
    """Lines from `stream`: event-loop I/O for a pipe, a worker thread otherwise."""
    if _is_pipe(stream):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    yield exc.partial
                return
            except asyncio.LimitOverrunError:
                yield b"\x00too-long"  # answered as a parse error; the stream cannot resync
                return
            yield line
    else:
        wrapped = anyio.wrap_file(stream)
        while True:
            line = await wrapped.readline()
            if not line:
                return
            yield line


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

    async def reader(hook: Callable[[Any], bool] | None) -> None:
        async with read_writer:
            async for line in _line_source(source):
                if not line.strip():
                    continue
                if hook is not None:
                    try:
                        body = from_json(line)
                    except ValueError:
                        body = None  # answered below, as the SDK path answers it
                    if body is not None and hook(body):
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
