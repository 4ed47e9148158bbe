"""`parse_statement`: untrusted SQL text -> a `Statement` (tree + `Analysis`), or `GuardDenied`.

Order of checks (each one fails closed):
1. size and emptiness;
2. Postgres's own grammar (pglast) on the original text: exactly one statement, a SelectStmt,
   no INTO, no locking clause, no data-modifying WITH, only known node types, allowed types;
3. `U&` escapes are refused (sqlglot reads `U&"x"` as a bitwise AND);
4. sqlglot parse (postgres dialect): exactly one statement whose root is a query;
5. scope resolution over the sqlglot tree (no writes, no `exp.Command`, anywhere);
6. both parsers must name the same physical relations, else `sql.parser_disagreement`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.parser import Parser
from sqlglot.tokens import Tokenizer

from pgwarden.proxy.guard.catalog import Catalog
from pgwarden.proxy.guard.model import Analysis, GuardDenied, Reason
from pgwarden.proxy.guard.names import validate_search_path
from pgwarden.proxy.guard.pgcheck import PgFacts, inspect, uses_unicode_escapes
from pgwarden.proxy.guard.resolve import Resolution, TablePath, resolve, table_paths

MAX_SQL_LENGTH = 100_000
_POSTGRES = Postgres()
_READERS = threading.local()


class _DropCommandFallbackWarning(logging.Filter):
    """sqlglot's "falling back to Command" warning quotes the raw statement, literals included."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "unsupported syntax" not in str(record.msg)


_SQLGLOT_LOGGER = logging.getLogger("sqlglot")
if not any(isinstance(f, _DropCommandFallbackWarning) for f in _SQLGLOT_LOGGER.filters):
    _SQLGLOT_LOGGER.addFilter(_DropCommandFallbackWarning())

_QUERY_ROOTS = (exp.Select, exp.SetOperation, exp.Values)
_KINDS: dict[type[exp.Expr], str] = {
    exp.Union: "union", exp.Intersect: "intersect", exp.Except: "except", exp.Values: "values",
}


@dataclass(frozen=True, slots=True)
class Statement:
    """A parsed, analysed statement. `tree` is never mutated: `enforce` works on a copy."""

    sql: str
    tree: exp.Expression
    analysis: Analysis
    search_path: tuple[str, ...]
    facts: PgFacts
    resolution: Resolution
    table_paths: tuple[tuple[TablePath, str], ...]  # where each physical reference sits in `tree`
    known: Callable[[str], bool] | None = None


_POSITION_KEYS = ("line", "col", "start", "end")  # sqlglot's token positions in `Expression.meta`
_POSITIONS = frozenset(_POSITION_KEYS)


def _drop_positions(root: exp.Expression) -> None:
    """Remove the parser's token positions (line, column, offsets) from every node's meta.

    Nothing downstream reads them (generation, rewriting and redaction do not), but every copy
    of the tree deep-copies each node's meta dict one by one, and the tree is copied several
    times per call. Other meta keys (function name spelling, generator flags) are kept.
    """
    for node in root.walk():
        meta = node._meta
        if meta:
            if _POSITIONS.issuperset(meta):  # the common case: nothing but positions
                node._meta = None
                continue
            for key in _POSITION_KEYS:
                meta.pop(key, None)


def _sqlglot_parse(sql: str) -> list[exp.Expr | None]:
    """`Postgres().parse(sql)`, with one tokenizer and one parser per thread, reused.

    Both reset their whole state at the start of each `tokenize` / `parse` (the dialect builds
    a new pair per call, which costs as much as tokenizing a short statement). A call that
    raises drops the pair, so nothing a failed parse left behind is ever reused.
    """
    pair: tuple[Tokenizer, Parser] | None = getattr(_READERS, "pair", None)
    if pair is None:
        pair = _READERS.pair = (_POSTGRES.tokenizer(), _POSTGRES.parser())
    tokenizer, parser = pair
    try:
        return parser.parse(tokenizer.tokenize(sql), sql)
    except BaseException:
        _READERS.pair = None
        raise


