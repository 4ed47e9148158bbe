"""The floor of a Python relay that understands JSON-RPC: parse, route, re-encode; nothing checked.

    python -m bench.asyncio_relay -- COMMAND ARGS...

Spawns the upstream and relays newline-delimited JSON-RPC between it and this process's stdin
and stdout on one asyncio event loop: every line is parsed and encoded again (orjson), and each
client request gets a task that waits for the upstream's answer to its id and writes it back,
the least any relay does that can look at (and so police) what passes. Set beside `byte copy,
no parsing` (the extra process alone) and `pgwarden relay, no policy`, it splits a relay's cost
into the process hop, the event loop and parsing, and pgwarden's own relay machinery.
Benchmarks only: it enforces nothing, and it writes with blocking writes (small messages).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import orjson

from bench.byte_relay import spawn_upstream

CHUNK = 1 << 16


class _Relay:
    def __init__(self, loop: asyncio.AbstractEventLoop, upstream_in: int, upstream_out: int) -> None:
        self._loop = loop
        self._upstream_in = upstream_in
        self._upstream_out = upstream_out
        self._partial = {0: b"", upstream_out: b""}
        self._waiting: dict[Any, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.ended: asyncio.Future[None] = loop.create_future()

    def start(self) -> None:
        for fd in (0, self._upstream_out):
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._readable, fd)

    def _readable(self, fd: int) -> None:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        if not data:
            self._loop.remove_reader(fd)
            if not self.ended.done():
                self.ended.set_result(None)
            return
        *lines, self._partial[fd] = (self._partial[fd] + data).split(b"\n")
        route = self._from_client if fd == 0 else self._from_upstream
        for line in lines:
            if line.strip():
                route(orjson.loads(line))

    def _from_client(self, message: Any) -> None:
        if isinstance(message, dict) and "method" in message and "id" in message:
            answered = self._waiting[message["id"]] = self._loop.create_future()
            task = self._loop.create_task(self._answer(answered))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        _write(self._upstream_in, orjson.dumps(message) + b"\n")

    def _from_upstream(self, message: Any) -> None:
        if isinstance(message, dict) and "method" not in message:
            answered = self._waiting.pop(message.get("id"), None)
            if answered is not None:
                answered.set_result(message)
                return
        _write(1, orjson.dumps(message) + b"\n")

    async def _answer(self, answered: asyncio.Future[Any]) -> None:
        _write(1, orjson.dumps(await answered) + b"\n")


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            os.set_blocking(fd, True)


async def _relay(upstream_in: int, upstream_out: int) -> None:
    relay = _Relay(asyncio.get_running_loop(), upstream_in, upstream_out)
    relay.start()
    await relay.ended


def main(argv: list[str]) -> None:
    upstream, up_in, up_out = spawn_upstream(argv, "bench.asyncio_relay")
    asyncio.run(_relay(up_in.fileno(), up_out.fileno()))
    up_in.close()
    sys.exit(upstream.wait())


if __name__ == "__main__":
    main(sys.argv[1:])
