"""Group commit of the audit log: shared syncs, chain order under concurrency, durability,
failed batches, rotation inside a batch, draining on close; and the record encoding it uses."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import entry, products_gate
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwarden.proxy.audit import AuditLog, AuditWriteError, chain_files, verify_files
from pgwarden.proxy.audit import log as audit_log_module
from pgwarden.proxy.audit import record as record_module
from pgwarden.proxy.audit.log import _now
from pgwarden.proxy.audit.record import canonical_json, record_hash, seal

REAL_SYNC = audit_log_module._SYNC


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def all_records(path: Path) -> list[dict[str, Any]]:
    return [r for f in chain_files(path) for r in lines(f)]


class SyncProbe:
    """Wraps the real sync: counts calls, can hold them until released, can fail chosen ones.

    `synced_size` is the file size the last completed sync made durable.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.synced_size = 0
        self.entered = threading.Event()
        self.go = threading.Event()
        self.go.set()
        self.fail_calls: set[int] = set()
        self.interrupt_calls: set[int] = set()
        self.threads: list[int] = []
        self.delay = 0.0  # seconds each sync takes on top of the real one (a slower disk)

    def __call__(self, fd: int) -> None:
        self.calls += 1
        number = self.calls
        self.threads.append(threading.get_ident())
        self.entered.set()
        assert self.go.wait(30), "test never released the sync"
        if number in self.fail_calls:
            raise OSError(errno.EIO, "Input/output error")
        if number in self.interrupt_calls:
            raise KeyboardInterrupt  # what SIGTERM raises in the proxy's main thread
        if self.delay:
            time.sleep(self.delay)
        REAL_SYNC(fd)
        self.synced_size = os.fstat(fd).st_size


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncProbe]:
    p = SyncProbe()
    monkeypatch.setattr(audit_log_module, "_SYNC", p)
    yield p
    p.go.set()


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()


# -- the encoding ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12).filter(lambda k: k != "hash"), json_values, max_size=12))
def test_seal_is_the_canonical_encoding_and_hash(body: dict[str, Any]) -> None:
    digest, line = seal(body)
    assert digest == record_hash(body)
    assert line == canonical_json({**body, "hash": digest}) + b"\n"
    assert json.loads(line) == {**body, "hash": digest}


def test_seal_encodes_every_character_like_canonical_json() -> None:
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    body = {"text": every, "keys": {every[:5000]: [every[-100:], 2**64 - 1, -(2**63)]}, "seq": 1}
    assert record_module._plain(body)  # the fast path is the one under test
    digest, line = seal(body)
    assert digest == record_hash(body)
    assert line == canonical_json({**body, "hash": digest}) + b"\n"


def test_a_typical_record_takes_the_fast_path(audit_path: Path) -> None:
    with AuditLog(audit_path, instance_id="test-1") as log:
        record = log.append(entry(3))
    assert record is not None and record_module._plain(record)


def test_a_log_written_record_by_record_is_continued_and_verifies(audit_path: Path) -> None:
    """Records encoded the way earlier versions did (hash of the canonical body, then the
    canonical record) and records of group commits form one chain."""
    audit_path.parent.mkdir(parents=True)
    previous = "0" * 64
    with audit_path.open("wb") as f:
        for seq in (1, 2):
            record = {"v": 1, "instance_id": "test-1", "seq": seq, "ts": "2024-01-01T00:00:00.000000Z",
                      **entry(seq).to_json(), "prev_hash": previous}
            record["hash"] = record_hash(record)
            f.write(canonical_json(record) + b"\n")
            previous = record["hash"]
    with AuditLog(audit_path, instance_id="test-1") as log:
        appended = log.append(entry(3))
    assert appended is not None and appended["seq"] == 3 and appended["prev_hash"] == previous
    result = verify_files([audit_path])
    assert result.ok and result.chains[0].records == 3


def test_seal_refuses_a_body_that_already_has_a_hash() -> None:
    with pytest.raises(ValueError):
        seal({"hash": "x", "seq": 1})


def test_timestamps_keep_their_format_and_follow_the_clock() -> None:
    before = datetime.now(UTC)
    stamp = _now()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before.replace(microsecond=0) <= parsed <= after


