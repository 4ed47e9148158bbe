"""Redact SQL for audit records and spans: every constant becomes a placeholder.

The agent writes the SQL, so its constants can hold anything: e-mail addresses, names, tokens.
Audit records and spans keep the *shape* of a statement, never its values:

>>> redact_sql("SELECT name FROM customers WHERE email = 'ada@example.com' LIMIT 5").text
'SELECT name FROM customers WHERE email = ? LIMIT ?'

Constants are found by Postgres's own scanner (`pgwarden.proxy.guard.tokens`), the authority on
where `'…'`, `E'…'`, `$tag$…$tag$`, `B'…'` and numbers start and end, so what is replaced does
not depend on how any SQL library models a function's arguments. Comments are dropped. Text
that Postgres's grammar does not accept (or that is longer than `MAX_PARSE_CHARS`) is not
stored at all, only its length and SHA-256, so a reviewer can still match a known statement.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from pglast import parser as pgparser

from pgwarden.proxy.guard.tokens import Constant, Scanned, scan_sql

PLACEHOLDER = "?"
MAX_PARSE_CHARS = 64 * 1024  # longer text is not scanned here (cost); it is stored as length + hash

# Date/time field names: constants by syntax, never data; kept so `date_trunc('day', …)` stays readable.
_TIME_UNITS = frozenset(
    f"{unit}{plural}"
    for unit in ("microsecond", "millisecond", "second", "minute", "hour", "day", "week", "month",
                 "quarter", "year", "decade", "century", "millennium")
    for plural in ("", "s")
) | {"millennia", "centuries", "epoch", "dow", "doy", "isodow", "isoyear", "julian", "timezone",
     "timezone_hour", "timezone_minute", "ms", "us"}
_SHORT_NUMBER = 3  # numbers this short also appear as LIMITs, offsets and names; longer ones are checked


@dataclass(frozen=True, slots=True)
class RedactedSQL:
    """A statement as it may be stored: `text` with literals replaced, or only `length` and `sha256`.

    `text` is None when the statement could not be redacted safely; `sha256` is set only then
    (a hash of a parseable statement's raw text would let anyone confirm a guessed literal).
    `fingerprint` identifies the statement's shape (same text modulo literals → same value).
    """

    text: str | None
    length: int
    sha256: str | None = None

    @property
    def fingerprint(self) -> str | None:
        """Case-insensitive (keywords and unquoted names fold): the same shape, the same value."""
        if self.text is None:
            return None
        return hashlib.sha256(self.text.casefold().encode("utf-8")).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "length": self.length}
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        return out


def _inner(constant: Constant) -> str:
    """A constant's value as written, without its quoting (`'a''b'` -> `a''b`, `$t$x$t$` -> `x`)."""
    text = constant.text
    if text.startswith("$"):
        tag = text[: text.index("$", 1) + 1]
        return text[len(tag):-len(tag)]
    if "'" in text:
        return text[text.index("'") + 1:-1]
    return text


def _placeholder(constant: Constant) -> str:
    if constant.kind == "string" and _inner(constant).casefold() in _TIME_UNITS:
        return constant.text
    return PLACEHOLDER


def _leaks_a_constant(scanned: Scanned, text: str) -> bool:
    """True when a constant of the statement shows up in `text` as a whole word (any case): the
    second, positive check that nothing but a placeholder took a constant's place."""
    folded = text.casefold()
    for constant in scanned.constants:
        value = _inner(constant).strip().casefold()
        if not value or value in _TIME_UNITS:
            continue
        if constant.kind in ("integer", "bigint", "decimal") and len(value) <= _SHORT_NUMBER:
            continue
        if value in folded and re.search(rf"(?<!\w){re.escape(value)}(?!\w)", folded):
            return True
    return False


def _unredactable(sql: str) -> RedactedSQL:
    return RedactedSQL(text=None, length=len(sql), sha256=hashlib.sha256(sql.encode("utf-8")).hexdigest())


def redact_scanned(scanned: Scanned) -> RedactedSQL:
    """The redaction of a statement already scanned, and known to parse (the guard accepted it,
    or generated it). Never raises."""
    sql = scanned.sql
    if len(sql) > MAX_PARSE_CHARS:
        return _unredactable(sql)
    text = scanned.rebuilt(_placeholder)
    if not text or _leaks_a_constant(scanned, text):
        return _unredactable(sql)
    return RedactedSQL(text=text, length=len(sql))


_PARAMETER = re.compile(r"\$[0-9]+")


def redact_normalized(sql: str, normalized: str) -> RedactedSQL:
    """The redaction of SQL the guard generated (no comments), from Postgres's normalisation of
    it (`enforce.normalize`: every constant already `$n`): each `$n` becomes `?`."""
    if len(sql) > MAX_PARSE_CHARS:
        return _unredactable(sql)
    return RedactedSQL(text=_PARAMETER.sub(PLACEHOLDER, normalized), length=len(sql))


def redact_sql(sql: str) -> RedactedSQL:
    """Replace every constant of `sql` with `?` and drop its comments, by Postgres's scanner.

    Never raises: text Postgres's grammar refuses, text over `MAX_PARSE_CHARS`, or anything that
    goes wrong yields the length-and-hash form.
    """
    if len(sql) > MAX_PARSE_CHARS:
        return _unredactable(sql)
    try:
        pgparser.fingerprint(sql)  # the grammar's verdict: unparseable text is not stored
        scanned = scan_sql(sql)
    except Exception:  # any parser failure (deep nesting included): store nothing of the text
        return _unredactable(sql)
    if scanned is None:
        return _unredactable(sql)
    return redact_scanned(scanned)
