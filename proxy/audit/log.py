"""The append-only, hash-chained JSON Lines audit log of one proxy instance.

Files: the active file is `path`; when it would grow past `max_bytes`, it is renamed to
`path.000001`, `path.000002`, … and a new active file is started. The chain runs on across
files: the first record of a new file carries the last hash of the previous one.

One instance, one chain: every record names its `instance_id`; a lock file next to the log
stops a second process from appending to the same chain. Replicas each write their own path.

With `strict` on, `append` returns only after the record is on disk (`fdatasync`), and any
failure raises `AuditWriteError`: the caller must then deny the request. With `strict` off, the
record is handed to the operating system (no sync) and a failure is logged and counted, not
raised.

Group commit: one committer at a time gives records their place in the chain, encodes them,
writes all records waiting at that moment with one `write` and makes them durable with one
`fdatasync`, then releases every waiter of the batch. A caller that finds no commit under way
commits its own record on its own thread (a lone call pays for one write + sync, no hand-off);
records arriving meanwhile and `append_async` records are committed by a dedicated writer
thread, so concurrent calls share a sync (a lone request's record, on a fast disk, is
committed on the event loop: see `append_async`). The chain order is the file order: only the committer
assigns sequence numbers, in the order it writes. A record is reported written exactly when it
is durably in the chain: a batch (or the part of it after a rotation) whose write or sync fails
is cut off the file again and every waiter of it gets the error.

Calls forwarded upstream (`intend`, see `pgwarden.proxy.audit.journal`): a strict log journals
the decision of such a call before it is forwarded and makes that line durable on the writer
thread while the upstream works; the call's record is then written before the answer but
synced in the background (`append_async(..., intent=...)`), so the disk's sync is no longer on
the call's path. The guarantee becomes: no answer leaves before its decision is durable; the
record with the outcome follows within one sync. A failed background sync leaves records whose
durability is unknown: the log then refuses every further record (every call is denied) until
the proxy is restarted, and the journal still holds those decisions for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from pgwarden.proxy.audit.journal import (
    OUTCOME_LOST,
    OUTCOME_LOST_TEXT,
    Intent,
    JournalError,
    header_line,
    intent_line,
    journal_path,
    read_journal,
    records_newest_first,
    void_line,
)
from pgwarden.proxy.audit.record import (
    FORMAT_VERSION,
    GENESIS_HASH,
    AuditEntry,
    record_hash,
    seal,
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


_SYNC: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
"""Makes appended data durable. `fdatasync` also writes the file size (needed to read the data
back), so for an append-only file it is as durable as `fsync`, minus the timestamps."""

INLINE_SYNC_BUDGET_S = 0.002
"""`append_async(alone=True)` commits on the event loop itself while syncs take less than this
(moving average): cheaper than two thread hand-offs (each a wake-up of another thread, which a
virtual machine makes slow), and the loop has no other request to serve meanwhile; a statement
of a new shape keeps the loop as long. A slower disk sends every record to the writer thread
until syncs are fast again."""
_SYNC_WEIGHT = 0.25  # weight of the newest sync in the moving average
CHAIN_SYNC_DELAY_S = 0.05
"""How long journaled calls' records may wait for their sync: one sync then covers every record
written meanwhile (their decisions are durable in the journal already)."""
JOURNAL_TRIM_BYTES = 1024 * 1024
"""The journal is emptied once it is this large and every intent in it has its durable record."""
_OUTCOME_FIELDS = ("rows", "truncated", "is_error", "duration_us")  # not known when journaling

_second_text: tuple[int, str] = (-1, "")  # one tuple, replaced whole: safe across threads


def _now() -> str:
    """UTC now as `2024-05-01T12:00:00.123456Z` (the seconds part is formatted once a second)."""
    global _second_text
    second, rest = divmod(time.time_ns(), 1_000_000_000)
    cached, text = _second_text
    if second != cached:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_text = (second, text)
    return f"{text}.{rest // 1000:06d}Z"


class _Waiter:
    """One record on its way into the log, and how its caller is woken: a thread waits on a
    held lock, a task on a future of its event loop."""

    __slots__ = ("_lock", "entry", "error", "future", "intent", "loop", "record")

    def __init__(
        self, entry: AuditEntry, loop: asyncio.AbstractEventLoop | None = None, intent: Intent | None = None
    ) -> None:
        self.entry = entry
        self.intent = intent  # a journaled call's record: carries the intent's id
        self.record: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.loop = loop
        self.future: asyncio.Future[None] | None = None
        self._lock: threading.Lock | None = None
        if loop is None:
            self._lock = threading.Lock()
            self._lock.acquire()
        else:
            self.future = loop.create_future()

    def wait(self) -> None:
        assert self._lock is not None
        self._lock.acquire()

    def release(self) -> None:
        assert self._lock is not None
        self._lock.release()


def _wake(waiters: list[_Waiter]) -> None:
    """On the waiters' event loop: resolve their futures (a cancelled one is left alone)."""
    for waiter in waiters:
        if waiter.future is not None and not waiter.future.done():
            waiter.future.set_result(None)


