"""The stdio front: newline-delimited JSON-RPC on the process's stdin and stdout.

Like the SDK's `stdio_server`, with two differences that matter for a proxy:

- a line that is not a JSON-RPC message is answered with a JSON-RPC error (Parse error, or
  Invalid Request with the line's id when it has one) and the proxy keeps serving;
- when stdin and stdout are pipes (how MCP clients launch servers) they are read and written
  with non-blocking I/O on the event loop instead of a worker thread per line.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, BinaryIO

import anyio
import mcp_types as types
from mcp.shared._context_streams import create_context_streams
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage

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


async def _line_sink(stream: BinaryIO) -> Callable[[bytes], Awaitable[None]]:
    if _is_pipe(stream):
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stream)
        writer = asyncio.StreamWriter(transport, protocol, None, loop)

        async def write_pipe(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        return write_pipe
    wrapped = anyio.wrap_file(stream)

    async def write_file(data: bytes) -> None:
        await wrapped.write(data)
        await wrapped.flush()

    return write_file


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
    stdin: BinaryIO | None = None, stdout: BinaryIO | None = None
) -> AsyncIterator[tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]]:
    """Serve JSON-RPC over stdin/stdout (or the given binary streams) as SDK message streams."""
    source = stdin if stdin is not None else sys.stdin.buffer
    sink = await _line_sink(stdout if stdout is not None else sys.stdout.buffer)
    write_lock = anyio.Lock()
    read_writer, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, write_reader = create_context_streams[SessionMessage](0)

    async def emit(data: bytes) -> None:
        async with write_lock:
            await sink(data)

    async def reader() -> None:
        async with read_writer:
            async for line in _line_source(source):
                if not line.strip():
                    continue
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except ValueError:
                    await emit(_encode(error_for_line(line)))
                    continue
                await read_writer.send(SessionMessage(message))

    async def writer() -> None:
        try:
            async with write_reader:
                async for item in write_reader:
                    await emit(_encode(item.message))
        except (anyio.BrokenResourceError, BrokenPipeError, ConnectionResetError):
            pass  # the client went away

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        yield read_stream, write_stream
        tg.cancel_scope.cancel()
