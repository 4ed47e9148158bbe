"""The audit log: chained records, rotation, fail-closed writes, concurrency, tamper detection."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
from pathlib import Path

import pytest
from audit_helpers import SECRET_EMAIL, entry, write_log

from pgwarden.proxy.audit import (
    GENESIS_HASH,
    AuditLog,
    AuditWriteError,
    chain_files,
    record_hash,
    verify_files,
)
from pgwarden.proxy.audit.verify import HASH_MISMATCH, PREV_MISMATCH, REORDERED, SEQ_GAP


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_are_chained_and_carry_what_was_decided(audit_path: Path) -> None:
    write_log(audit_path, 3)
    records = lines(audit_path)
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after["prev_hash"] == before["hash"]
    for r in records:
        assert r["hash"] == record_hash(r)
        assert r["instance_id"] == "test-1"
        assert r["policy_revision"] == "sha256:abc"
        assert r["sql"]["text"] == "SELECT id, name FROM customers WHERE email = ? AND tenant_id = ? LIMIT ?"
    assert records[0]["decision"] == "deny" and records[0]["reason_code"] == "policy.deny"
    assert SECRET_EMAIL not in audit_path.read_text()
    assert verify_files([audit_path]).ok


def test_reopening_continues_the_chain(audit_path: Path) -> None:
    write_log(audit_path, 2)
    log = AuditLog(audit_path, instance_id="test-1")
    record = log.append(entry(9))
    log.close()
    assert record is not None and record["seq"] == 3
    assert verify_files([audit_path]).chains[0].last_seq == 3


def test_reopening_another_instances_file_is_refused(audit_path: Path) -> None:
    write_log(audit_path, 1)
    with pytest.raises(AuditWriteError, match="belongs to instance"):
        AuditLog(audit_path, instance_id="someone-else").append(entry())


def test_a_second_writer_on_the_same_chain_is_refused(audit_path: Path) -> None:
    first = AuditLog(audit_path, instance_id="test-1")
    first.append(entry())
    second = AuditLog(audit_path, instance_id="test-1")
    with pytest.raises(AuditWriteError, match="another process"):
        second.append(entry())
    first.close()


def test_a_partial_last_line_stops_the_log_from_opening(audit_path: Path) -> None:
    write_log(audit_path, 2)
    with audit_path.open("ab") as f:
        f.write(b'{"v":1,"seq":3')
    with pytest.raises(AuditWriteError, match="partial record"):
        AuditLog(audit_path, instance_id="test-1").append(entry())


def test_rotation_keeps_the_chain_across_files(audit_path: Path) -> None:
    write_log(audit_path, 12, max_bytes=2500)
    files = chain_files(audit_path)
    assert len(files) >= 3
    firsts = [lines(f)[0] for f in files if f.stat().st_size]
    lasts = [lines(f)[-1] for f in files if f.stat().st_size]
    for prev_last, next_first in zip(lasts, firsts[1:], strict=False):
        assert next_first["prev_hash"] == prev_last["hash"]
        assert next_first["seq"] == prev_last["seq"] + 1
    result = verify_files(reversed(files))  # given in any order
    assert result.ok, result.problem
    assert result.chains[0].records == 12


def test_a_missing_rotated_file_is_found(audit_path: Path) -> None:
    write_log(audit_path, 12, max_bytes=2500)
    files = chain_files(audit_path)
    result = verify_files([files[0], *files[2:]])
    assert result.problem is not None and result.problem.kind == SEQ_GAP
    assert not verify_files(files[1:]).ok  # the oldest file is missing
    assert verify_files(files[1:], partial=True).ok


def _edit(path: Path, index: int, key: str, value: object, *, rehash: bool) -> None:
    records = lines(path)
    records[index][key] = value
    if rehash:
        records[index]["hash"] = record_hash(records[index])
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _delete(path: Path, index: int) -> None:
    text = path.read_text().splitlines(keepends=True)
    del text[index]
    path.write_text("".join(text))


def _swap(path: Path, a: int, b: int) -> None:
    text = path.read_text().splitlines(keepends=True)
    text[a], text[b] = text[b], text[a]
    path.write_text("".join(text))


@pytest.mark.parametrize(
    ("tamper", "line", "kind"),
    [
        (lambda p: _edit(p, 2, "decision", "deny", rehash=False), 3, HASH_MISMATCH),
        (lambda p: _edit(p, 2, "rows", 0, rehash=False), 3, HASH_MISMATCH),
        (lambda p: _edit(p, 2, "principal", "mallory", rehash=True), 4, PREV_MISMATCH),
        (lambda p: _delete(p, 2), 3, SEQ_GAP),
        (lambda p: _delete(p, 0), 1, "bad start"),
        (lambda p: _swap(p, 2, 3), 3, REORDERED),
        (lambda p: _swap(p, 0, 5), 1, "bad start"),
    ],
    ids=["edited", "edited-rows", "edited-and-rehashed", "deleted", "deleted-first", "swapped",
         "swapped-first"],
)
def test_verify_names_the_first_broken_record(audit_path: Path, tamper, line: int, kind: str) -> None:
    write_log(audit_path, 6)
    assert verify_files([audit_path]).ok
    tamper(audit_path)
    problem = verify_files([audit_path]).problem
    assert problem is not None
    assert (problem.file, problem.line, problem.kind) == (audit_path, line, kind)


def test_reordering_the_tail_is_found(audit_path: Path) -> None:
    write_log(audit_path, 6)
    _swap(audit_path, 4, 5)
    problem = verify_files([audit_path]).problem
    assert problem is not None and problem.kind == REORDERED and problem.seq == 6


# -- failing writes ------------------------------------------------------------------------------


def test_strict_append_to_a_full_disk_raises_and_leaves_state_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.symlink_to("/dev/full")  # every write fails with ENOSPC
    log = AuditLog(path, instance_id="test-1", strict=True)
    with pytest.raises(AuditWriteError, match="No space left"):
        log.append(entry())
    assert log.seq == 0 and log.last_hash == GENESIS_HASH and log.failures == 1
    with pytest.raises(AuditWriteError):  # and keeps failing closed
        log.append(entry())
    log.close()


def test_strict_append_under_a_path_that_cannot_exist_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    log = AuditLog(blocker / "audit.jsonl", instance_id="test-1", strict=True)
    with pytest.raises(AuditWriteError):
        log.append(entry())


def test_non_strict_append_failure_is_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.symlink_to("/dev/full")
    log = AuditLog(path, instance_id="test-1", strict=False)
    assert log.append(entry()) is None
    assert log.failures == 1
    log.close()


def test_strict_append_is_on_disk_when_it_returns(audit_path: Path) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)
    record = log.append(entry())
    # Read through a separate descriptor while the writer is still open.
    fd = os.open(audit_path, os.O_RDONLY)
    try:
        data = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    assert json.loads(data)["hash"] == record["hash"]  # type: ignore[index]
    log.close()


# -- concurrency ---------------------------------------------------------------------------------


def test_concurrent_appends_from_threads_get_distinct_gap_free_seqs(audit_path: Path) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=False, max_bytes=20_000)
    threads_n, per_thread = 16, 25
    barrier = threading.Barrier(threads_n)
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            rec = log.append(entry(t * 1000 + i))
            assert rec is not None
            with lock:
                seqs.append(rec["seq"])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    total = threads_n * per_thread
    assert sorted(seqs) == list(range(1, total + 1))
    result = verify_files(chain_files(audit_path))
    assert result.ok, result.problem
    assert result.chains[0].records == total
    rows = sorted(r["rows"] for f in chain_files(audit_path) for r in lines(f))
    assert rows == sorted(t * 1000 + i for t in range(threads_n) for i in range(per_thread))


def test_concurrent_appends_from_tasks_get_distinct_gap_free_seqs(audit_path: Path) -> None:
    log = AuditLog(audit_path, instance_id="test-1", strict=True)

    async def main() -> list[int]:
        records = await asyncio.gather(*(log.append_async(entry(i)) for i in range(60)))
        return [r["seq"] for r in records if r is not None]

    seqs = asyncio.run(main())
    log.close()
    assert sorted(seqs) == list(range(1, 61))
    assert sorted(r["rows"] for r in lines(audit_path)) == list(range(60))
    assert verify_files([audit_path]).ok