def _release(batch: Sequence[_Waiter]) -> None:
    """Wake every waiter of a finished batch: threads directly, tasks with one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Waiter]] = {}
    for waiter in batch:
        if waiter.loop is None:
            waiter.release()
        else:
            by_loop.setdefault(waiter.loop, []).append(waiter)
    for loop, waiters in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: no one waits for these any more
            loop.call_soon_threadsafe(_wake, waiters)


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
        # Guards the queue and the committer role; the chain state below belongs to whoever
        # holds the role (`_committing`), which does its I/O without holding this lock.
        mutex = threading.Lock()
        self._lock = threading.Condition(mutex)
        # The writer thread waits on a condition of its own (same lock), woken only when records
        # are queued for it or the log stops: a commit on the caller's thread leaves it asleep.
        self._work = threading.Condition(mutex)
        self._pending: list[_Waiter] = []
        self._committing = False
        self._stopping = False
        self._writer: threading.Thread | None = None
        self._sync_seconds: float | None = None  # moving average of sync durations (None: none yet)
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._size = 0
        self._seq = 0
        self._last_hash = GENESIS_HASH
        self._opened = False
        # The decision journal (strict only). Intent ids are unique per instance and start.
        self._journal_path = journal_path(self.path)
        self._journal_fd: int | None = None
        self._journal_size = 0
        self._journal_queue: list[Intent] = []  # written, waiting for the writer's sync
        self._open_intents: set[str] = set()  # journaled, record not yet durable in the chain
        self._lazy_ids: list[str] = []  # intents whose record is written but not yet synced
        self._chain_dirty = False  # records written and not yet synced (journaled calls')
        self._chain_due = 0.0  # monotonic time by which the writer syncs them
        self._chain_news = False  # they became dirty since the writer last looked
        self._broken: AuditWriteError | None = None
        self._writing = False  # the last commit wrote its records (see `records_may_follow_answers`)
        self._intent_prefix = secrets.token_hex(4)
        self._intent_numbers = itertools.count(1)

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
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size
        if created and self.strict:
            self._sync_directory()  # the new file's name is as durable as its records
        if self._journal_fd is None:  # first open (not a reopen after a failed write)
            self._recover_journal()
            if self.strict:
                self._start_journal()
        self._opened = True

    def _recover_journal(self) -> None:
        """Append a record for every journaled decision whose record the chain lacks (the
        process stopped between the two), then empty the journal. Holds the committer role."""
        try:
            contents = read_journal(self._journal_path)
        except JournalError as exc:
            raise AuditWriteError(f"{exc}; move it aside after checking it") from None
        if contents is None:
            return
        missing = {intent.id for intent in contents.intents}
        if missing:
            for found in records_newest_first(chain_files(self.path)):
                seq = found.get("seq")
                if isinstance(seq, int) and seq <= contents.after_seq:
                    break
                missing.discard(str(found.get("intent")))
                if not missing:
                    break
        lines: list[bytes] = []
        seq, last_hash, size = self._seq, self._last_hash, self._size
        for intent in contents.intents:
            if intent.id not in missing:
                continue
            record: dict[str, Any] = {
                "v": FORMAT_VERSION,
                "instance_id": self.instance_id,
                "seq": seq + 1,
                "ts": _now(),
                **intent.entry,
                **dict.fromkeys(_OUTCOME_FIELDS),  # unknown
                "reason_code": OUTCOME_LOST,
                "reason": OUTCOME_LOST_TEXT.format(ts=intent.ts),
                "intent": intent.id,
                "prev_hash": last_hash,
            }
            digest, line = seal(record)
            lines.append(line)
            size += len(line)
            seq, last_hash = seq + 1, digest
        if lines:
            log.warning("audit: %d journaled call(s) had no record; recorded now", len(lines))
            self._write_durably(lines, size, seq, last_hash, sync=True)
        with open(self._journal_path, "r+b") as f:  # every intent is in the chain now
            f.truncate(0)
            os.fsync(f.fileno())

    def _start_journal(self) -> None:
        fd = os.open(self._journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        size = os.fstat(fd).st_size
        if size == 0:
            header = header_line(self._seq)
            os.write(fd, header)
            size = len(header)
        self._journal_fd, self._journal_size = fd, size

    def _ensure_open(self) -> None:
        """Open the log (and recover its journal) now, taking the committer role to do it."""
        if self._opened:
            return
        with self._lock:
            while self._committing:
                self._lock.wait()
            if self._opened:
                return
            self._committing = True
        try:
            self._open()
        finally:
            with self._lock:
                self._hand_back_locked()

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

    def _sync_directory(self) -> None:
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _rotate(self) -> None:
        """Start a new active file; the current one is already synced (see `_commit`)."""
        assert self._fd is not None
        fd, self._fd = self._fd, None
        os.close(fd)
        existing = rotated_files(self.path)
        number = int(_ROTATED_SUFFIX.search(existing[-1].name).group(1)) + 1 if existing else 1  # type: ignore[union-attr]
        os.rename(self.path, f"{self.path}.{number:06d}")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = 0
        self._sync_directory()

    @property
    def records_may_follow_answers(self) -> bool:
        """Whether a journaled call's record may be written after its answer: only while the
        log's last commit wrote its records. At the start and after a failed write, records go
        before their answers again, so a log that cannot be written denies the calls (as every
        strict log does) instead of answering them with their outcomes left to the journal."""
        return self._writing and self._broken is None

    # -- journaling -------------------------------------------------------------------------

    def intend(self, entry: AuditEntry) -> Intent | None:
        """Journal the decision in `entry` of a call about to be forwarded (strict logs; None
        otherwise). The line is written now and made durable by the writer thread; the call's
        record must then be appended with this intent. Raises `AuditWriteError` (deny the call)
        when the line cannot be written."""
        if not self.strict:
            return None
        try:
            self._ensure_open()
        except OSError as exc:
            raise AuditWriteError(f"cannot open the audit log: {exc.strerror or type(exc).__name__}") from exc
        body = entry.to_json()
        for name in _OUTCOME_FIELDS:
            body.pop(name, None)
        with self._lock:
            if self._broken is not None:
                raise AuditWriteError(str(self._broken))
            fd = self._journal_fd
            if fd is None:
                raise AuditWriteError("the decision journal is not open")
            intent = Intent(f"{self._intent_prefix}.{next(self._intent_numbers)}")
            line = intent_line(intent.id, _now(), body)
            try:
                data = memoryview(line)
                while data:
                    data = data[os.write(fd, data):]
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._journal_size)  # no torn line before the next one
                raise AuditWriteError(
                    f"cannot journal the decision: {exc.strerror or type(exc).__name__}") from exc
            self._journal_size += len(line)
            self._open_intents.add(intent.id)
            self._journal_queue.append(intent)
        # Wake the writer once the caller's task yields (it is about to forward the call): woken
        # now, it would contend for the GIL with the forwarding itself. Not on an event loop:
        # `append` syncs the line on the caller's thread.
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_soon(self._wake_writer)
        return intent

    def _wake_writer(self) -> None:
        with self._lock:
            self._start_writer_locked()
            self._work.notify()

    def _sync_journal(self, intents: list[Intent]) -> None:
        """On the writer thread: make the journal lines of `intents` durable, then settle them."""
        error: BaseException | None = None
        fd = self._journal_fd
        try:
            if fd is None:
                raise AuditWriteError("the decision journal is not open")
            _SYNC(fd)
        except OSError as exc:
            cause = exc.strerror or type(exc).__name__
            error = AuditWriteError(f"cannot make the decision journal durable: {cause}")
        except AuditWriteError as exc:
            error = exc
        for intent in intents:
            intent.settle(error)

    def _settle(self, ids: list[str]) -> None:
        """These intents' records are durable; empty the journal if it is big and all settled.
        Holds the committer role (the chain's `seq` is the journal's new starting point)."""
        with self._lock:
            self._open_intents.difference_update(ids)
            fd = self._journal_fd
            if fd is None or self._open_intents or self._journal_size <= JOURNAL_TRIM_BYTES:
                return
            try:
                os.ftruncate(fd, 0)
                header = header_line(self._seq)
                os.write(fd, header)
                self._journal_size = len(header)
            except OSError:
                log.warning("audit: the decision journal could not be emptied; it keeps growing")

    def _void(self, intent: Intent) -> None:
        """The call of `intent` has no record and was denied: the journal says so (best
        effort), so a restart does not record it as a call whose outcome was lost."""
        with self._lock:
            self._open_intents.discard(intent.id)
            fd = self._journal_fd
            if fd is None:
                return
            line = void_line(intent.id)
            try:
                os.write(fd, line)
                self._journal_size += len(line)
            except OSError:
                pass

    def _sync_chain(self) -> None:
        """On the writer thread (committer role): sync the records written without a sync."""
        if not self._chain_dirty or self._fd is None:
            self._chain_dirty = False
            return
        if self._chain_due > time.monotonic():
            return  # not yet: the writer comes back for it
        try:
            _SYNC(self._fd)
        except OSError as exc:
            self._break(exc)
            return
        ids, self._lazy_ids = self._lazy_ids, []
        self._chain_dirty = False
        self._settle(ids)

    def _break(self, exc: BaseException) -> None:
        """Records already answered may not be durable: refuse every further record."""
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        self._chain_dirty = False
        with self._lock:
            self.failures += 1
            self._broken = AuditWriteError(
                f"the audit log could not make its records durable ({cause}); every call is denied "
                f"until pgwarden is restarted; {self._journal_path.name} keeps the decisions answered")
        log.error("audit log broken: %s", self._broken)

    # -- appending --------------------------------------------------------------------------

    def append(self, entry: AuditEntry, *, intent: Intent | None = None) -> dict[str, Any] | None:
        """Write one record for `entry` and return it (None if it was dropped, strict off).

        Strict: returns only once the record is durable; raises `AuditWriteError` otherwise,
        leaving the chain as it was (a partly written batch is cut off again). Commits on the
        calling thread when no commit is under way, else waits for the writer's next batch.
        """
        if intent is not None and not intent.done:
            # Not taken by the writer yet (its wake-up may even sit in this blocked loop's
            # queue): sync the journal here, as a lone record is committed on its caller's thread.
            with self._lock:
                mine = intent in self._journal_queue
                if mine:
                    intents, self._journal_queue = self._journal_queue, []
            if mine:
                self._sync_journal(intents)
            intent.wait()
        waiter = _Waiter(entry, intent=intent)
        with self._lock:
            if self._broken is not None:
                raise AuditWriteError(str(self._broken))
            self._pending.append(waiter)
            inline = not self._committing
            if inline:
                self._committing = True
        if inline:
            self._commit_as_caller()
        waiter.wait()
        return self._outcome(waiter)

    async def append_async(
        self, entry: AuditEntry, *, alone: bool = False, intent: Intent | None = None
    ) -> dict[str, Any] | None:
        """`append` for event loops: the loop is not kept waiting for a slow disk.

        Strict: the record joins the writer thread's next batch and this task waits (shielded
        from cancellation, like a worker thread would be) until the batch is durable. With
        `alone` (the caller knows no other request is in flight on this process), no commit
        under way and syncs averaging under `INLINE_SYNC_BUDGET_S`, the record is committed
        on the loop itself instead: two thread hand-offs cost more than such a sync. Not
        strict: nothing waits for the disk, so the record is written on the spot.

        With the `intent` of a journaled call: waits until the journal line is durable (raising
        `AuditWriteError` if it could not be made so), then writes the record (on the loop when
        no commit is under way) and returns without waiting for its sync.
        """
        if not self.strict:
            return self.append(entry)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another event loop library: a worker thread per record
            return await anyio.to_thread.run_sync(lambda: self.append(entry, intent=intent))
        if intent is not None:
            with anyio.CancelScope(shield=True):
                await intent.wait_async()
        inline = _Waiter(entry, intent=intent)
        with self._lock:
            if self._broken is not None:
                raise AuditWriteError(str(self._broken))
            here = not self._committing and not self._pending and (intent is not None or (alone and (
                self._sync_seconds is not None and self._sync_seconds < INLINE_SYNC_BUDGET_S)))
            if here:
                self._committing = True
                self._pending.append(inline)
        if here:  # nothing else to wait for and a fast disk: commit right here
            self._commit_as_caller()
            inline.wait()  # already released by the commit
            return self._outcome(inline)
        waiter = _Waiter(entry, loop, intent)
        with self._lock:
            self._pending.append(waiter)
            if not self._committing:
                self._start_writer_locked()
                self._work.notify()
        assert waiter.future is not None
        with anyio.CancelScope(shield=True):
            await waiter.future
        return self._outcome(waiter)

    def _outcome(self, waiter: _Waiter) -> dict[str, Any] | None:
        """What `append` returns or raises for a released waiter (on the caller's side)."""
        exc = waiter.error
        if exc is not None:
            if waiter.intent is not None and not waiter.intent.answered:
                self._void(waiter.intent)
            if not isinstance(exc, (OSError, AuditWriteError)):
                raise exc  # not an I/O failure (an entry that cannot be encoded): a bug, surface it
            with self._lock:
                self.failures += 1
            if self.strict:
                if isinstance(exc, AuditWriteError):
                    raise AuditWriteError(str(exc)) from exc
                cause = exc.strerror or type(exc).__name__
                raise AuditWriteError(f"cannot write audit record: {cause}") from exc
            log.warning("audit record dropped (strict off): %s", type(exc).__name__)
            return None
        record = waiter.record
        assert record is not None
        for sink in self.sinks:
            try:
                sink(record)
            except Exception:
                log.exception("audit sink failed")
        return record

    # -- committing -------------------------------------------------------------------------

    def _start_writer_locked(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._writer_main, name="pgwarden-audit-writer",
                                            daemon=True)
            self._writer.start()

    def _hand_back_locked(self) -> None:
        """Give up the committer role; records that queued meanwhile go to the writer thread."""
        self._committing = False
        if self._stopping:
            self._work.notify_all()  # a stopping writer waits for the role to exit
        elif self._pending or self._chain_news:
            self._chain_news = False
            self._start_writer_locked()
            self._work.notify()
        self._lock.notify_all()  # `flush` and `close` wait for the role to be given back

    def _commit_as_caller(self) -> None:
        """The caller holds the committer role: commit what is queued (its own record among it)."""
        try:
            with self._lock:
                batch, self._pending = self._pending, []
            self._commit(batch)
        finally:
            with self._lock:
                self._hand_back_locked()

    def _writer_main(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._journal_queue or (not self._committing and self._pending):
                        break
                    if not self._committing and self._chain_dirty:
                        wait = self._chain_due - time.monotonic()
                        if wait <= 0:
                            break
                        self._work.wait(wait)
                        continue
                    if self._stopping and not self._committing and not self._pending:
                        return
                    # Records waiting for their sync while another thread commits: look again
                    # when they are due (a hand-back does not always wake this thread).
                    due = max(self._chain_due - time.monotonic(), 0.001) if self._chain_dirty else None
                    self._work.wait(due)
                intents, self._journal_queue = self._journal_queue, []
                commit = not self._committing and bool(
                    self._pending or (self._chain_dirty and self._chain_due <= time.monotonic()))
                batch: list[_Waiter] = []
                if commit:
                    self._committing = True
                    batch, self._pending = self._pending, []
            if intents:  # first: their calls wait on these, not on the chain's sync
                self._sync_journal(intents)
            if not commit:
                continue
            try:
                self._commit(batch)
                self._sync_chain()
            finally:
                with self._lock:
                    self._hand_back_locked()

    def _commit(self, batch: list[_Waiter]) -> None:
        """Chain, write and sync `batch` in order, then release its waiters. Holds the role."""
        if not batch:
            return
        start = 0  # the first record of the batch not yet durable
        released = batch
        if self._broken is not None:
            for waiter in batch:
                waiter.error = self._broken
            _release(batch)
            return
        try:
            if not self._opened:
                self._open()
            assert self._fd is not None
            lines: list[bytes] = []
            seq, last_hash, size = self._seq, self._last_hash, self._size
            for index, waiter in enumerate(batch):
                try:
                    record: dict[str, Any] = {
                        "v": FORMAT_VERSION,
                        "instance_id": self.instance_id,
                        "seq": seq + 1,
                        "ts": _now(),
                        **waiter.entry.to_json(),
                        "prev_hash": last_hash,
                    }
                    if waiter.intent is not None:
                        record["intent"] = waiter.intent.id
                    digest, line = seal(record)
                except Exception as exc:  # this entry cannot be a record; the others still can
                    waiter.error = exc
                    continue
                if self.max_bytes is not None and size > 0 and size + len(line) > self.max_bytes:
                    # The records so far go to the full file, which is synced, then renamed.
                    self._write_durably(lines, size, seq, last_hash, sync=True,
                                        intents=_intent_ids(batch[start:index]))
                    start = index
                    lines = []
                    self._rotate()
                    size = 0
                record["hash"] = digest
                waiter.record = record
                lines.append(line)
                size += len(line)
                seq, last_hash = seq + 1, digest
            # A strict log syncs now unless every record is a journaled call's (synced later);
            # a call whose journal line could not be made durable waits for its record's sync.
            sync = self.strict and any(w.intent is None or w.intent.error is not None for w in batch[start:])
            self._write_durably(lines, size, seq, last_hash, sync=sync, intents=_intent_ids(batch[start:]))
            start = len(batch)
            self._writing = True
        except (OSError, AuditWriteError) as exc:
            self._writing = False
            self._abandon(batch[start:], exc)
        except Exception as exc:  # a bug: fail the records (closed), never leave a waiter hanging
            self._abandon(batch[start:], exc)
            raise
        except BaseException:  # interrupted (KeyboardInterrupt on SIGTERM), not failed
            released = batch[:start]
            self._requeue(batch[start:])
            raise
        finally:
            _release(released)

    def _write_durably(
        self, lines: list[bytes], size: int, seq: int, last_hash: str, *, sync: bool,
        intents: Sequence[str] = (),
    ) -> None:
        """Append `lines` (and sync them if `sync`), then advance the chain to their end.
        `intents`: the journaled calls among them, settled once synced (now or later)."""
        assert self._fd is not None
        if lines:
            data = memoryview(b"".join(lines))
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        if sync:
            started = time.perf_counter()
            try:
                _SYNC(self._fd)
            except OSError as exc:
                if self._lazy_ids:  # written, unsynced records of answered calls: durability unknown
                    self._break(exc)
                raise
            took = time.perf_counter() - started
            average = self._sync_seconds
            self._sync_seconds = took if average is None else average + _SYNC_WEIGHT * (took - average)
        self._size, self._seq, self._last_hash = size, seq, last_hash
        if sync:
            settled, self._lazy_ids = [*self._lazy_ids, *intents], []
            self._chain_dirty = False
            if settled:
                self._settle(settled)
        elif intents:
            self._lazy_ids.extend(intents)
            if not self._chain_dirty:
                self._chain_dirty = self._chain_news = True
                self._chain_due = time.monotonic() + CHAIN_SYNC_DELAY_S

    def _requeue(self, waiters: list[_Waiter]) -> None:
        """A commit was interrupted: cut its records off the file again and put them back at the
        head of the queue, in order, for the writer thread (or `close`) to commit."""
        self._abandon([], None)
        for waiter in waiters:
            waiter.record = None
        with self._lock:
            self._pending[:0] = waiters

    def _abandon(self, waiters: Sequence[_Waiter], exc: BaseException | None) -> None:
        """These records are not in the log: cut their lines off the file again and fail them.

        The chain state was only advanced up to durable records, so the file is cut back to
        there. The file is then reopened before the next record, and the chain resumed from
        what the file really ends with (a file that cannot be cut keeps failing: closed).
        """
        for waiter in waiters:
            if waiter.error is None and exc is not None:
                waiter.record = None
                waiter.error = exc
        fd, self._fd = self._fd, None
        self._opened = False
        if fd is not None:
            try:
                os.ftruncate(fd, self._size)
            except OSError:
                pass
            finally:
                os.close(fd)

    # -- closing ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Return once every record appended so far is written (and synced, when strict)."""
        with self._lock:
            self._chain_due = 0.0  # records waiting for a sync get it now
            while self._committing or self._pending or self._chain_dirty:
                if not self._committing:
                    self._start_writer_locked()
                    self._work.notify()
                self._lock.wait()

    def close(self) -> None:
        """Write every record still waiting, sync and close the file, stop the writer thread.

        The log can be appended to again afterwards (it reopens and resumes the chain).
        """
        with self._lock:
            self._stopping = True
            self._chain_due = 0.0
            self._work.notify_all()
            self._lock.notify_all()
            writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join()
        with self._lock:
            while self._committing:
                self._lock.wait()
            self._committing = True
            batch, self._pending = self._pending, []
        try:
            self._commit(batch)
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                    if self._broken is None:
                        ids, self._lazy_ids, self._chain_dirty = self._lazy_ids, [], False
                        self._settle(ids)
                finally:
                    os.close(self._fd)
                    self._fd = None
            self._close_journal()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self._opened = False
        finally:
            with self._lock:
                self._writer = None
                self._stopping = False
                self._hand_back_locked()

    def _close_journal(self) -> None:
        """Close the journal; empty it when every intent in it has its durable record (else it
        is kept for the next start to recover)."""
        fd, self._journal_fd = self._journal_fd, None
        if fd is None:
            return
        try:
            if not self._open_intents and self._broken is None:
                os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _intent_ids(waiters: Sequence[_Waiter]) -> list[str]:
    """The intent ids of the journaled calls among `waiters` whose record was made."""
    return [w.intent.id for w in waiters if w.intent is not None and w.record is not None]
