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


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """The one encoding that is hashed and written: sorted keys, compact, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the record's canonical encoding without its `hash` key."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()
