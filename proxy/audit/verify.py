"""Check hash chains of audit files and name the first broken record.

Files may be given in any order: they are grouped by instance id and put in chain order by
the sequence number of their first record, so a shell glob of rotated files just works.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgwarden.proxy.audit.record import CHAIN_FIELDS, GENESIS_HASH, record_hash

HASH_MISMATCH = "hash mismatch"  # the record was changed after it was written
PREV_MISMATCH = "prev mismatch"  # the record before it was changed, removed or replaced
SEQ_GAP = "seq gap"  # records are missing
REORDERED = "reordered"  # records are out of order (or repeated)
MALFORMED = "malformed"  # not a JSON object with the chain fields
INSTANCE_MISMATCH = "instance mismatch"  # a record of another instance inside this chain
BAD_START = "bad start"  # the chain does not begin at seq 1 (earlier files missing?)


@dataclass(frozen=True, slots=True)
class LoadedRecord:
    file: Path
    line: int
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Problem:
    """The first broken record: where it is and what is wrong with it."""

    file: Path
    line: int
    seq: int | None
    kind: str
    detail: str

    def __str__(self) -> str:
        seq = "?" if self.seq is None else str(self.seq)
        return f"{self.file}:{self.line}: seq {seq}: {self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class ChainSummary:
    instance_id: str
    first_seq: int
    last_seq: int
    last_hash: str
    records: int
    files: tuple[Path, ...]


@dataclass(slots=True)
class VerifyResult:
    problem: Problem | None = None
    chains: list[ChainSummary] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Broken(Exception):
    """Internal signal carrying the first problem found."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def read_file(path: Path) -> Iterator[LoadedRecord]:
    """Records of one file in file order; a line that is not a chained record raises `_Broken`."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                raise _Broken(Problem(path, number, None, MALFORMED, "line is not JSON")) from None
            if not isinstance(record, dict) or any(k not in record for k in CHAIN_FIELDS) or not isinstance(
                record.get("seq"), int
            ):
                raise _Broken(Problem(path, number, None, MALFORMED, "not an audit record"))
            yield LoadedRecord(path, number, record)


def load(paths: Iterable[Path]) -> dict[str, list[list[LoadedRecord]]]:
    """instance id -> its files' records, files in chain order."""
    by_instance: dict[str, list[list[LoadedRecord]]] = {}
    for path in paths:
        records = list(read_file(path))
        if not records:
            continue
        instance = str(records[0].record["instance_id"])
        by_instance.setdefault(instance, []).append(records)
    for files in by_instance.values():
        files.sort(key=lambda recs: int(recs[0].record["seq"]))
    return by_instance


def _check_chain(instance: str, files: Sequence[list[LoadedRecord]], partial: bool) -> ChainSummary:
    chain = [r for recs in files for r in recs]
    first = chain[0]
    if not partial and (first.record["seq"] != 1 or first.record["prev_hash"] != GENESIS_HASH):
        raise _Broken(Problem(first.file, first.line, first.record["seq"], BAD_START,
                              "chain does not start at seq 1 (earlier files missing? see --partial)"))
    expected_seq = int(first.record["seq"])
    prev_hash = str(first.record["prev_hash"])
    seqs_ahead = {int(r.record["seq"]) for r in chain}
    for item in chain:
        rec = item.record
        seq = int(rec["seq"])
        if rec["instance_id"] != instance:
            raise _Broken(Problem(item.file, item.line, seq, INSTANCE_MISMATCH,
                                  f"record of instance {rec['instance_id']!r} in chain of {instance!r}"))
        if rec["hash"] != record_hash(rec):
            raise _Broken(Problem(item.file, item.line, seq, HASH_MISMATCH,
                                  "the record was changed after it was written"))
        if seq < expected_seq:
            raise _Broken(Problem(item.file, item.line, seq, REORDERED,
                                  f"seq {seq} comes after seq {expected_seq - 1}"))
        if seq > expected_seq:
            if expected_seq in seqs_ahead:
                raise _Broken(Problem(item.file, item.line, seq, REORDERED,
                                      f"expected seq {expected_seq} here; it appears later"))
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            raise _Broken(Problem(item.file, item.line, seq, SEQ_GAP, f"record(s) {missing} missing"))
        if rec["prev_hash"] != prev_hash:
            raise _Broken(Problem(item.file, item.line, seq, PREV_MISMATCH,
                                  "prev_hash does not match the record before it (changed or replaced)"))
        prev_hash = str(rec["hash"])
        expected_seq = seq + 1
    return ChainSummary(instance, int(first.record["seq"]), expected_seq - 1, prev_hash, len(chain),
                        tuple(recs[0].file for recs in files))


def verify_files(paths: Iterable[str | Path], *, partial: bool = False) -> VerifyResult:
    """Verify every chain found in `paths`; stop at the first broken record.

    `partial` accepts a chain that starts later than seq 1 (older files deleted by retention).
    """
    result = VerifyResult()
    try:
        for instance, files in sorted(load(Path(p) for p in paths).items()):
            result.chains.append(_check_chain(instance, files, partial))
    except _Broken as broken:
        result.problem = broken.problem
    return result


def iter_records(paths: Iterable[str | Path]) -> Iterator[LoadedRecord]:
    """All well-formed records of `paths`, skipping unreadable lines (for display, not for trust)."""
    for path in paths:
        p = Path(path)
        with p.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("seq"), int):
                    yield LoadedRecord(p, number, record)