def _sqlglot_root(sql: str) -> exp.Expression:
    try:
        parsed = [e for e in _sqlglot_parse(sql) if e is not None]
    except RecursionError as error:
        raise GuardDenied(Reason.TOO_LARGE, "the statement is nested too deeply") from error
    except Exception as error:  # sqlglot raises several error types; all mean "cannot prove safe"
        raise GuardDenied(Reason.UNPARSEABLE, "the statement could not be parsed") from error
    if not parsed:
        raise GuardDenied(Reason.EMPTY, "the statement is empty")
    if len(parsed) > 1 or isinstance(parsed[0], exp.Block):
        raise GuardDenied(Reason.MULTIPLE_STATEMENTS, "exactly one statement is allowed")
    root = parsed[0]
    while isinstance(root, exp.Subquery) and not any(v for k, v in root.args.items() if k != "this"):
        root = root.this
    if isinstance(root, exp.Command):
        raise GuardDenied(Reason.UNSUPPORTED_STATEMENT, "only SELECT queries are allowed")
    if not isinstance(root, (*_QUERY_ROOTS, exp.Subquery)):
        raise GuardDenied(Reason.PARSER_DISAGREEMENT, "the SQL parsers disagree about this statement")
    return root


def _literal_limit(node: exp.Expression) -> int | None:
    limit = node.args.get("limit")
    if isinstance(limit, exp.Limit):
        value = limit.expression
    elif isinstance(limit, exp.Fetch):
        value = limit.args.get("count")
    else:
        return None
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    return None


def _kind(root: exp.Expression) -> str:
    inner = root
    while isinstance(inner, exp.Subquery):
        inner = inner.this
    return _KINDS.get(type(inner), "select")


def precheck(sql: str) -> None:
    """The checks that need no parser: text, not too long, not empty, no NUL character."""
    if not isinstance(sql, str):
        raise GuardDenied(Reason.UNPARSEABLE, "the statement must be text")
    if len(sql) > MAX_SQL_LENGTH:
        raise GuardDenied(Reason.TOO_LARGE, f"the statement is longer than {MAX_SQL_LENGTH} characters")
    if not sql.strip():
        raise GuardDenied(Reason.EMPTY, "the statement is empty")
    if "\x00" in sql:
        raise GuardDenied(Reason.UNPARSEABLE, "the statement holds a NUL character")


def parse_statement(sql: str, *, search_path: tuple[str, ...] = ("public",),
                    catalog: Catalog | None = None) -> Statement:
    """Parse and analyse one untrusted statement; raise `GuardDenied` for anything unsafe.

    `catalog`, when given, resolves unqualified names through a multi-schema search path (the
    first schema that has the table); without it they resolve to the first schema.
    """
    search_path = validate_search_path(tuple(search_path))
    precheck(sql)
    known = catalog.knows if catalog is not None else None
    try:
        facts = inspect(sql, search_path, known)
        if uses_unicode_escapes(sql):
            raise GuardDenied(Reason.UNSUPPORTED_STATEMENT, "Unicode escapes (U&) are not supported")
        root = _sqlglot_root(sql)
        resolution = resolve(root, search_path, known)
    except RecursionError as error:
        raise GuardDenied(Reason.TOO_LARGE, "the statement is nested too deeply") from error
    if resolution.relations != facts.relations:
        raise GuardDenied(Reason.PARSER_DISAGREEMENT, "the SQL parsers disagree about the tables read")
    limit = _literal_limit(root)
    analysis = Analysis(
        kind=_kind(root),
        relations=tuple(sorted(facts.relations)),
        columns={r: tuple(sorted(c)) for r, c in sorted(resolution.columns.items())},
        star_relations=tuple(sorted(resolution.star_relations)),
        functions=tuple(sorted(facts.functions)),
        limit=limit,
        has_limit=root.args.get("limit") is not None,
        set_operations=tuple(sorted(resolution.set_operations)),
        has_aggregate=resolution.has_aggregate,
        has_window=resolution.has_window,
        has_subquery=resolution.has_subquery,
        has_cte=resolution.has_cte,
        has_recursive_cte=resolution.has_recursive_cte,
        has_lateral=resolution.has_lateral,
        tables_aliased={r: tuple(sorted(a)) for r, a in sorted(resolution.aliases.items())},
    )
    paths = table_paths(root, resolution)
    _drop_positions(root)
    return Statement(sql=sql, tree=root, analysis=analysis, search_path=search_path, facts=facts,
                     resolution=resolution, table_paths=paths, known=known)


def analyse(sql: str, *, search_path: tuple[str, ...] = ("public",),
            catalog: Catalog | None = None) -> Analysis:
    """The `Analysis` of `sql` (see `parse_statement`)."""
    return parse_statement(sql, search_path=search_path, catalog=catalog).analysis
