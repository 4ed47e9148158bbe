"""The audit record: what one decision looked like, and how records are chained.

An `AuditEntry` is what the proxy knows about one request; `AuditLog.append` turns it into a
record by adding the chain fields (`v`, `instance_id`, `seq`, `ts`, `prev_hash`, `hash`).

The hash of a record is SHA-256 over its canonical JSON encoding (keys sorted, no spaces, UTF-8,
no floats anywhere) without the `hash` key. Each record carries the previous record's hash, so
changing, removing or reordering a record breaks the chain at that point.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from pgwarden.proxy.audit.redact import RedactedSQL

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
CHAIN_FIELDS = ("v", "instance_id", "seq", "ts", "prev_hash", "hash")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One decision, as the proxy saw it. Holds no row values and no SQL literals.

    `sql` is the statement as received, `sql_sent` the rewritten statement sent upstream (both
    redacted); `decision` is "allow" or "deny"; `rows` and `truncated` describe what came back.
    """

    method: str
    decision: str
    principal: str | None = None
    tool: str | None = None
    request_id: str | None = None
    session_id: str | None = None
    rules: tuple[str, ...] = ()
    reason_code: str | None = None
    reason: str | None = None
    fingerprint: str | None = None
    sql: RedactedSQL | None = None
    sql_sent: RedactedSQL | None = None
    relations: tuple[str, ...] = ()
    masked_columns: tuple[str, ...] = ()
    row_filters: tuple[str, ...] = ()
    row_cap: int | None = None
    rows: int | None = None
    truncated: bool | None = None
    is_error: bool = False
    duration_us: int | None = None
    trace_id: str | None = None
    span_id: str | None = None
    policy_revision: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry's part of a record (everything except the chain fields)."""
        return {
            "principal": self.principal,
            "method": self.method,
            "tool": self.tool,
            "request_id": self.request_id,
            "session_id": self.session_id,
            "decision": self.decision,
            "rules": list(self.rules),
            "reason_code": self.reason_code,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
            "sql": None if self.sql is None else self.sql.to_json(),
            "sql_sent": None if self.sql_sent is None else self.sql_sent.to_json(),
            "relations": list(self.relations),
            "masked_columns": list(self.masked_columns),
            "row_filters": list(self.row_filters),
            "row_cap": self.row_cap,
            "rows": self.rows,
            "truncated": self.truncated,
            "is_error": self.is_error,
            "duration_us": self.duration_us,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "policy_revision": self.policy_revision,
        }


# One encoder for every record: building a `JSONEncoder` per call (what `json.dumps` with options
# does) costs more than the encoding of a small record. Records are never circular, so the
# circularity check is skipped (a cycle would still fail, with RecursionError).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                            check_circular=False)
_HASH_ENTRY = '"hash":"'


_LEAVES = frozenset({str, bool, type(None)})


def _plain(value: Any) -> bool:
    """True when `value` holds only str, int (64-bit), bool, None, lists/tuples and str-keyed
    dicts of them, exact types: the values orjson encodes byte for byte like `canonical_json`
    (a property test holds it to that). Floats, subclasses and anything else take the `json`
    path. Loops, not generators: this runs for every record."""
    kind = type(value)
    if kind in _LEAVES:
        return True
    if kind is int:
        return bool(-(2**63) <= value < 2**64)
    if kind is list or kind is tuple:
        for item in value:  # noqa: SIM110 (a loop: all() over a generator is slower here)
            if type(item) not in _LEAVES and not _plain(item):
                return False
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _LEAVES and not _plain(item)):
                return False
        return True
    return False


def _encode_half(part: dict[str, Any], plain: bool) -> bytes:
    """The canonical encoding of `part` without its braces."""
    if not part:
        return b""
    if plain:
        return orjson.dumps(part, option=orjson.OPT_SORT_KEYS)[1:-1]
    return _ENCODER.encode(part)[1:-1].encode("utf-8")


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """The one encoding that is hashed and written: sorted keys, compact, UTF-8."""
    return _ENCODER.encode(record).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the record's canonical encoding without its `hash` key."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def seal(body: Mapping[str, Any]) -> tuple[str, bytes]:
    """The hash of `body` (a record without `hash`) and the line to write: its canonical JSON
    with the hash, plus a newline. Encodes the record once.

    Equal to `record_hash(body)` and `canonical_json({**body, "hash": h}) + b"\n"`: with sorted
    keys, the canonical encoding is the keys before `hash`, then `hash`, then the keys after it,
    so the two halves are encoded once and joined with and without the hash between them.
    Records of plain JSON values (all of them, in practice) are encoded with orjson.
    """
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for key, value in body.items():
        if key < "hash":
            before[key] = value
        elif key > "hash":
            after[key] = value
        else:
            raise ValueError("a record body has no `hash` key")
    plain = _plain(before) and _plain(after)
    head, tail = _encode_half(before, plain), _encode_half(after, plain)
    joined = b"{" + head + (b"," if head and tail else b"") + tail + b"}"
    digest = hashlib.sha256(joined).hexdigest()
    middle = f'{_HASH_ENTRY}{digest}"'.encode("ascii")
    line = b"{" + b",".join(part for part in (head, middle, tail) if part) + b"}\n"
    return digest, line
