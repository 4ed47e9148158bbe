"""The second opinion: what Postgres's own parser (pglast / libpg_query) sees in a statement.

`inspect(sql)` parses with the real grammar and walks the tree with an allow-list of node types:
anything that is not part of a plain read-only SELECT is a denial, and anything unknown is too.
It reports the relations (resolved with the same rules as the sqlglot side, CTE scoping
included), every function-like call (`FuncCall`, `SQLValueFunction`, `COALESCE`, `GREATEST`,
`NULLIF`, …), and the root's LIMIT, so the guard can compare both parsers' views.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pglast import parser as pgparser

from pgwarden.proxy.guard.functions import type_is_allowed
from pgwarden.proxy.guard.model import GuardDenied, Reason
from pgwarden.proxy.guard.names import qualify

# Node types that may appear in a plain SELECT and need no special handling.
_PASS_THROUGH = frozenset({
    "ResTarget", "ColumnRef", "A_Star", "A_Const", "Integer", "Float", "Boolean", "String",
    "BitString", "BoolExpr", "NullTest", "BooleanTest", "SubLink", "CaseExpr", "CaseWhen",
    "RowExpr", "A_ArrayExpr", "A_Indirection", "A_Indices", "ParamRef", "CollateClause", "SortBy",
    "WindowDef", "GroupingSet", "JoinExpr", "RangeSubselect", "RangeFunction", "Alias", "List",
})

# Statement nodes that are not queries but do not write either.
_NON_WRITING_STATEMENTS = frozenset({
    "ExplainStmt", "VariableShowStmt", "PrepareStmt", "ExecuteStmt", "DeclareCursorStmt",
    "FetchStmt", "ClosePortalStmt", "ListenStmt", "UnlistenStmt", "CheckPointStmt", "LoadStmt",
    "DeallocateStmt", "CallStmt", "DoStmt", "NotifyStmt", "DiscardStmt",
})

# SQL-syntax nodes that call functions: reported under these names.
_FUNCTION_NODES = {
    "XmlExpr": "xml", "XmlSerialize": "xmlserialize", "RangeTableFunc": "xmltable",
    "JsonObjectConstructor": "json_object", "JsonArrayConstructor": "json_array",
    "JsonArrayQueryConstructor": "json_array", "JsonObjectAgg": "json_objectagg",
    "JsonArrayAgg": "json_arrayagg", "JsonFuncExpr": "json_query", "JsonTable": "json_table",
    "JsonParseExpr": "json", "JsonScalarExpr": "json_scalar", "JsonSerializeExpr": "json_serialize",
    "JsonIsPredicate": "is_json", "MergeSupportFunc": "merge_action",
}


@dataclass
class PgFacts:
    """What pglast found in one statement."""

    relations: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    operators: set[str] = field(default_factory=set)
    unpinned: set[str] = field(default_factory=set)      # unqualified names that are not CTEs
    root_limit: int | None = None                        # literal LIMIT n of the root, if any
    root_limit_plain: bool = False                       # LIMIT n / FETCH FIRST n ROWS ONLY


def _deny(code: Reason, message: str, **detail: Any) -> GuardDenied:
    return GuardDenied(code, message, detail=detail)


def _strings(nodes: list[Any]) -> list[str]:
    return [n["String"]["sval"] for n in nodes if "String" in n]


def _function_name(parts: list[str]) -> str:
    lowered = list(parts)
    if len(lowered) == 2 and lowered[0] == "pg_catalog":
        lowered = lowered[1:]
    return ".".join(lowered)


def _int_const(node: Any) -> int | None:
    if not isinstance(node, dict) or "A_Const" not in node:
        return None
    const = node["A_Const"]
    if "ival" in const:
        value = const["ival"].get("ival", 0)
        return value if isinstance(value, int) else None
    return None


class _Walker:
    def __init__(self, search_path: tuple[str, ...], known: Any,
                 checked: Mapping[bytes, CheckedSubquery] | None = None) -> None:
        self.search_path = search_path
        self.known = known
        self.checked = checked
        self.facts = PgFacts()

    def node(self, node: Any, ctes: frozenset[str]) -> None:
        """Walk any JSON value: a typed node (`{"Kind": body}`) is checked by `typed`; the
        fields of an untyped object and the items of a list are walked. Scalars (strings,
        numbers, locations) hold nothing to check and are skipped without a call."""
        if isinstance(node, dict):
            self.object(node, ctes)
        elif isinstance(node, list):
            self.items(node, ctes)

    def items(self, items: list[Any], ctes: frozenset[str]) -> None:
        for item in items:
            if isinstance(item, dict):
                self.object(item, ctes)
            elif isinstance(item, list):
                self.items(item, ctes)

    def object(self, node: dict[str, Any], ctes: frozenset[str]) -> None:
        if len(node) == 1:
            key = next(iter(node))
            if key[:1].isupper():
                self.typed(key, node[key], ctes)
                return
        for key, value in node.items():
            if isinstance(value, dict):
                if key == "typeName":
                    self.type_name(value)
                self.object(value, ctes)
            elif isinstance(value, list):
                for item in value:  # `items`, inlined: most lists are walked from here
                    if isinstance(item, dict):
                        self.object(item, ctes)
                    elif isinstance(item, list):
                        self.items(item, ctes)

    def typed(self, kind: str, body: dict[str, Any], ctes: frozenset[str]) -> None:
        if kind in _PASS_THROUGH:  # the most common case first (no other branch takes these)
            if kind == "RangeSubselect" and self.checked and self.known_subquery(body, ctes):
                return
            if isinstance(body, dict):
                self.object(body, ctes)
            else:
                self.node(body, ctes)
        elif kind == "SelectStmt":
            self.select(body, ctes)
        elif kind == "RangeVar":
            self.range_var(body, ctes)
        elif kind == "FuncCall":
            self.facts.functions.add(_function_name(_strings(body.get("funcname", []))))
            self.node({k: v for k, v in body.items() if k != "funcname"}, ctes)
        elif kind == "SQLValueFunction":
            op = body.get("op", "").removeprefix("SVFOP_").removesuffix("_N").lower()
            self.facts.functions.add(op)
        elif kind == "TypeCast":
            self.type_name(body.get("typeName", {}))
            self.node(body.get("arg"), ctes)
        elif kind in ("TypeName", "ColumnDef"):
            self.type_name(body if kind == "TypeName" else body.get("typeName", {}))
            self.node({k: v for k, v in body.items() if k not in ("typeName", "names")}, ctes)
        elif kind == "A_Expr":
            self.a_expr(body, ctes)
        elif kind == "CoalesceExpr":
            self.facts.functions.add("coalesce")
            self.node(body.get("args"), ctes)
        elif kind == "MinMaxExpr":
            self.facts.functions.add("greatest" if body.get("op") == "IS_GREATEST" else "least")
            self.node(body.get("args"), ctes)
        elif kind == "GroupingFunc":
            self.facts.functions.add("grouping")
            self.node(body.get("args"), ctes)
        elif kind == "LockingClause":
            raise _deny(Reason.LOCKING, "locking clauses (FOR UPDATE/SHARE) are not allowed")
        elif kind == "IntoClause":
            raise _deny(Reason.SELECT_INTO, "SELECT INTO is not allowed")
        elif kind in _FUNCTION_NODES:
            name = _FUNCTION_NODES[kind]
            raise _deny(Reason.FUNCTION_NOT_ALLOWED, f"function not allowed: {name}", function=name)
        elif kind.endswith("Stmt"):
            raise _deny(Reason.NOT_READ_ONLY, "only read-only queries are allowed")
        else:
            raise _deny(Reason.UNSUPPORTED_STATEMENT, f"unsupported SQL construct: {kind}")

    def known_subquery(self, body: dict[str, Any], ctes: frozenset[str]) -> bool:
        """A derived table whose subquery is, location for location aside, one already checked
        (`checked_subquery`): its facts are taken as they were found, the rest of the node is
        walked. False (walk it all) for any other subquery."""
        assert self.checked is not None
        subquery = body.get("subquery")
        found = self.checked.get(subquery_signature(subquery)) if isinstance(subquery, dict) else None
        if found is None:
            return False
        facts = self.facts
        facts.relations |= found.relations
        facts.functions |= found.functions
        facts.operators |= found.operators
        self.node({k: v for k, v in body.items() if k != "subquery"}, ctes)
        return True

    def select(self, body: dict[str, Any], ctes: frozenset[str]) -> None:
        if body.get("intoClause"):
            raise _deny(Reason.SELECT_INTO, "SELECT INTO is not allowed")
        if body.get("lockingClause"):
            raise _deny(Reason.LOCKING, "locking clauses (FOR UPDATE/SHARE) are not allowed")
        with_clause = body.get("withClause")
        if with_clause:
            entries = [c.get("CommonTableExpr") for c in with_clause.get("ctes", [])]
            if any(e is None for e in entries):
                raise _deny(Reason.UNSUPPORTED_STATEMENT, "unsupported WITH clause")
            names = [e["ctename"] for e in entries]
            recursive = bool(with_clause.get("recursive"))
            for index, entry in enumerate(entries):
                if entry.get("search_clause") or entry.get("cycle_clause"):
                    raise _deny(Reason.UNSUPPORTED_STATEMENT, "SEARCH/CYCLE clauses are not supported")
                query = entry.get("ctequery", {})
                if "SelectStmt" not in query:
                    raise _deny(Reason.NOT_READ_ONLY, "data-modifying WITH queries are not allowed")
                visible = names if recursive else names[:index]
                self.select(query["SelectStmt"], ctes | frozenset(visible))
                self.node(entry.get("aliascolnames"), ctes)
            ctes = ctes | frozenset(names)
        for key, value in body.items():
            if key == "withClause":
                continue
            if key in ("larg", "rarg"):
                self.select(value, ctes)
            else:
                self.node(value, ctes)

    def range_var(self, body: dict[str, Any], ctes: frozenset[str]) -> None:
        if body.get("catalogname"):
            raise _deny(Reason.UNSUPPORTED_STATEMENT, "database-qualified names are not supported")
        schema = body.get("schemaname")
        name = body.get("relname", "")
        if schema is None and name in ctes:
            return
        if schema is None:
            self.facts.unpinned.add(name)
        self.facts.relations.add(qualify(schema, name, self.search_path, self.known))

    def type_name(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        parts = _strings(body.get("names", []))
        if not parts or (len(parts) > 1 and parts[0] != "pg_catalog") or len(parts) > 2:
            shown = ".".join(parts) or "?"
            raise _deny(Reason.TYPE_NOT_ALLOWED, f"type not allowed: {shown}", type=shown)
        if body.get("pct_type") or body.get("setof") or not type_is_allowed(parts[-1]):
            raise _deny(Reason.TYPE_NOT_ALLOWED, f"type not allowed: {parts[-1]}", type=parts[-1])

    def a_expr(self, body: dict[str, Any], ctes: frozenset[str]) -> None:
        kind = body.get("kind", "")
        parts = _strings(body.get("name", []))
        if len(parts) > 1 and (len(parts) > 2 or parts[0] != "pg_catalog"):
            shown = ".".join(parts)
            raise _deny(Reason.FUNCTION_NOT_ALLOWED, f"operator not allowed: {shown}", function=shown)
        if kind == "AEXPR_NULLIF":
            self.facts.functions.add("nullif")
        if parts:
            self.facts.operators.add(parts[-1])
        self.node(body.get("lexpr"), ctes)
        self.node(body.get("rexpr"), ctes)


def parse_tree(sql: str) -> list[dict[str, Any]]:
    """The raw statements of `sql` as pglast JSON; a parse error is `sql.unparseable`."""
    try:
        text = pgparser.parse_sql_json(sql)
    except pgparser.ParseError as error:
        raise _deny(Reason.UNPARSEABLE, "the statement does not parse as PostgreSQL") from error
    try:
        tree = orjson.loads(text)  # a third of the cost of json.loads on these trees
    except orjson.JSONDecodeError as error:  # nesting beyond orjson's limit (1024 levels)
        raise _deny(Reason.TOO_LARGE, "the statement is nested too deeply") from error
    stmts: list[dict[str, Any]] = tree.get("stmts", [])
    return stmts


def root_select(stmts: list[dict[str, Any]]) -> dict[str, Any]:
    """The single statement's SelectStmt, or the denial that fits what it is."""
    if not stmts:
        raise _deny(Reason.EMPTY, "the statement is empty")
    if len(stmts) > 1:
        raise _deny(Reason.MULTIPLE_STATEMENTS, "exactly one statement is allowed")
    stmt = stmts[0].get("stmt", {})
    kind = next(iter(stmt), "")
    if kind != "SelectStmt":
        if kind in _NON_WRITING_STATEMENTS:
            raise _deny(Reason.UNSUPPORTED_STATEMENT, "only SELECT queries are allowed")
        raise _deny(Reason.NOT_READ_ONLY, "only read-only queries are allowed")
    select: dict[str, Any] = stmt["SelectStmt"]
    return select


