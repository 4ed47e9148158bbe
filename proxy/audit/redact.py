"""Redact SQL for audit records and spans: every literal becomes a placeholder.

The agent writes the SQL, so its literals can hold anything: e-mail addresses, names, tokens.
Audit records and spans keep the *shape* of a statement, never its values:

>>> redact_sql("SELECT name FROM customers WHERE email = 'ada@example.com' LIMIT 5").text
'SELECT name FROM customers WHERE email = ? LIMIT ?'

Text that sqlglot cannot parse (or cannot regenerate without a literal) is not stored at all,
only its length and SHA-256, so a reviewer can still match it against a known statement.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import TokenType, exp
from sqlglot.dialects.postgres import Postgres

PLACEHOLDER = "?"
_POSTGRES = Postgres()
_GENERATORS = threading.local()  # one reused generator per thread: sqlglotc leaks ~60 B per instance
MAX_PARSE_CHARS = 64 * 1024  # longer text is not parsed here (cost); it is stored as length + hash

# Every node class that carries a constant written by the author of the statement.
_CONSTANT_NODES: tuple[type[exp.Expression], ...] = (
    exp.Literal,
    exp.RawString,  # $$dollar quoted$$
    exp.ByteString,  # E'escape string'
    exp.UnicodeString,
    exp.HexString,
    exp.BitString,
    exp.National,
    exp.Heredoc,
)
_JSON_PATH_VALUES: tuple[type[exp.Expression], ...] = (exp.JSONPathKey, exp.JSONPathSubscript)

# The second, positive check: the tokens the author wrote as constants, whatever node sqlglot
# made of them (it turns some into identifiers: `date_trunc('x', t)` -> `DATE_TRUNC('X', t)`,
# `date_part('x', t)` -> `EXTRACT(X FROM t)`), must not reappear in the redacted text.
_LITERAL_TOKENS = frozenset({
    TokenType.STRING, TokenType.NUMBER, TokenType.NATIONAL_STRING, TokenType.RAW_STRING,
    TokenType.HEREDOC_STRING, TokenType.BIT_STRING, TokenType.HEX_STRING, TokenType.BYTE_STRING,
    TokenType.UNICODE_STRING,
})
# Date/time field names: constants by syntax, never data; kept so `date_trunc('day', …)` stays readable.
_TIME_UNITS = frozenset(
    f"{unit}{plural}"
    for unit in ("microsecond", "millisecond", "second", "minute", "hour", "day", "week", "month",
                 "quarter", "year", "decade", "century", "millennium")
    for plural in ("", "s")
) | {"millennia", "centuries", "epoch", "dow", "doy", "isodow", "isoyear", "julian", "timezone",
     "timezone_hour", "timezone_minute", "ms", "us"}
_SHORT_NUMBER = 3  # numbers this short also appear as LIMITs, offsets and names; longer ones are checked



class _DropCommandFallbackWarning(logging.Filter):
    """sqlglot's "falling back to Command" warning quotes the raw statement, literals included."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "unsupported syntax" not in str(record.msg)


_SQLGLOT_LOGGER = logging.getLogger("sqlglot")
if not any(isinstance(f, _DropCommandFallbackWarning) for f in _SQLGLOT_LOGGER.filters):
    _SQLGLOT_LOGGER.addFilter(_DropCommandFallbackWarning())


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
        if self.text is None:
            return None
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "length": self.length}
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        return out


def _replace_constant(node: exp.Expression) -> exp.Expression:
    if isinstance(node, _CONSTANT_NODES) and not isinstance(node.parent, exp.Parameter):
        return exp.Var(this=PLACEHOLDER)
    if isinstance(node, _JSON_PATH_VALUES):
        return type(node)(this=PLACEHOLDER)
    return node


def _still_holds_constant(tree: exp.Expression) -> bool:
    for node in tree.walk():
        if isinstance(node, _CONSTANT_NODES) and not isinstance(node.parent, exp.Parameter):
            return True
    return False


def _leaks_a_constant(sql: str, text: str) -> bool:
    """True when a constant written in `sql` shows up in `text` as a whole word (any case)."""
    folded = text.casefold()
    for token in _POSTGRES.tokenize(sql):
        if token.token_type not in _LITERAL_TOKENS:
            continue
        value = token.text.strip().casefold()
        if not value or value in _TIME_UNITS:
            continue
        if token.token_type is TokenType.NUMBER and len(value) <= _SHORT_NUMBER:
            continue
        if value in folded and re.search(rf"(?<!\w){re.escape(value)}(?!\w)", folded):
            return True
    return False


def _unredactable(sql: str) -> RedactedSQL:
    return RedactedSQL(text=None, length=len(sql), sha256=hashlib.sha256(sql.encode("utf-8")).hexdigest())


def _redacted_text(tree: exp.Expr) -> str | None:
    """The tree's SQL with constants replaced and comments dropped; None if a constant survives.
    Transforms `tree` in place."""
    redacted = tree.transform(_replace_constant, copy=False)
    if _still_holds_constant(redacted):
        return None
    generator = getattr(_GENERATORS, "generator", None)
    if generator is None:
        generator = _GENERATORS.generator = _POSTGRES.generator(comments=False)
    return str(generator.generate(redacted, copy=False))  # the tree is ours: no copy


def redact_sql(sql: str) -> RedactedSQL:
    """Parse `sql` (Postgres dialect), replace every constant with `?`, drop comments, regenerate.

    Never raises: anything that goes wrong (or text over `MAX_PARSE_CHARS`) yields the
    length-and-hash form.
    """
    if len(sql) > MAX_PARSE_CHARS:
        return _unredactable(sql)
    try:
        trees = sqlglot.parse(sql, read="postgres")
        parts: list[str] = []
        for tree in trees:
            if tree is None:
                continue
            text = _redacted_text(tree)  # our own fresh tree
            if text is None:
                return _unredactable(sql)
            parts.append(text)
    except Exception:  # any parser or generator failure: store nothing of the text
        return _unredactable(sql)
    if not parts:
        return _unredactable(sql)
    return _checked(sql, "; ".join(parts))


def redact_tree(tree: exp.Expr, sql: str) -> RedactedSQL:
    """`redact_sql(sql)` from a tree the caller already parsed (Postgres dialect) from `sql`, or
    generated `sql` from: no second parse. The tree is transformed in place, so pass one you
    own (a copy, or a tree nothing uses any more). Never raises.
    """
    if len(sql) > MAX_PARSE_CHARS:
        return _unredactable(sql)
    try:
        text = _redacted_text(tree)
    except Exception:  # any generator failure: store nothing of the text
        return _unredactable(sql)
    if text is None:
        return _unredactable(sql)
    return _checked(sql, text)


def _checked(sql: str, text: str) -> RedactedSQL:
    """`text` as the redaction of `sql`, unless a constant of `sql` survived in it."""
    try:
        leaked = _leaks_a_constant(sql, text)
    except Exception:  # the tokenizer refused text the parser accepted: store nothing of it
        leaked = True
    return _unredactable(sql) if leaked else RedactedSQL(text=text, length=len(sql))
