"""The decision journal of a strict audit log: what was allowed, durable before the answer.

A call that is forwarded upstream is journaled as soon as it is allowed: one JSON line with
what was decided (the audit entry as it stands then: principal, tool, redacted SQL as received
and as sent, rules, relations, masks, row filters, cap), written at once and made durable by
the log's writer thread while the upstream works. The answer leaves only once that line is
durable (if it cannot be made durable, the call's record is written the old way: synced before
the answer, or the call is denied). The call's chained record (with the outcome: rows,
truncation, error, duration) carries the intent's id and is written before the answer, then
synced in the background.

So a crash can lose the outcome of an answered call, never its decision: when the log opens
again, every journaled intent whose record is not in the chain is appended to the chain as a
record of that decision whose outcome is unknown. The journal is emptied whenever every intent
in it has its record durably in the chain.

File: `.<log name>.journal` beside the log (hidden, so `audit.jsonl*` globs of the chain do not
pick it up). Its first line says after which chain record its intents start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

OUTCOME_LOST = "audit.outcome_lost"
OUTCOME_LOST_TEXT = (
    "pgwarden stopped before the outcome of this call was recorded; its decision was journaled at {ts}"
)


def journal_path(log_path: Path) -> Path:
    return log_path.with_name(f".{log_path.name}.journal")


def header_line(after_seq: int) -> bytes:
    return orjson.dumps({"journal": 1, "after_seq": after_seq}) + b"\n"


def intent_line(intent_id: str, ts: str, entry: dict[str, Any]) -> bytes:
    return orjson.dumps({"intent": intent_id, "ts": ts, "entry": entry}) + b"\n"


def void_line(intent_id: str) -> bytes:
    """The call of this intent was answered with an audit failure: nothing to recover."""
    return orjson.dumps({"void": intent_id}) + b"\n"


class Intent:
    """One journaled decision: the caller waits for it to be durable before answering.

    Made durable (or failed) by the log's writer thread; `wait_async` on the event loop only
    suspends when the sync has not finished yet (usually it has: it ran during the call)."""

    __slots__ = ("_future", "_loop", "_mutex", "_thread_waiter", "answered", "done", "error", "id")

    def __init__(self, intent_id: str) -> None:
        self.id = intent_id
        self.done = False
        self.error: BaseException | None = None
        self._mutex = threading.Lock()
        self._future: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_waiter: threading.Event | None = None  # made only for a thread that waits
        # Set when the call was answered before its record was written: a record that then
        # fails leaves the intent open (recovered at the next start), not voided.
        self.answered = False

    def settle(self, error: BaseException | None) -> None:
        """On the writer thread: the intent's line is durable (or could not be made so)."""
        with self._mutex:
            self.error = error
            self.done = True
            future, loop, waiter = self._future, self._loop, self._thread_waiter
        if waiter is not None:
            waiter.set()
        if future is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: no one waits any more
                loop.call_soon_threadsafe(_resolve, future)

    async def wait_async(self) -> None:
        with self._mutex:
            if self.done:
                return
            loop = asyncio.get_running_loop()
            self._future, self._loop = loop.create_future(), loop
            future = self._future
        await asyncio.shield(future)

    def wait(self) -> None:
        """Block until settled: only once the log's writer (or `AuditLog.append`) syncs it."""
        with self._mutex:
            if self.done:
                return
            if self._thread_waiter is None:
                self._thread_waiter = threading.Event()
            waiter = self._thread_waiter
        waiter.wait()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True, slots=True)
class JournaledIntent:
    id: str
    ts: str
    entry: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JournalContents:
    after_seq: int
    intents: tuple[JournaledIntent, ...]


class JournalError(Exception):
    """The journal cannot be read: the log refuses to open rather than guess."""


def read_journal(path: Path) -> JournalContents | None:
    """The intents in the journal at `path` (None when there is none, or it is empty).

    A last line without its newline was being written when the process stopped: that call
    was never forwarded (the intent is written before forwarding), so it is ignored.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None
    lines = data.split(b"\n")
    if lines[-1]:
        lines = lines[:-1]  # torn last line
    lines = [line for line in lines if line]
    if not lines:
        return None
    try:
        header = json.loads(lines[0])
        after_seq = int(header["after_seq"])
    except (ValueError, KeyError, TypeError):
        raise JournalError(f"{path.name}: line 1 is not a journal header") from None
    intents: list[JournaledIntent] = []
    void: set[str] = set()
    for number, line in enumerate(lines[1:], start=2):
        try:
            item = json.loads(line)
            if "void" in item:
                void.add(str(item["void"]))
            else:
                intents.append(JournaledIntent(str(item["intent"]), str(item["ts"]), dict(item["entry"])))
        except (ValueError, KeyError, TypeError):
            raise JournalError(f"{path.name}: line {number} is not a journaled intent") from None
    return JournalContents(after_seq, tuple(i for i in intents if i.id not in void))


def records_newest_first(files: list[Path]) -> Iterator[dict[str, Any]]:
    """Records of the chain `files` (chain order), newest first; lines that are not JSON skipped."""
    for path in reversed(files):
        with path.open("rb") as f:
            lines = f.read().split(b"\n")
        for line in reversed(lines):
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record
