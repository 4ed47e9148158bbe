"""The decision journal: a forwarded call's answer waits for its decision to be durable, not for
its record's sync, and a crash between the two leaves the decision in the chain at the next start.

Crashes are real: a child process journals decisions and dies with `os._exit`, leaving the files
as a killed proxy would (written data stays in the page cache; nothing is closed or synced)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import entry, products_gate

import pgwarden.proxy.audit.log as audit_log_module
from pgwarden.proxy.audit import AuditLog, AuditWriteError, verify_files
from pgwarden.proxy.audit.journal import OUTCOME_LOST, journal_path, read_journal

REAL_SYNC = audit_log_module._SYNC


class TargetProbe:
    """Wraps the real sync, telling the journal's syncs from the chain's: records the size each
    made durable, can hold or fail the syncs of one file."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path.resolve()
        self.synced: list[tuple[str, int]] = []  # ("journal" | "chain", file size synced)
        self.hold = {"journal": threading.Event(), "chain": threading.Event()}
        for event in self.hold.values():
            event.set()
        self.fail: set[str] = set()

    def target(self, fd: int) -> str:
        return "chain" if Path(os.readlink(f"/proc/self/fd/{fd}")) == self.log_path else "journal"

    def __call__(self, fd: int) -> None:
        target = self.target(fd)
        assert self.hold[target].wait(30), "the test never released the sync"
        if target in self.fail:
            raise OSError(errno.EIO, "Input/output error")
        REAL_SYNC(fd)
        self.synced.append((target, os.fstat(fd).st_size))

    def synced_sizes(self, target: str) -> list[int]:
        return [size for t, size in self.synced if t == target]


@pytest.fixture
def probe(audit_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TargetProbe]:
    p = TargetProbe(audit_path)
    monkeypatch.setattr(audit_log_module, "_SYNC", p)
    yield p
    for event in p.hold.values():
        event.set()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def journaled_call(log: AuditLog, i: int) -> dict[str, Any] | None:
    """One allowed call as the proxy makes it: journal the decision, then append the record."""

    async def call() -> dict[str, Any] | None:
        intent = log.intend(entry(i))
        return await log.append_async(entry(i), intent=intent)

    return asyncio.run(call())


def test_the_answer_waits_for_the_journal_not_for_the_records_sync(
    audit_path: Path, probe: TargetProbe
) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    probe.hold["chain"].clear()  # the record's sync does not finish while the call is answered

    record = journaled_call(log, 5)
    assert record is not None
    journal = journal_path(audit_path)
    # The decision was durable before the call returned: a journal sync covered its line.
    assert probe.synced_sizes("journal") and probe.synced_sizes("journal")[-1] == journal.stat().st_size
    pending = read_journal(journal)
    assert pending is not None and [i.id for i in pending.intents] == [record["intent"]]
    # The record is written (readers see it) but its sync has not completed.
    assert probe.synced_sizes("chain") == []
    written = lines(audit_path)
    assert [r["intent"] for r in written] == [record["intent"]] and written[0]["rows"] == 5
    probe.hold["chain"].set()
    log.flush()
    assert probe.synced_sizes("chain")[-1] == audit_path.stat().st_size
    log.close()
    assert journal.stat().st_size == 0  # every intent has its durable record: nothing to recover
    assert verify_files([audit_path]).ok


def test_the_journaled_decision_holds_no_outcome_and_no_literal(audit_path: Path) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    intent = log.intend(entry(9))
    assert intent is not None
    contents = read_journal(journal_path(audit_path))  # written at once, synced later
    assert contents is not None
    (journaled,) = contents.intents
    assert journaled.entry["sql_sent"] == entry(9).to_json()["sql_sent"]
    assert {"rows", "truncated", "is_error", "duration_us"}.isdisjoint(journaled.entry)
    assert "ada@example.com" not in journal_path(audit_path).read_text()
    log.append(entry(9), intent=intent)
    log.close()


