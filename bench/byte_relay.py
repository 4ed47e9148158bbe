"""The floor of a stdio hop: bytes copied both ways, nothing parsed, nothing checked.

    python -m bench.byte_relay -- COMMAND ARGS...

Spawns the upstream and copies its stdin and stdout with one blocking thread per direction.
No MCP relay can cost less per call than this: whatever `pgwarden relay, no policy` adds
beyond it is the relay's own work (parsing, routing, the event loop), not the extra process.
Benchmarks only: it enforces nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import IO

CHUNK = 1 << 16


def _copy(source: int, target: int, on_end: object = None) -> None:
    while chunk := os.read(source, CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(target, view):]
    if callable(on_end):
        on_end()


def spawn_upstream(argv: list[str], module: str) -> tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]:
    """The upstream named after `--` in `argv`, with its stdin and stdout as unbuffered pipes."""
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    if not command:
        raise SystemExit(f"usage: python -m {module} -- COMMAND ARGS...")
    upstream = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert upstream.stdin is not None and upstream.stdout is not None
    return upstream, upstream.stdin, upstream.stdout


def main(argv: list[str]) -> None:
    upstream, up_in, up_out = spawn_upstream(argv, "bench.byte_relay")
    threading.Thread(target=_copy, args=(0, up_in.fileno(), up_in.close), daemon=True).start()
    _copy(up_out.fileno(), 1)
    sys.exit(upstream.wait())


if __name__ == "__main__":
    main(sys.argv[1:])
