"""What Postgres's own scanner (pglast / libpg_query) sees in a statement, token by token.

Two users: the audit redaction (every constant token becomes `?`) and the shape cache (two
statements with the same tokens apart from their constants have the same *shape*). Both lean on
Postgres's lexer, not on sqlglot's: it is the authority on where a constant starts and ends
(`E'…'`, `$tag$…$tag$`, `U&'…'`, `B'…'`, string continuation across lines).

>>> scanned = scan_sql("SELECT name FROM customers WHERE id = 42 LIMIT 5")
>>> [c.text for c in scanned.constants], [c.pinned for c in scanned.constants]
(['42', '5'], [False, True])
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pglast import parser as pgparser

CONSTANT_TOKENS = frozenset({"SCONST", "ICONST", "FCONST", "BCONST", "XCONST", "USCONST"})
COMMENT_TOKENS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_KEYWORD_KINDS = frozenset({"RESERVED_KEYWORD", "UNRESERVED_KEYWORD", "COL_NAME_KEYWORD",
                            "TYPE_FUNC_NAME_KEYWORD"})

# A constant right after one of these tokens shapes the statement, not only its data: the row
# count of LIMIT / OFFSET / FETCH FIRST|NEXT n (the guard clamps it), an interval's unit text.
_SHAPING_PREDECESSORS = frozenset({"LIMIT", "OFFSET", "FIRST_P", "NEXT", "INTERVAL"})

# Constants a template may take in place of another: a plain quoted string without backslashes
# (it means the same under any `standard_conforming_strings`) or an unsigned decimal number.
# Anything else (E'', $$, B'', hex, exponents, underscores) is kept verbatim in the shape.
_PLAIN_STRING = re.compile(r"'(?:[^'\\\x00]|'')*'\Z")
_PLAIN_INTEGER = re.compile(r"[0-9]+\Z")  # ICONST if it fits int4, else FCONST ("bigint" here)
_PLAIN_DECIMAL = re.compile(r"[0-9]+\.[0-9]+\Z")

TOKEN, CONSTANT, COMMENT = 0, 1, 2  # roles in `Scanned.tokens`
KEY_HOLE = "\x01"  # a constant's place in a shape key (NUL separates tokens; SQL holds neither)


@dataclass(frozen=True, slots=True)
class Constant:
    """One constant token: its text as written, where it is, and whether it may be swapped.

    `kind` is "string", "integer", "bigint" (digits beyond int4, which Postgres's scanner
    reads as FCONST) or "decimal" for a plain constant (see `_PLAIN_STRING`), else "other".
    `pinned` constants are part of the statement's shape: a cached template is reused only for
    a statement whose pinned constants are the same text.
    """

    text: str
    start: int  # character offsets in the statement, end exclusive
    end: int
    kind: str
    pinned: bool


@dataclass(frozen=True, slots=True)
class Scanned:
    """A statement as Postgres's scanner tokenises it.

    `key`: every token's text in order (comments included), constants replaced by `KEY_HOLE`;
    equal keys mean equal statements up to constants and whitespace. `shape`: the tokens
    normalised (keywords upper case, unquoted identifiers lower case, constants `?`, no comments),
    what the audit fingerprint hashes.
    """

    sql: str
    key: str
    shape: str
    constants: tuple[Constant, ...]
    tokens: tuple[tuple[int, int, int], ...]  # (start, end exclusive, TOKEN | CONSTANT | COMMENT)

    def rebuilt(self, constant_text: Callable[[Constant], str]) -> str:
        """The statement with each constant replaced by `constant_text(constant)`, comments
        dropped and the space between tokens collapsed to one blank where there was any."""
        parts: list[str] = []
        constants = iter(self.constants)
        position = 0
        for start, end, role in self.tokens:
            if role == COMMENT:
                continue
            if parts and start > position:
                parts.append(" ")
            parts.append(constant_text(next(constants)) if role == CONSTANT else self.sql[start:end])
            position = end
        return "".join(parts)


def _kind(name: str, text: str) -> str:
    if name == "SCONST" and _PLAIN_STRING.match(text):
        return "string"
    if name == "ICONST" and _PLAIN_INTEGER.match(text):
        return "integer"
    if name == "FCONST" and _PLAIN_INTEGER.match(text):
        return "bigint"
    if name == "FCONST" and _PLAIN_DECIMAL.match(text):
        return "decimal"
    return "other"


def scan_sql(sql: str) -> Scanned | None:
    """Tokenise `sql` with Postgres's scanner; None when the scanner refuses the text."""
    try:
        tokens = pgparser.scan(sql)
    except pgparser.ParseError:
        return None
    key: list[str] = []
    shape: list[str] = []
    constants: list[Constant] = []
    spans: list[tuple[int, int, int]] = []
    previous = ""
    for token in tokens:
        start, end, name = token.start, token.end + 1, token.name
        text = sql[start:end]
        if name in CONSTANT_TOKENS:
            kind = _kind(name, text)
            pinned = kind == "other" or previous in _SHAPING_PREDECESSORS
            constants.append(Constant(text, start, end, kind, pinned))
            spans.append((start, end, CONSTANT))
            key.append(KEY_HOLE)
            shape.append("?")
        elif name in COMMENT_TOKENS:
            spans.append((start, end, COMMENT))
            key.append(text)
            continue  # a comment is not a predecessor
        else:
            spans.append((start, end, TOKEN))
            key.append(text)
            if token.kind in _KEYWORD_KINDS:
                shape.append(text.upper())
            elif name == "IDENT" and not text.startswith('"'):
                shape.append(text.lower())
            else:
                shape.append(text)
        previous = name
    return Scanned(sql=sql, key="\x00".join(key), shape=" ".join(shape), constants=tuple(constants),
                   tokens=tuple(spans))