CRASH = """
import asyncio, os, sys
sys.path.insert(0, {helpers!r})
from audit_helpers import entry, products_gate
from pgwarden.proxy.audit import AuditLog

log = AuditLog({path!r}, instance_id="test-1", strict=True)

async def main():
    first = log.intend(entry(1))
    await log.append_async(entry(1), intent=first)   # answered: record written, sync maybe not
    second = log.intend(entry(2))                    # forwarded: the upstream is working...
    await second.wait_async()
    os._exit(0)                                      # ...when the proxy dies

asyncio.run(main())
"""


def crash_after_two_decisions(audit_path: Path) -> None:
    script = CRASH.format(helpers=str(Path(__file__).parent), path=str(audit_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_crash_between_decision_and_record_is_recorded_at_the_next_start(audit_path: Path) -> None:
    crash_after_two_decisions(audit_path)
    assert [r["rows"] for r in lines(audit_path)] == [1]  # the lost call has no record yet
    pending = read_journal(journal_path(audit_path))
    assert pending is not None and len(pending.intents) == 2

    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    log.append(entry(3))
    log.close()
    records = lines(audit_path)
    assert [r["seq"] for r in records] == [1, 2, 3]
    first, lost, third = records
    assert first["rows"] == 1 and first["intent"] == pending.intents[0].id
    assert lost["intent"] == pending.intents[1].id and lost["reason_code"] == OUTCOME_LOST
    assert lost["decision"] == "allow" and lost["rows"] is None and lost["principal"] == entry(2).principal
    assert lost["sql_sent"] == entry(2).to_json()["sql_sent"] and lost["request_id"] == "2"
    assert "intent" not in third and third["rows"] == 3
    assert journal_path(audit_path).stat().st_size == 0
    assert verify_files([audit_path]).ok


def test_recovery_adds_nothing_twice(audit_path: Path) -> None:
    crash_after_two_decisions(audit_path)
    for _ in range(2):
        log = AuditLog(audit_path, instance_id="test-1", strict=True)
        log.append(entry(3))
        log.close()
    assert [r.get("reason_code") for r in lines(audit_path)] == [None, OUTCOME_LOST, None, None]


def test_a_call_that_could_not_be_audited_is_not_recovered_as_answered(
    audit_path: Path, probe: TargetProbe
) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    probe.fail = {"journal", "chain"}

    with pytest.raises(AuditWriteError):
        journaled_call(log, 4)
    assert audit_path.read_text() == ""
    assert read_journal(journal_path(audit_path)) is not None
    assert read_journal(journal_path(audit_path)).intents == ()  # type: ignore[union-attr]
    probe.fail = set()
    journaled_call(log, 4)  # the disk is back: the next call is journaled and recorded
    log.close()
    assert [r["rows"] for r in lines(audit_path)] == [4]


def test_a_journal_that_cannot_be_synced_falls_back_to_a_synced_record(
    audit_path: Path, probe: TargetProbe
) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    probe.fail = {"journal"}

    record = journaled_call(log, 6)
    assert record is not None
    assert probe.synced_sizes("chain")[-1] == audit_path.stat().st_size  # synced before returning
    log.close()


def test_a_failed_background_sync_denies_every_later_call(audit_path: Path, probe: TargetProbe) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    probe.fail = {"chain"}

    assert journaled_call(log, 1) is not None  # answered before its record's sync failed
    log.flush()
    probe.fail = set()
    with pytest.raises(AuditWriteError, match="restarted"):
        log.intend(entry(2))
    with pytest.raises(AuditWriteError, match="restarted"):
        log.append(entry(2, decision="deny"))
    log.close()
    pending = read_journal(journal_path(audit_path))
    assert pending is not None and len(pending.intents) == 1  # kept for the next start
    reopened = AuditLog(audit_path, instance_id="test-1", strict=True)
    reopened.append(entry(3))
    reopened.close()
    assert [r["rows"] for r in lines(audit_path)] == [1, 3]  # its record was on disk after all
    assert verify_files([audit_path]).ok


def test_a_non_strict_log_journals_nothing(audit_path: Path) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=False)
    assert log.intend(entry(1)) is None
    log.close()
    assert not journal_path(audit_path).exists()


def test_a_damaged_journal_stops_the_log_from_opening(audit_path: Path) -> None:
    crash_after_two_decisions(audit_path)
    journal = journal_path(audit_path)
    text = journal.read_bytes().split(b"\n")
    text[1] = b"{not json"
    journal.write_bytes(b"\n".join(text))
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    with pytest.raises(AuditWriteError, match="line 2"):
        log.append(entry(3))
    log.close()


def test_a_record_appended_on_the_loop_before_it_yields_does_not_wait_forever(audit_path: Path) -> None:
    """A call that fails right after its decision (before its task yields) is recorded
    synchronously: the writer's wake-up is still queued on the blocked loop, so `append` wakes
    it itself."""
    log = AuditLog(audit_path, instance_id="test-1", strict=True)

    async def fail_at_once() -> dict[str, Any] | None:
        intent = log.intend(entry(8))
        return log.append(entry(8), intent=intent)

    done: list[dict[str, Any] | None] = []
    worker = threading.Thread(target=lambda: done.append(asyncio.run(fail_at_once())), daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive() and done and done[0] is not None
    log.close()
    assert [r["rows"] for r in lines(audit_path)] == [8]


def test_a_failed_write_after_unsynced_records_denies_only_that_call(
    audit_path: Path, probe: TargetProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a failed *sync* leaves answered records of unknown durability; a failed write
    (a full disk) is cut off again and denies its own call, as before."""
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    probe.hold["chain"].clear()  # call 1's record stays written but unsynced
    failing = {"on": False}
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if failing["on"] and probe.target(fd) == "chain":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    assert journaled_call(log, 1) is not None
    monkeypatch.setattr(os, "write", write)
    failing["on"] = True
    with pytest.raises(AuditWriteError):
        log.append(entry(2, decision="deny"))
    failing["on"] = False
    probe.hold["chain"].set()
    assert journaled_call(log, 3) is not None  # the log still serves
    log.close()
    assert [r["rows"] for r in lines(audit_path)] == [1, 3]
    assert verify_files([audit_path]).ok


def test_records_due_while_another_thread_commits_are_still_synced(
    audit_path: Path, probe: TargetProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_log_module, "CHAIN_SYNC_DELAY_S", 0.02)
    log = AuditLog(audit_path, instance_id="test-1", strict=True)

    assert journaled_call(log, 1) is not None  # written; its sync is due in 20 ms
    time.sleep(0.005)  # the writer has seen it and waits for it to be due
    with log._lock:
        log._committing = True  # another thread commits meanwhile (say a denial's record)
    time.sleep(0.1)  # ... past the due time
    with log._lock:
        log._hand_back_locked()  # nothing new for the writer: no wake-up
    deadline = time.monotonic() + 10
    while not probe.synced_sizes("chain") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert probe.synced_sizes("chain") == [audit_path.stat().st_size]
    log.close()


# -- the record after the answer (fronts that run work after writing it) -------------------------

RECORDED_ROW = "row-value-of-the-answer"


async def answered_call(gate: Any, rid: int, later: list[Any] | None) -> Any:
    """One allowed call through the real gate, as a front that runs `later` after its answer."""
    from pgwarden.proxy.auth import principal_from_mapping
    from pgwarden.proxy.pipeline.gate import Allowed, CallContext, Outcome

    context = CallContext(principal=principal_from_mapping({"id": "ann"}), upstream="up",
                          method="tools/call", request_id=rid, after_answer=later)
    with gate.open(context, tool="query") as exchange:
        verdict = exchange.check_tool_call("query", {"sql": f"SELECT name FROM products WHERE id = {rid}"})
        assert isinstance(verdict, Allowed)
        result = {"content": [{"type": "text", "text": RECORDED_ROW}], "isError": False}
        return await exchange.finish(verdict, Outcome(result=result))


def test_a_front_that_runs_work_after_the_answer_gets_the_record_after_it(tmp_path: Path) -> None:
    """The answer waits for the journal line only; the record, with the call's outcome, is
    written once the front has answered. The log's first record still goes before its answer:
    only a log known to be writable leaves records for later."""
    audit_path = tmp_path / "audit.jsonl"
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    gate = products_gate(tmp_path, log)
    first: list[Any] = []
    later: list[Any] = []

    async def main() -> None:
        await answered_call(gate, 6, first)
        assert first == [] and [r["request_id"] for r in lines(audit_path)] == ["6"]
        answer = await answered_call(gate, 7, later)
        assert answer is None or RECORDED_ROW in json.dumps(answer)  # the data, not a deny
        # Answered: the decision is durable in the journal, the chain has no record yet.
        pending = read_journal(journal_path(audit_path))
        assert pending is not None and "7" in [i.entry["request_id"] for i in pending.intents]
        assert [r["request_id"] for r in lines(audit_path)] == ["6"]
        assert len(later) == 1
        await later[0]()

    asyncio.run(main())
    record = lines(audit_path)[-1]
    assert record["request_id"] == "7" and record["decision"] == "allow" and record["intent"]
    assert record["is_error"] is False
    log.close()
    assert journal_path(audit_path).stat().st_size == 0  # its record is durable: nothing to recover
    assert verify_files([audit_path]).ok


def test_a_front_without_such_work_gets_the_record_before_the_answer(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    gate = products_gate(tmp_path, log)
    asyncio.run(answered_call(gate, 8, None))
    asyncio.run(answered_call(gate, 9, None))
    assert [r["request_id"] for r in lines(audit_path)] == ["8", "9"]
    log.close()


def test_exported_spans_get_the_record_before_the_answer(tmp_path: Path) -> None:
    """A span exporter reads the record's number off the span, which ends with the answer."""
    audit_path = tmp_path / "audit.jsonl"
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    gate = products_gate(tmp_path, log, traces="console")
    later: list[Any] = []
    asyncio.run(answered_call(gate, 9, later))
    asyncio.run(answered_call(gate, 10, later))
    assert later == [] and [r["request_id"] for r in lines(audit_path)] == ["9", "10"]
    log.close()


def test_a_record_that_fails_after_the_answer_is_recovered_from_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The call was answered with its decision durable; its record cannot be written (a full
    disk). Nothing raises into the front, the failure is counted and logged, and the next start
    puts the decision in the chain with its outcome marked lost."""
    audit_path = tmp_path / "audit.jsonl"
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    gate = products_gate(tmp_path, log)
    real_write = os.write
    chain = audit_path.resolve()

    def write(fd: int, data: Any) -> int:
        if Path(os.readlink(f"/proc/self/fd/{fd}")) == chain:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    later: list[Any] = []

    async def main() -> tuple[Any, Any]:
        await answered_call(gate, 10, None)  # the log has written a record: later ones may follow
        answer = await answered_call(gate, 11, later)
        monkeypatch.setattr(os, "write", write)
        await later[0]()  # must not raise: the answer is already out
        # The disk is still full: the next call's record goes before its answer again, and
        # since it cannot be written, that call is denied.
        refused = await answered_call(gate, 12, later)
        monkeypatch.setattr(os, "write", real_write)
        return answer, refused

    answer, refused = asyncio.run(main())
    assert answer is None or RECORDED_ROW in json.dumps(answer)
    assert len(later) == 1 and refused["isError"] is True and RECORDED_ROW not in json.dumps(refused)
    assert log.failures == 2
    assert "could not be written" in caplog.text and "SELECT" not in caplog.text
    assert [r["request_id"] for r in lines(audit_path)] == ["10"]
    log.close()
    assert read_journal(journal_path(audit_path)) is not None  # kept: call 11 has no record

    reopened = AuditLog(audit_path, instance_id="test-1", strict=True)
    reopened.append(entry(13))
    reopened.close()
    _first, recovered, after = lines(audit_path)
    assert recovered["request_id"] == "11" and recovered["reason_code"] == OUTCOME_LOST
    assert recovered["rows"] is None and after["rows"] == 13
    assert verify_files([audit_path]).ok
