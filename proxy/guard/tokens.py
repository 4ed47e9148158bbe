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

# A constant right after one of these tokens shapes the statement, not only its data: the row
# count of LIMIT / OFFSET / FETCH FIRST|NEXT n (the guard clamps it), an interval's unit text.
_SHAPING_PREDECESSORS = frozenset({"LIMIT", "OFFSET", "FIRST_P", "NEXT", "INTERVAL"})

# Constants a template may take in place of another: a plain quoted string without backslashes
# (it means the same under any `standard_conforming_strings`) or an unsigned decimal number.
# Anything else (E'', $$, B'', hex, exponents, underscores) is kept verbatim in the shape.
_PLAIN_STRING = re.compile(r"'(?:[^'\\\x00]|'')*'\Z")
_PLAIN_INTEGER = re.compile(r"[0-9]+\Z")  # ICONST if it fits int4, else FCONST ("bigint" here)
_PLAIN_DECIMAL = re.compile(r"[0-9]+\.[0-9]+\Z")

KEY_HOLE = "\x00"  # a constant's place in a shape key (the guard refuses SQL that holds a NUL)
_SPACE = re.compile(r"\s+")


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

    `key`: the statement's text with every constant replaced by `KEY_HOLE`. Equal keys mean the
    same text around the constants, so the same tokens apart from them (a constant leaves the
    scanner in its initial state, and a constant continued on the next line is one token).
    """

    sql: str
    key: str
    constants: tuple[Constant, ...]
    comments: tuple[tuple[int, int], ...]  # character spans, end exclusive

    def rebuilt(self, constant_text: Callable[[Constant], str]) -> str:
        """The statement with each constant replaced by `constant_text(constant)`, comments
        dropped and every run of white space made one blank."""
        cuts = sorted([(c.start, c.end, constant_text(c)) for c in self.constants]
                      + [(start, end, " ") for start, end in self.comments])
        parts: list[str] = []
        position = 0
        for start, end, text in cuts:
            parts.append(self.sql[position:start])
            parts.append(text)
            position = end
        parts.append(self.sql[position:])
        return _SPACE.sub(" ", "".join(parts)).strip()


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
    constants: list[Constant] = []
    comments: list[tuple[int, int]] = []
    previous = ""
    position = 0
    for token in tokens:
        name = token.name
        if name in CONSTANT_TOKENS:
            start, end = token.start, token.end + 1
            text = sql[start:end]
            kind = _kind(name, text)
            pinned = kind == "other" or previous in _SHAPING_PREDECESSORS
            constants.append(Constant(text, start, end, kind, pinned))
            key.append(sql[position:start])
            key.append(KEY_HOLE)
            position = end
        elif name in COMMENT_TOKENS:
            comments.append((token.start, token.end + 1))
            continue  # a comment is not a predecessor
        previous = name
    key.append(sql[position:])
    return Scanned(sql=sql, key="".join(key), constants=tuple(constants), comments=tuple(comments))