# -- sharing syncs, keeping order ------------------------------------------------------------------


def test_a_lone_synchronous_append_commits_on_its_own_thread(audit_path: Path, probe: SyncProbe) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    before = threading.active_count()
    for i in range(5):
        record = log.append(entry(i))
        assert record is not None and record["seq"] == i + 1
        assert probe.synced_size == audit_path.stat().st_size  # synced before it returned
    assert probe.calls == 5
    assert threading.active_count() == before  # no writer thread for lone calls
    log.close()


def test_concurrent_tasks_share_syncs_and_keep_one_valid_chain(audit_path: Path, probe: SyncProbe) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    tasks, per_task = 32, 8
    probe.delay = 0.002  # a disk's sync: records arriving meanwhile must wait for the next batch

    async def main() -> list[int]:
        async def worker(t: int) -> list[int]:
            seqs = []
            for i in range(per_task):
                record = await log.append_async(entry(t * 100 + i))
                assert record is not None
                seqs.append(record["seq"])
            return seqs

        return [s for seqs in await asyncio.gather(*(worker(t) for t in range(tasks))) for s in seqs]

    seqs = asyncio.run(main())
    log.close()
    total = tasks * per_task
    assert sorted(seqs) == list(range(1, total + 1))
    records = lines(audit_path)
    assert [r["seq"] for r in records] == list(range(1, total + 1))  # file order is chain order
    expected_rows = sorted(t * 100 + i for t in range(tasks) for i in range(per_task))
    assert sorted(r["rows"] for r in records) == expected_rows
    assert verify_files([audit_path]).ok
    assert probe.calls <= total // 2, f"{probe.calls} syncs for {total} records: no batching"


def test_threads_and_tasks_together_with_rotation_keep_one_valid_chain(
    audit_path: Path, probe: SyncProbe
) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True, max_bytes=6_000)
    threads_n, tasks_n, per = 8, 16, 10
    returned: list[dict[str, Any]] = []
    guard = threading.Lock()

    def thread_worker(t: int) -> None:
        for i in range(per):
            record = log.append(entry(10_000 + t * 100 + i))
            assert record is not None
            with guard:
                returned.append(record)

    async def tasks_main() -> None:
        async def worker(t: int) -> None:
            for i in range(per):
                record = await log.append_async(entry(20_000 + t * 100 + i))
                assert record is not None
                with guard:
                    returned.append(record)

        await asyncio.gather(*(worker(t) for t in range(tasks_n)))

    loop_thread = threading.Thread(target=lambda: asyncio.run(tasks_main()))
    loop_thread.start()
    run_threads(threads_n, thread_worker)
    loop_thread.join(60)
    log.close()
    total = (threads_n + tasks_n) * per
    files = chain_files(audit_path)
    assert len(files) > 3  # rotated many times, also inside batches
    for f in files:
        assert f.stat().st_size <= 6_000
    records = all_records(audit_path)
    assert [r["seq"] for r in records] == list(range(1, total + 1))
    assert sorted(r["seq"] for r in returned) == list(range(1, total + 1))
    on_disk = {r["seq"]: r for r in records}
    for r in returned:  # what each caller got back is exactly what is in the file
        assert on_disk[r["seq"]] == r
    result = verify_files(files)
    assert result.ok, result.problem
    assert result.chains[0].records == total


def test_rotation_inside_one_batch(audit_path: Path, probe: SyncProbe) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True, max_bytes=2_500)
    log.append(entry(0))  # opened; the next ones arrive while a sync is held, as one batch
    probe.go.clear()
    probe.entered.clear()
    holder = threading.Thread(target=log.append, args=(entry(1),))
    holder.start()
    assert probe.entered.wait(10)

    async def batch() -> list[dict[str, Any] | None]:
        return list(await asyncio.gather(*(log.append_async(entry(i)) for i in range(2, 12))))

    results: list[list[dict[str, Any] | None]] = []
    runner = threading.Thread(target=lambda: results.append(asyncio.run(batch())))
    runner.start()
    time.sleep(0.2)
    calls_before = probe.calls
    probe.go.set()
    holder.join(30)
    runner.join(30)
    log.close()
    assert [r["seq"] for r in results[0] if r is not None] == list(range(3, 13))
    files = chain_files(audit_path)
    assert len(files) >= 4
    assert probe.calls - calls_before <= len(files)  # the batch: one sync per file it touched
    result = verify_files(files)
    assert result.ok, result.problem
    assert result.chains[0].last_seq == 12