def inspect(sql: str, search_path: tuple[str, ...], known: Any = None,
            checked: Mapping[bytes, CheckedSubquery] | None = None) -> PgFacts:
    """Parse `sql` with Postgres's grammar and report its facts, or raise `GuardDenied`.

    `checked` (by `subquery_signature`): subqueries of derived tables already walked on their
    own (`checked_subquery`); one found in `sql` contributes its recorded facts instead of
    being walked again. Everything else is walked.
    """
    select = root_select(parse_tree(sql))
    walker = _Walker(search_path, known, checked)
    walker.select(select, frozenset())
    facts = walker.facts
    facts.root_limit = _int_const(select.get("limitCount"))
    facts.root_limit_plain = (select.get("limitOption") == "LIMIT_OPTION_COUNT"
                              and facts.root_limit is not None)
    return facts


# A node's place in the text, the only thing that differs between a subquery parsed on its own
# and the same text parsed inside a statement. orjson writes a `"` inside a string as `\"`, so
# the pattern matches keys only.
_LOCATION = re.compile(rb'"location":-?[0-9]+')


def subquery_signature(subquery: dict[str, Any]) -> bytes:
    """The pglast JSON of a subquery without its `location` fields: equal signatures, equal
    trees apart from where in the text they were found (which no check reads)."""
    return _LOCATION.sub(b"", orjson.dumps(subquery))


