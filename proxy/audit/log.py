"""The append-only, hash-chained JSON Lines audit log of one proxy instance.

Files: the active file is `path`; when it would grow past `max_bytes`, it is renamed to
`path.000001`, `path.000002`, … and a new active file is started. The chain runs on across
files: the first record of a new file carries the last hash of the previous one.

One instance, one chain: every record names its `instance_id`; a lock file next to the log
stops a second process from appending to the same chain. Replicas each write their own path.

With `strict` on, `append` returns only after the record is on disk (`fsync`), and any failure
raises `AuditWriteError`: the caller must then deny the request. With `strict` off, the record
is handed to the operating system (no fsync) and a failure is logged and counted, not raised.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread

from pgwarden.proxy.audit.record import (
    FORMAT_VERSION,
    GENESIS_HASH,
    AuditEntry,
    canonical_json,
    record_hash,
)

log = logging.getLogger(__name__)

AuditSink = Callable[[dict[str, Any]], None]
_ROTATED_SUFFIX = re.compile(r"\.(\d{6,})$")


class AuditWriteError(Exception):
    """The audit record could not be written. With `strict` on the request must be denied."""


def rotated_files(path: Path) -> list[Path]:
    """The rotated files of the log at `path`, oldest first."""
    found: list[tuple[int, Path]] = []
    for candidate in path.parent.glob(path.name + ".*"):
        match = _ROTATED_SUFFIX.search(candidate.name)
        if match and candidate.name == path.name + match.group(0):
            found.append((int(match.group(1)), candidate))
    return [p for _, p in sorted(found)]


def chain_files(path: Path) -> list[Path]:
    """Every file of the log at `path` in chain order: rotated files, then the active one."""
    files = rotated_files(path)
    if path.exists():
        files.append(path)
    return files


def _last_line(path: Path) -> bytes | None:
    """The last line of `path` (without its newline), None if the file is empty."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        if end == 0:
            return None
        block = 4096
        data = b""
        pos = end
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            if data.count(b"\n") >= 2 or pos == 0:
                break
    if not data.endswith(b"\n"):
        raise AuditWriteError(f"{path.name} ends in a partial record; verify it and move it aside")
    return data[:-1].rsplit(b"\n", 1)[-1]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class AuditLog:
    """Appends `AuditEntry`s as chained records. Thread-safe; `append_async` for event loops."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = True,
        max_bytes: int | None = 64 * 1024 * 1024,
        instance_id: str | None = None,
        sinks: Sequence[AuditSink] = (),
    ) -> None:
        self.path = Path(path)
        self.strict = strict
        self.max_bytes = max_bytes
        self.instance_id = instance_id or socket.gethostname()
        self.sinks = list(sinks)
        self.failures = 0
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._size = 0
        self._seq = 0
        self._last_hash = GENESIS_HASH
        self._opened = False

    # -- state ------------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """Sequence number of the last record written (0 before the first)."""
        return self._seq

    @property
    def last_hash(self) -> str:
        return self._last_hash

    def _open(self) -> None:
        """Take the instance lock, resume the chain from the newest record, open the active file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._lock_fd is None:
            lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(lock_fd)
                raise AuditWriteError(f"another process is appending to {self.path.name}") from None
            self._lock_fd = lock_fd
        for candidate in reversed(chain_files(self.path)):
            line = _last_line(candidate)
            if line is None:
                continue
            self._resume_from(line, candidate)
            break
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size
        self._opened = True

    def _resume_from(self, line: bytes, source: Path) -> None:
        try:
            last = json.loads(line)
        except ValueError:
            raise AuditWriteError(f"{source.name}: last record is not JSON; verify the log") from None
        if last.get("hash") != record_hash(last):
            raise AuditWriteError(f"{source.name}: last record fails its hash; verify the log")
        if last.get("instance_id") != self.instance_id:
            raise AuditWriteError(f"{source.name} belongs to instance {last.get('instance_id')!r}, "
                                  f"not {self.instance_id!r}")
        self._seq = int(last["seq"])
        self._last_hash = str(last["hash"])

    def _rotate(self) -> None:
        assert self._fd is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        existing = rotated_files(self.path)
        number = int(_ROTATED_SUFFIX.search(existing[-1].name).group(1)) + 1 if existing else 1  # type: ignore[union-attr]
        os.rename(self.path, f"{self.path}.{number:06d}")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = 0
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- appending --------------------------------------------------------------------------

    def append(self, entry: AuditEntry) -> dict[str, Any] | None:
        """Write one record for `entry` and return it (None if it was dropped, strict off).

        Strict: returns only once the record is fsynced; raises `AuditWriteError` otherwise,
        leaving the chain as it was (a partly written line is cut off again).
        """
        try:
            with self._lock:
                record = self._append_locked(entry)
        except (OSError, AuditWriteError) as exc:
            self.failures += 1
            if self.strict:
                if isinstance(exc, AuditWriteError):
                    raise
                cause = exc.strerror or type(exc).__name__
                raise AuditWriteError(f"cannot write audit record: {cause}") from exc
            log.warning("audit record dropped (strict off): %s", type(exc).__name__)
            return None
        for sink in self.sinks:
            try:
                sink(record)
            except Exception:
                log.exception("audit sink failed")
        return record

    async def append_async(self, entry: AuditEntry) -> dict[str, Any] | None:
        """`append` on a worker thread, so the fsync does not block the event loop."""
        return await anyio.to_thread.run_sync(self.append, entry)

    def _append_locked(self, entry: AuditEntry) -> dict[str, Any]:
        if not self._opened:
            self._open()
        assert self._fd is not None
        record: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "instance_id": self.instance_id,
            "seq": self._seq + 1,
            "ts": _now(),
            **entry.to_json(),
            "prev_hash": self._last_hash,
        }
        record["hash"] = record_hash(record)
        line = canonical_json(record) + b"\n"
        if self.max_bytes is not None and self._size > 0 and self._size + len(line) > self.max_bytes:
            self._rotate()
        self._write(line)
        self._seq = record["seq"]
        self._last_hash = record["hash"]
        return record

    def _write(self, line: bytes) -> None:
        assert self._fd is not None
        fd = self._fd
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.strict:
                os.fsync(fd)
        except OSError:
            try:  # cut off a partial line so the file stays a valid chain
                os.ftruncate(fd, self._size)
            except OSError:
                self._opened = False  # reopen (and re-check the tail) on the next append
                os.close(fd)
                self._fd = None
            raise
        self._size += len(line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self._opened = False

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