# -- durability ------------------------------------------------------------------------------------


def test_no_waiter_is_released_before_the_sync_that_covers_its_record(
    audit_path: Path, probe: SyncProbe
) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    log.append(entry(0))
    probe.go.clear()
    probe.entered.clear()
    done: list[tuple[dict[str, Any], int]] = []
    guard = threading.Lock()

    def worker(i: int) -> None:
        record = log.append(entry(i))
        assert record is not None
        covered = probe.synced_size  # what was durable when this caller got its answer
        with guard:
            done.append((record, covered))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    assert probe.entered.wait(10)
    time.sleep(0.3)
    assert done == []  # the sync is held: nobody may have an answer yet
    probe.go.set()
    for t in threads:
        t.join(30)
    log.close()
    data = audit_path.read_bytes()
    assert len(done) == 8
    for record, covered in done:
        end = data.index(canonical_json(record)) + len(canonical_json(record)) + 1
        assert end <= covered, "released before its record was synced"


def test_async_waiters_are_released_only_after_their_sync(audit_path: Path, probe: SyncProbe) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    probe.go.clear()

    async def main() -> None:
        pending = [asyncio.ensure_future(log.append_async(entry(i))) for i in range(6)]
        await asyncio.sleep(0.3)
        assert not any(p.done() for p in pending)
        probe.go.set()
        records = await asyncio.gather(*pending)
        size = probe.synced_size
        data = await asyncio.to_thread(audit_path.read_bytes)
        for record in records:
            assert record is not None
            assert data.index(canonical_json(record)) < size

    asyncio.run(main())
    log.close()


def test_a_failed_sync_fails_its_whole_batch_and_leaves_the_chain_as_it_was(
    audit_path: Path, probe: SyncProbe
) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    first = log.append(entry(0))
    assert first is not None
    probe.go.clear()
    probe.entered.clear()
    probe.fail_calls = {probe.calls + 2}  # the sync after the held one: the waiting batch's
    held = threading.Thread(target=log.append, args=(entry(1),))
    held.start()
    assert probe.entered.wait(10)
    errors: list[BaseException] = []
    guard = threading.Lock()

    def worker(i: int) -> None:
        try:
            log.append(entry(i))
        except AuditWriteError as exc:
            with guard:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2, 7)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # all five queue behind the held commit: they become one batch
    probe.go.set()
    held.join(30)
    for t in threads:
        t.join(30)
    assert len(errors) == 5 and all("Input/output error" in str(e) for e in errors)
    assert log.failures == 5
    records = lines(audit_path)
    assert [r["rows"] for r in records] == [0, 1]  # the failed batch was cut off the file
    assert log.seq == 2 and log.last_hash == records[-1]["hash"]
    after = log.append(entry(99))  # and the chain goes on from what the file holds
    assert after is not None and after["seq"] == 3 and after["prev_hash"] == records[-1]["hash"]
    log.close()
    assert verify_files([audit_path]).ok


