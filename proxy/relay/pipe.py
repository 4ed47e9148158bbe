"""The stdio upstream's pipes: one reader, inline writes, and a raw request path.

Replaces the SDK's `stdio_client` for the upstream process (same spawn, environment and
shutdown sequence: the SDK's own helpers), because the relay forwards plain dicts and the
SDK's generic path costs a task hop per message in each direction plus a pydantic round
trip of every envelope:

- `PipeLink.request` sends one request as JSON bytes, and the reader resolves it straight
  from the parsed line: no per-request stream, no envelope model, no writer task.
- Everything else (the handshake, server-to-client requests, notifications, responses to
  the SDK's own requests) still goes through the `ClientSession`'s dispatcher, over the
  `read_stream` / `write_stream` pair this module provides; writes are inline there too.

The raw path keeps the SDK dispatcher's contract: a courtesy `notifications/cancelled` when
the caller gives up or the timeout elapses, progress routed by the request id used as the
progress token, `CONNECTION_CLOSED` for calls in flight when the pipe ends, the W3C trace
context injected into `_meta`. Ids are drawn from a range the dispatcher never reaches, so
the two id spaces cannot collide on one pipe.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, TextIO

import anyio
import anyio.abc
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from mcp.client.stdio import (
    StdioServerParameters,
    _create_platform_compatible_process,
    _stop_server_process,
    get_default_environment,
)
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, REQUEST_TIMEOUT
from opentelemetry.propagate import inject
from pydantic_core import from_json

from pgwarden.proxy.relay.wire import encode_line, split_lines

logger = logging.getLogger(__name__)

RAW_ID_BASE = 1 << 40
"""First id of the raw path (the SDK dispatcher counts up from 1; JSON-safe below 2**53)."""

_CANCEL_WRITE_TIMEOUT_S = 5.0
_QUEUED_LINES_HIGH = 64  # lines waiting for `read_loop` before the stdout stops being read


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[dict[str, Any]]
    on_progress: ProgressFnT | None


class _InlineWriteStream:
    """The SDK dispatcher's write stream: each message is serialised and written at once."""

    def __init__(self, link: PipeLink) -> None:
        self._link = link

    async def send(self, item: SessionMessage) -> None:
        data = item.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
        await self._link.write(data)

    async def aclose(self) -> None:
        pass  # the pipe is closed by `pipe_client` when the connection ends

    def close(self) -> None:
        pass

    async def __aenter__(self) -> _InlineWriteStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class PipeLink:
    """One upstream process's stdin/stdout, shared by the raw path and the SDK dispatcher."""

    def __init__(self, process: Any, task_group: anyio.abc.TaskGroup) -> None:
        self._process = process
        self._stdin: asyncio.StreamWriter = process.stdin._stream
        self._tg = task_group
        self._next_id = RAW_ID_BASE
        self._waiters: dict[int, _Waiter] = {}
        self._closed = False
        sdk_send, sdk_receive = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        self._to_sdk: MemoryObjectSendStream[SessionMessage | Exception] = sdk_send
        self.read_stream: ReadStream[SessionMessage | Exception] = sdk_receive
        self.write_stream: WriteStream[SessionMessage] = _InlineWriteStream(self)
        # Lines not answered on arrival, in order, for `read_loop` (when the stdout is tapped).
        self._lines: deque[bytes] = deque()
        self._partial = bytearray()
        self._wakeup: asyncio.Future[None] | None = None
        self._eof = False
        self._paused = False
        self._routing = False  # `read_loop` is routing a line (it may wait for the SDK to take it)
        self._stdout_transport: asyncio.ReadTransport | None = None
        self.tapped = self._tap(process.stdout)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- writing -----------------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Write one whole line (the event loop's pipe transport buffers; drain when paused)."""
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            self._stdin.write(data)
            await self._stdin.drain()
        except (ConnectionResetError, BrokenPipeError, RuntimeError) as exc:
            raise anyio.BrokenResourceError from exc

    # -- the raw request path ----------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        *,
        timeout_s: float | None,
        on_progress: ProgressFnT | None = None,
    ) -> dict[str, Any]:
        """Send one request and return its raw result (the dispatcher's `send_raw_request` contract).

        Raises:
            MCPError: the upstream's error; REQUEST_TIMEOUT when `timeout_s` elapsed;
                CONNECTION_CLOSED when the pipe is (or gets) closed.
        """
        if self._closed:
            raise MCPError(code=CONNECTION_CLOSED, message="Connection closed")
        self._next_id += 1
        request_id = self._next_id
        out_params = dict(params) if params is not None else {}
        meta = dict(out_params.get("_meta") or {})
        if on_progress is not None:
            meta["progressToken"] = request_id
        inject(meta)  # W3C trace context of the current span (the gate's upstream span)
        if meta:
            out_params["_meta"] = meta
        else:
            out_params.pop("_meta", None)
        envelope: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if out_params:
            envelope["params"] = out_params
        data = _encode(envelope)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiters[request_id] = _Waiter(future, on_progress)
        # A timer on the future, not a cancel scope: the one await that can take long is the
        # answer (a write waits only while the upstream leaves a full pipe unread).
        timer = None if timeout_s is None else loop.call_later(timeout_s, _expire, future)
        written = False
        try:
            try:
                written = True
                await self.write(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise MCPError(code=CONNECTION_CLOSED, message="Connection closed") from None
            try:
                return await future
            except _Expired:
                pass
            # timed out: tell the upstream to stop (the SDK's courtesy cancel), then report it
            await self._cancel(request_id, f"timed out after {timeout_s}s", shield=False)
            raise MCPError(code=REQUEST_TIMEOUT, message=f"Request {method!r} timed out")
        except anyio.get_cancelled_exc_class():
            if written:
                await self._cancel(request_id, "caller cancelled", shield=True)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._waiters.pop(request_id, None)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: an outcome nobody awaited is not an error to log

    async def _cancel(self, request_id: int, reason: str, *, shield: bool) -> None:
        line = _encode(
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": request_id, "reason": reason},
            }
        )
        with anyio.move_on_after(_CANCEL_WRITE_TIMEOUT_S, shield=shield):
            with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self.write(line)

    # -- reading -----------------------------------------------------------------------------

    def _tap(self, stdout: Any) -> bool:
        """Take the upstream's stdout bytes as they arrive (see `_on_data`) instead of reading
        them from a stream in `read_loop`: an answer then resolves its request right in the
        event loop's read callback, without a reader task switch or stream buffer. Works on the
        asyncio stream reader the subprocess protocol feeds (anyio wraps it); False, and the
        stream is read as usual, when the stdout is anything else."""
        reader = getattr(stdout, "_stream", None)
        if type(reader) is not asyncio.StreamReader or reader.exception() is not None:
            return False
        buffer = getattr(reader, "_buffer", None)
        if not isinstance(buffer, bytearray) or getattr(reader, "_eof", True) is not False:
            return False
        transport = getattr(reader, "_transport", None)
        self._stdout_transport = transport if isinstance(transport, asyncio.ReadTransport) else None
        buffered = bytes(buffer)  # what came before the tap (normally nothing)
        buffer.clear()
        # The subprocess protocol calls these three on the reader: they now come here.
        vars(reader).update(feed_data=self._on_data, feed_eof=self._on_eof,
                            set_exception=lambda _exc: self._on_eof())
        if buffered:
            self._on_data(buffered)
        return True

    def _on_data(self, data: bytes) -> None:
        """Stdout bytes (tapped): answer requests at once while no line is before them."""
        if self._eof:
            return
        for line in split_lines(self._partial, data):
            if not line.strip() or (not self._lines and not self._routing and self._answered(line)):
                continue
            self._lines.append(line)
        if self._lines:
            transport = self._stdout_transport
            if len(self._lines) > _QUEUED_LINES_HIGH and not self._paused and transport is not None:
                self._paused = True
                transport.pause_reading()
            self._wake()

    def _on_eof(self) -> None:
        if self._eof:
            return
        self._eof = True
        if self._partial.strip():
            self._lines.append(bytes(self._partial))
        self._partial.clear()
        self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _answered(self, line: bytes) -> bool:
        """`_answer_now`, and False when it fails: the line then takes the reader's way (an
        exception here would drop the rest of the bytes read with it)."""
        try:
            return self._answer_now(line)
        except Exception:
            logger.exception("an upstream line could not be matched to a request")
            return False

    def _answer_now(self, line: bytes) -> bool:
        """Resolve the raw-path request `line` answers (True), or leave the line to `_route`."""
        try:
            body = from_json(line)
        except ValueError:
            return False
        if type(body) is not dict or "method" in body:
            return False
        rid = _raw_id(body.get("id"))
        if rid is None:
            return False
        self._settle(rid, body)
        return True

    def _settle(self, rid: int, body: dict[str, Any]) -> None:
        """Resolve raw-path request `rid` with the answer `body` (a late or unknown answer is
        dropped, like the dispatcher does)."""
        waiter = self._waiters.get(rid)
        if waiter is not None and not waiter.future.done():
            if _is_result(body):
                waiter.future.set_result(body["result"])
            else:
                waiter.future.set_exception(_error_of(body))

    async def read_loop(self) -> None:
        """Route the upstream's stdout lines until EOF. Then fail what is in flight."""
        if not self.tapped:
            await self._read_stream()
            return
        lines = self._lines
        try:
            while True:
                while lines:
                    line = lines.popleft()
                    if self._paused and len(lines) <= _QUEUED_LINES_HIGH // 2:
                        self._paused = False
                        assert self._stdout_transport is not None
                        self._stdout_transport.resume_reading()
                    self._routing = True  # a later answer must not overtake this line
                    try:
                        await self._route(line)
                    finally:
                        self._routing = False
                if self._eof:
                    return
                self._wakeup = asyncio.get_running_loop().create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
        finally:
            self._close()  # later bytes are dropped as they come, so the server can flush and exit
            if self._paused and self._stdout_transport is not None:
                self._stdout_transport.resume_reading()
            self._eof = True
            lines.clear()

    async def _read_stream(self) -> None:
        """`read_loop` on a stdout that could not be tapped: read it as a stream."""
        stdout = self._process.stdout
        pending = bytearray()  # a line's start, while its end has not arrived
        try:
            while True:
                try:
                    chunk = await stdout.receive(1 << 16)
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                    break
                for line in split_lines(pending, chunk):
                    if line.strip():
                        await self._route(line)
        finally:
            self._close()
            # keep draining so the server can flush and exit (the SDK's stdout drain)
            with anyio.CancelScope(shield=True), suppress(Exception):
                while True:
                    await stdout.receive()

    async def _route(self, line: bytes) -> None:
        try:
            body = from_json(line)
        except ValueError as exc:
            logger.warning("the upstream sent a line that is not JSON")
            await self._to_sdk_send(exc)
            return
        if isinstance(body, dict) and "method" not in body:
            rid = _raw_id(body.get("id"))
            if rid is not None:
                self._settle(rid, body)
                return
        elif (
            isinstance(body, dict)
            and body.get("method") == "notifications/progress"
            and self._route_progress(body.get("params"))
        ):
            return
        try:
            message = types.jsonrpc_message_adapter.validate_python(body, by_name=False)
        except ValueError as exc:
            await self._to_sdk_send(exc)
            return
        await self._to_sdk_send(SessionMessage(message))

    def _route_progress(self, params: Any) -> bool:
        if not isinstance(params, dict):
            return False
        token = _raw_id(params.get("progressToken"))
        if token is None or not _is_number(params.get("progress")):
            return False
        waiter = self._waiters.get(token)
        progress = params.get("progress")
        if waiter is not None and waiter.on_progress is not None and isinstance(progress, int | float):
            total = params.get("total")
            message = params.get("message")
            self._tg.start_soon(
                _contained_progress,
                waiter.on_progress,
                float(progress),
                float(total) if isinstance(total, int | float) and not isinstance(total, bool) else None,
                message if isinstance(message, str) else None,
            )
        return True

    async def _to_sdk_send(self, item: SessionMessage | Exception) -> None:
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._to_sdk.send(item)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(MCPError(code=CONNECTION_CLOSED, message="Connection closed"))
        self._to_sdk.close()


