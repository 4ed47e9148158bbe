"""Select audit records for display: by principal, decision, rule, table and time."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pgwarden.proxy.audit.verify import LoadedRecord

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 date/time (UTC if no zone) or a duration back from now: `30m`, `12h`, `7d`."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(value.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def record_time(record: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None


def _table_matches(wanted: str, relations: Iterable[str]) -> bool:
    wanted = wanted.lower()
    for relation in relations:
        rel = str(relation).lower()
        if rel == wanted or rel.rsplit(".", 1)[-1] == wanted:
            return True
    return False


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """All given criteria must hold; each one unset matches everything."""

    principal: str | None = None
    decision: str | None = None
    rule: str | None = None
    table: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, record: dict[str, Any]) -> bool:
        if self.principal is not None and record.get("principal") != self.principal:
            return False
        if self.decision is not None and record.get("decision") != self.decision:
            return False
        if self.rule is not None and self.rule not in (record.get("rules") or []):
            return False
        if self.table is not None and not _table_matches(self.table, record.get("relations") or []):
            return False
        if self.since is not None or self.until is not None:
            ts = record_time(record)
            if ts is None:
                return False
            if self.since is not None and ts < self.since:
                return False
            if self.until is not None and ts > self.until:
                return False
        return True

    def apply(self, records: Iterable[LoadedRecord]) -> Iterator[LoadedRecord]:
        return (r for r in records if self.matches(r.record))


def printable(value: object) -> str:
    """Text safe for a terminal: control characters (escape sequences!) become U+FFFD."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


def sql_text(sql: object) -> str:
    """The stored form of a redacted statement, for display."""
    if not isinstance(sql, dict):
        return ""
    if sql.get("text") is not None:
        return str(sql["text"])
    digest = str(sql.get("sha256") or "")[:16]
    return f"<unparsed: {sql.get('length', '?')} chars, sha256 {digest}…>"