def test_a_failed_write_withholds_every_exchange_result_of_the_batch(
    tmp_path: Path, probe: SyncProbe
) -> None:
    from pgwarden.proxy.auth import principal_from_mapping
    from pgwarden.proxy.pipeline.gate import Allowed, CallContext, Outcome
    from pgwarden.proxy.pipeline.guarded import AUDIT_FAILED_TEXT

    log = AuditLog(tmp_path / "audit.jsonl", instance_id="test-1", strict=True)
    gate = products_gate(tmp_path, log)
    principal = principal_from_mapping({"id": "ann"})
    secret_row = "row-value-that-must-not-come-back"
    result = {"content": [{"type": "text", "text": secret_row}], "isError": False}

    async def call(i: int) -> Any:
        context = CallContext(principal=principal, upstream="up", method="tools/call", request_id=i)
        with gate.open(context, tool="query") as exchange:
            verdict = exchange.check_tool_call("query", {"sql": f"SELECT name FROM products WHERE id = {i}"})
            assert isinstance(verdict, Allowed)
            return await exchange.finish(verdict, Outcome(result=result))

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(call(i) for i in range(6))))

    probe.fail_calls = set(range(1, 100))  # every sync fails while this batch is written
    answers = asyncio.run(main())
    for answer in answers:
        assert answer["isError"] is True
        assert AUDIT_FAILED_TEXT in json.dumps(answer)
        assert secret_row not in json.dumps(answer)
    assert log.failures == 6
    assert (tmp_path / "audit.jsonl").read_text() == ""
    probe.fail_calls = set()
    answers = asyncio.run(main())
    assert all(secret_row in json.dumps(a) for a in answers)  # the sink is back: results flow again
    log.close()
    assert [r["seq"] for r in lines(tmp_path / "audit.jsonl")] == list(range(1, 7))


def test_a_strict_log_that_cannot_write_fails_async_waiters(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.symlink_to("/dev/full")
    log = AuditLog(path, instance_id="test-1", strict=True)

    async def main() -> list[BaseException | dict[str, Any] | None]:
        appends = (log.append_async(entry(i)) for i in range(4))
        return list(await asyncio.gather(*appends, return_exceptions=True))

    outcomes = asyncio.run(main())
    assert all(isinstance(o, AuditWriteError) and "No space left" in str(o) for o in outcomes)
    assert log.failures == 4 and log.seq == 0
    log.close()


# -- shutdown ----------------------------------------------------------------------------------------


def test_close_writes_every_record_still_waiting(audit_path: Path, probe: SyncProbe) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    probe.go.clear()
    probe.entered.clear()

    async def main() -> list[dict[str, Any] | None]:
        pending = [asyncio.ensure_future(log.append_async(entry(i))) for i in range(10)]
        await asyncio.sleep(0)
        assert await asyncio.to_thread(probe.entered.wait, 10)
        closer = threading.Thread(target=log.close)  # shutdown while a batch is in flight
        closer.start()
        await asyncio.sleep(0.1)
        probe.go.set()
        records = await asyncio.gather(*pending)
        await asyncio.to_thread(closer.join, 30)
        return list(records)

    records = asyncio.run(main())
    assert sorted(r["seq"] for r in records if r is not None) == list(range(1, 11))
    assert [r["seq"] for r in lines(audit_path)] == list(range(1, 11))
    assert verify_files([audit_path]).ok
    reopened = AuditLog(audit_path, instance_id="test-1")  # the instance lock was released
    assert reopened.append(entry(11))["seq"] == 11  # type: ignore[index]
    reopened.close()


def test_a_cancelled_task_still_leaves_its_record(audit_path: Path, probe: SyncProbe) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    probe.go.clear()

    async def main() -> None:
        task = asyncio.ensure_future(log.append_async(entry(7)))
        await asyncio.sleep(0.05)
        task.cancel()
        probe.go.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    log.close()
    assert [r["rows"] for r in lines(audit_path)] == [7]


def test_flush_returns_once_everything_queued_is_written(audit_path: Path, probe: SyncProbe) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    probe.go.clear()

    async def main() -> None:
        pending = [asyncio.ensure_future(log.append_async(entry(i))) for i in range(5)]
        await asyncio.sleep(0)
        flusher = asyncio.ensure_future(asyncio.to_thread(log.flush))
        await asyncio.sleep(0.1)
        assert not flusher.done()
        probe.go.set()
        await flusher
        assert len(lines(audit_path)) == 5
        await asyncio.gather(*pending)

    asyncio.run(main())
    log.close()


def test_non_strict_async_append_writes_without_a_sync(audit_path: Path, probe: SyncProbe) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=False)

    async def main() -> list[dict[str, Any] | None]:
        return list(await asyncio.gather(*(log.append_async(entry(i)) for i in range(5))))

    records = asyncio.run(main())
    assert [r["seq"] for r in records if r is not None] == [1, 2, 3, 4, 5]
    assert probe.calls == 0
    log.close()
    assert verify_files([audit_path]).ok