class _Expired(Exception):
    """The per-call timeout elapsed before the answer (set on the waiting future)."""


def _expire(future: asyncio.Future[dict[str, Any]]) -> None:
    if not future.done():
        future.set_exception(_Expired())


_RAW_ID_DIGITS = 20  # more than any raw-path id has (they count up from RAW_ID_BASE)


def _raw_id(value: Any) -> int | None:
    """The raw-path id `value` stands for (a peer may echo it as a string, as the SDK allows).
    Only ASCII digits, and not too many: `str.isdigit` also accepts digits `int` refuses."""
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= _RAW_ID_DIGITS:
        value = int(value)
    return value if type(value) is int and value > RAW_ID_BASE else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_result(body: dict[str, Any]) -> bool:
    return body.get("jsonrpc") == "2.0" and isinstance(body.get("result"), dict) and "error" not in body


def _encode(message: dict[str, Any]) -> bytes:
    # NaN/Infinity as null, as the SDK's envelope models serialise them
    return encode_line(message)


def _error_of(body: dict[str, Any]) -> MCPError:
    """The upstream's JSON-RPC error, or an internal error for an answer that is neither."""
    error = body.get("error")
    if body.get("jsonrpc") == "2.0" and isinstance(error, dict) and "result" not in body:
        code, message = error.get("code"), error.get("message")
        if type(code) is int and isinstance(message, str):
            return MCPError(code=code, message=message, data=error.get("data"))
    return MCPError(code=INTERNAL_ERROR, message="the upstream server sent an invalid response")


async def _contained_progress(
    fn: ProgressFnT, progress: float, total: float | None, message: str | None
) -> None:
    try:
        await fn(progress, total, message)
    except Exception:
        logger.exception("progress callback raised")


@asynccontextmanager
async def pipe_client(params: StdioServerParameters, errlog: TextIO) -> AsyncIterator[PipeLink]:
    """Spawn the upstream server (as the SDK's `stdio_client` does) and serve its pipes."""
    process = await _create_platform_compatible_process(
        command=params.command,
        args=params.args,
        env=get_default_environment() | (params.env or {}),
        errlog=errlog,
        cwd=params.cwd,
    )
    async with anyio.create_task_group() as tg:
        link = PipeLink(process, tg)
        tg.start_soon(link.read_loop)
        try:
            yield link
        finally:
            with anyio.CancelScope(shield=True):
                link._close()
                await _stop_server_process(process)
            tg.cancel_scope.cancel()