@dataclass(frozen=True, slots=True)
class CheckedSubquery:
    """A subquery walked on its own: its signature and the facts the walk found."""

    signature: bytes
    relations: frozenset[str]
    functions: frozenset[str]
    operators: frozenset[str]


def checked_subquery(sql: str) -> CheckedSubquery | None:
    """`sql` (a parenthesised SELECT) parsed as the derived table of `SELECT * FROM sql AS v`
    and walked with every check; None when it does not pass them all, or names any relation
    without its schema (its facts would then depend on the statement it sits in).

    The facts of a subquery whose relations are all schema-qualified depend on nothing but
    its tree: the walk reads no location, and CTE names and the search path only resolve
    unqualified names.
    """
    try:
        select = root_select(parse_tree(f"SELECT * FROM {sql} AS pgwarden_checked"))
        source = select.get("fromClause", [None])[0]
        body = source.get("RangeSubselect") if isinstance(source, dict) and len(source) == 1 else None
        subquery = body.get("subquery") if isinstance(body, dict) else None
        if not isinstance(subquery, dict) or set(subquery) != {"SelectStmt"}:
            return None
        walker = _Walker(("public",), None)
        walker.node(subquery, frozenset())
    except (GuardDenied, RecursionError):
        return None
    facts = walker.facts
    if facts.unpinned:
        return None
    return CheckedSubquery(subquery_signature(subquery), frozenset(facts.relations),
                           frozenset(facts.functions), frozenset(facts.operators))


_UNICODE_TOKENS = frozenset({"UIDENT", "USCONST"})


def uses_unicode_escapes(sql: str) -> bool:
    """Whether `sql` holds `U&"…"` identifiers or `U&'…'` strings (refused: sqlglot misreads them)."""
    if "&" not in sql:
        return False
    try:
        return any(token.name in _UNICODE_TOKENS for token in pgparser.scan(sql))
    except pgparser.ParseError:
        return False