# -- a lone request on a fast disk commits on the event loop -----------------------------------------


@pytest.mark.parametrize(("alone", "budget", "on_loop"), [(True, 10.0, True), (False, 10.0, False),
                                                          (True, 0.0, False)])
def test_a_lone_request_on_a_fast_disk_commits_on_the_loop(
    audit_path: Path, probe: SyncProbe, monkeypatch: pytest.MonkeyPatch, alone: bool, budget: float,
    on_loop: bool
) -> None:
    monkeypatch.setattr(audit_log_module, "INLINE_SYNC_BUDGET_S", budget)
    log = AuditLog(audit_path, instance_id="test-1", strict=True)

    async def main() -> tuple[int, int]:
        await log.append_async(entry(0))  # measures the first sync
        log.flush()  # the writer thread has handed the committer role back
        record = await log.append_async(entry(1), alone=alone)
        assert record is not None and record["seq"] == 2
        return threading.get_ident(), probe.synced_size

    loop_thread, synced = asyncio.run(main())
    assert synced == audit_path.stat().st_size  # durable when it returned
    log.close()
    assert (probe.threads[1] == loop_thread) is on_loop
    assert verify_files([audit_path]).ok


def test_an_interrupted_commit_on_the_loop_leaves_its_record_to_the_writer(
    audit_path: Path, probe: SyncProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_log_module, "INLINE_SYNC_BUDGET_S", 10.0)
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    probe.interrupt_calls = {2}

    async def main() -> None:
        await log.append_async(entry(0))
        log.flush()  # the writer thread has handed the committer role back
        await log.append_async(entry(1), alone=True)  # SIGTERM arrives during its sync

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    log.close()  # what the proxy does on its way out
    records = lines(audit_path)
    assert [r["rows"] for r in records] == [0, 1]  # written once, after the interruption
    assert verify_files([audit_path]).ok


def test_the_request_span_commits_on_the_loop_only_when_it_is_the_only_request(
    audit_path: Path, probe: SyncProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgwarden.proxy.telemetry import Telemetry, TelemetryConfig

    monkeypatch.setattr(audit_log_module, "INLINE_SYNC_BUDGET_S", 10.0)
    telemetry = Telemetry.from_config(TelemetryConfig())
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    log.append(entry(0))  # measures the first sync

    async def one(hold: asyncio.Event | None = None) -> None:
        with telemetry.request_span(method="tools/call", tool="query") as req:
            req.record_decision(decision="allow")
            if hold is not None:
                await hold.wait()
            await req.audit_async(log)

    async def main() -> int:
        await one()  # alone
        hold = asyncio.Event()
        other = asyncio.ensure_future(one(hold))  # a second request is open meanwhile
        await asyncio.sleep(0)
        assert telemetry.open_requests == 1
        await one()
        hold.set()
        await other
        assert telemetry.open_requests == 0
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    log.close()
    assert probe.threads[1] == loop_thread  # the lone request
    assert probe.threads[2] != loop_thread  # with another request open: the writer thread
    assert [r["seq"] for r in lines(audit_path)] == [1, 2, 3, 4]


def test_commits_on_the_loop_leave_the_writer_thread_asleep(
    audit_path: Path, probe: SyncProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_log_module, "INLINE_SYNC_BUDGET_S", 10.0)
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    woken: list[str] = []

    class CountingCondition(threading.Condition):
        def wait(self, timeout: float | None = None) -> bool:
            answer = super().wait(timeout)
            woken.append(threading.current_thread().name)
            return answer

    log._work = CountingCondition(log._work._lock)  # type: ignore[attr-defined]

    async def main() -> int:
        await log.append_async(entry(0))  # not alone: starts the writer thread, which commits it
        log.flush()  # ... and hands the committer role back
        for n in range(1, 21):
            await log.append_async(entry(n), alone=True)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert probe.threads[1:] == [loop_thread] * 20  # every lone record committed on the loop
    assert woken == []  # ... and none of them woke the writer thread
    log.close()  # still stops the sleeping writer
    assert woken == ["pgwarden-audit-writer"]
    assert [r["seq"] for r in lines(audit_path)] == list(range(1, 22))
    assert verify_files([audit_path]).ok
