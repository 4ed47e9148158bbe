"""The hash-chained JSON Lines audit log: writing, verifying, showing and reporting."""

from pgwarden.proxy.audit.log import AuditLog, AuditSink, AuditWriteError, chain_files
from pgwarden.proxy.audit.record import GENESIS_HASH, AuditEntry, canonical_json, record_hash
from pgwarden.proxy.audit.redact import RedactedSQL, redact_sql
from pgwarden.proxy.audit.verify import Problem, VerifyResult, verify_files

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditSink",
    "AuditWriteError",
    "Problem",
    "RedactedSQL",
    "VerifyResult",
    "canonical_json",
    "chain_files",
    "record_hash",
    "redact_sql",
    "verify_files",
]
