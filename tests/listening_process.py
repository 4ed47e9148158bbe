"""A child process serving MCP over HTTP on a loopback port (pgwarden server or proxy), for tests.

Its stderr goes to a log file that failures quote; `stop()` terminates it, then kills it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class ListeningProcess:
    """`command` started with `env`, ready once it accepts connections on 127.0.0.1:`port`."""

    def __init__(self, command: Sequence[str], *, env: Mapping[str, str], log_path: Path, port: int,
                 name: str, ready_timeout: float) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.stderr_path = log_path
        self._stderr = log_path.open("ab")
        self.process = subprocess.Popen(
            list(command), env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early ({self.process.returncode}):\n{self.stderr()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen within {timeout}s:\n{self.stderr()}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()
