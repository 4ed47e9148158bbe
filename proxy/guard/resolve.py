"""Scope resolution over a sqlglot tree: which table references are physical relations.

One top-down walk carries the CTE names visible at each point (a non-recursive WITH entry sees
only the entries before it, a recursive one sees all; the body sees all; nested WITHs add to the
outer ones) and a stack of FROM scopes (alias -> relation) for attributing columns. It does not
use `sqlglot.optimizer.qualify`: secure-view substitution needs only the table references.

Column attribution is conservative: a qualified column goes to the relation its qualifier names;
an unqualified one goes to every physical relation of the innermost FROM scope; a bare name equal
to a physical alias (`row_to_json(c)`) counts as a whole-row read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlglot import exp

from pgwarden.proxy.guard.functions import AGGREGATES
from pgwarden.proxy.guard.model import GuardDenied, Reason
from pgwarden.proxy.guard.names import qualify

# Anything that writes, changes settings or controls transactions, wherever it sits in the tree.
_WRITES: tuple[type[exp.Expr], ...] = (
    exp.DML, exp.DDL, exp.Command, exp.Set, exp.Transaction, exp.Commit, exp.Rollback, exp.Copy,
    exp.Use, exp.Grant, exp.Revoke, exp.TruncateTable, exp.Analyze, exp.Refresh, exp.Cache,
    exp.Uncache, exp.LoadData, exp.Kill, exp.Comment, exp.Execute, exp.Declare, exp.Pragma,
    exp.Describe, exp.Show, exp.Summarize, exp.Block,
)

_SET_OPERATIONS: dict[type[exp.Expr], str] = {
    exp.Union: "union", exp.Intersect: "intersect", exp.Except: "except",
}


# What `_Resolver.note` records for a node, by its class.
_FUNCTION, _AGGREGATE, _ANONYMOUS, _WINDOW, _LATERAL, _SUBQUERY, _SET_OPERATION = range(1, 8)


@dataclass(frozen=True, slots=True)
class _Kind:
    """What the walk does with every node of one class (`isinstance` answers, worked out once)."""

    denial: tuple[Reason, str] | None
    select: bool
    note: int  # 0: nothing to note
    set_operation: str | None
    table: bool
    column: bool


_KINDS: dict[type[exp.Expr], _Kind] = {}


def _kind_of(cls: type[exp.Expr]) -> _Kind:
    """The `_Kind` of `cls`, from the same `isinstance` tests, in the same order, as a node of
    it would face one by one (a class's ancestry does not change, so the answer is cached)."""
    denial: tuple[Reason, str] | None = None
    if issubclass(cls, _WRITES):
        denial = (Reason.NOT_READ_ONLY, "only read-only queries are allowed")
    elif issubclass(cls, exp.Lock):
        denial = (Reason.LOCKING, "locking clauses (FOR UPDATE/SHARE) are not allowed")
    elif issubclass(cls, exp.Into):
        denial = (Reason.SELECT_INTO, "SELECT INTO is not allowed")
    set_operation = None
    if issubclass(cls, exp.Func):
        if issubclass(cls, exp.AggFunc):
            note = _AGGREGATE
        elif issubclass(cls, exp.Anonymous):
            note = _ANONYMOUS
        else:
            note = _FUNCTION
    elif issubclass(cls, exp.Window):
        note = _WINDOW
    elif issubclass(cls, exp.Lateral):
        note = _LATERAL
    elif issubclass(cls, (exp.Subquery, exp.Exists)):
        note = _SUBQUERY
    else:
        set_operation = _SET_OPERATIONS.get(cls)
        note = _SET_OPERATION if set_operation is not None else 0
    kind = _Kind(denial, issubclass(cls, exp.Select), note, set_operation,
                 issubclass(cls, exp.Table), issubclass(cls, exp.Column))
    _KINDS[cls] = kind
    return kind


def norm(identifier: exp.Expression | None) -> str:
    """An identifier's name as Postgres folds it: lower-case unless quoted."""
    if not isinstance(identifier, exp.Identifier):
        return str(identifier.name) if identifier is not None else ""
    name = str(identifier.this)
    return name if identifier.quoted else name.lower()


@dataclass
class Resolution:
    """What the walk found. `tables` holds the physical references in walk order."""

    tables: list[tuple[exp.Table, str]] = field(default_factory=list)
    functions: list[exp.Func] = field(default_factory=list)
    columns: dict[str, set[str]] = field(default_factory=dict)
    star_relations: set[str] = field(default_factory=set)
    aliases: dict[str, set[str]] = field(default_factory=dict)
    set_operations: set[str] = field(default_factory=set)
    has_aggregate: bool = False
    has_window: bool = False
    has_subquery: bool = False
    has_cte: bool = False
    has_recursive_cte: bool = False
    has_lateral: bool = False

    @property
    def relations(self) -> set[str]:
        return {relation for _, relation in self.tables}


class _Resolver:
    def __init__(self, search_path: tuple[str, ...], known: Callable[[str], bool] | None) -> None:
        self.search_path = search_path
        self.known = known
        self.out = Resolution()
        self.scopes: list[dict[str, str | None]] = []
        self.depth = 0

    def relation_of(self, table: exp.Table, ctes: frozenset[str]) -> str | None:
        """The physical relation a table reference names; None for CTEs and table functions."""
        if not isinstance(table.this, exp.Identifier):
            return None
        if table.args.get("catalog") is not None:
            raise GuardDenied(Reason.UNSUPPORTED_STATEMENT, "database-qualified names are not supported")
        name = norm(table.this)
        db = table.args.get("db")
        if db is None and name in ctes:
            return None
        return qualify(norm(db) if db is not None else None, name, self.search_path, self.known)

    def visit(self, node: exp.Expression, ctes: frozenset[str]) -> None:
        kind = _KINDS.get(type(node)) or _kind_of(type(node))
        if kind.denial is not None:
            raise GuardDenied(*kind.denial)
        with_clause = node.args.get("with_")
        if isinstance(with_clause, exp.With):
            ctes = self.with_clause(with_clause, ctes)
        if kind.select:
            self.select(node, ctes)  # type: ignore[arg-type]
            return
        note = kind.note
        if note:
            self.note(node, note, kind.set_operation)
        if kind.table:
            self.table(node, ctes)  # type: ignore[arg-type]
        elif kind.column:
            self.column(node)  # type: ignore[arg-type]
        for child in node.iter_expressions():
            if child is not with_clause:
                self.visit(child, ctes)

    def with_clause(self, with_clause: exp.With, ctes: frozenset[str]) -> frozenset[str]:
        self.out.has_cte = True
        recursive = bool(with_clause.args.get("recursive"))
        self.out.has_recursive_cte |= recursive
        entries = [e for e in with_clause.expressions if isinstance(e, exp.CTE)]
        if len(entries) != len(with_clause.expressions):
            raise GuardDenied(Reason.UNSUPPORTED_STATEMENT, "unsupported WITH clause")
        names = [norm(e.args["alias"].this) for e in entries]
        for index, entry in enumerate(entries):
            visible = names if recursive else names[:index]
            self.visit(entry.this, ctes | frozenset(visible))
        return ctes | frozenset(names)

    def note(self, node: exp.Expression, note: int, set_operation: str | None) -> None:
        out = self.out
        if note == _FUNCTION:
            out.functions.append(node)  # type: ignore[arg-type]
        elif note == _AGGREGATE:
            out.functions.append(node)  # type: ignore[arg-type]
            out.has_aggregate = True
        elif note == _ANONYMOUS:
            out.functions.append(node)  # type: ignore[arg-type]
            if node.name.lower() in AGGREGATES:
                out.has_aggregate = True
        elif note == _WINDOW:
            out.has_window = True
        elif note == _LATERAL:
            out.has_lateral = True
        elif note == _SUBQUERY:
            out.has_subquery = True
        elif set_operation is not None:
            out.set_operations.add(set_operation)

    def select(self, node: exp.Select, ctes: frozenset[str]) -> None:
        if self.depth:
            self.out.has_subquery = True
        sources: dict[str, str | None] = {}
        from_ = node.args.get("from_")
        items = [from_.this] if isinstance(from_, exp.From) else []
        items += [join.this for join in node.args.get("joins") or []]
        for item in items:
            if isinstance(item, exp.Table):
                relation = self.relation_of(item, ctes)
                sources[norm(item.args["alias"].this) if item.alias else norm(item.this)] = relation
            elif item.alias:
                sources[item.alias] = None
        self.scopes.append(sources)
        self.depth += 1
        physical = [r for r in sources.values() if r is not None]
        for projection in node.expressions:
            if isinstance(projection, exp.Star):
                self.out.star_relations.update(physical)
        for join in node.args.get("joins") or []:
            for ident in join.args.get("using") or []:
                for relation in physical:
                    self.out.columns.setdefault(relation, set()).add(norm(ident))
        for child in node.iter_expressions():
            if not isinstance(child, exp.With):
                self.visit(child, ctes)
        self.depth -= 1
        self.scopes.pop()

    def table(self, node: exp.Table, ctes: frozenset[str]) -> None:
        relation = self.relation_of(node, ctes)
        if relation is None:
            return
        self.out.tables.append((node, relation))
        self.out.aliases.setdefault(relation, set()).add(
            norm(node.args["alias"].this) if node.alias else norm(node.this))

    def column(self, node: exp.Column) -> None:
        if not self.scopes:
            return
        qualifier = node.args.get("table")
        star = isinstance(node.this, exp.Star)
        name = "*" if star else norm(node.this)
        if qualifier is not None:
            wanted = norm(qualifier)
            for scope in reversed(self.scopes):
                if wanted in scope:
                    relation = scope[wanted]
                    if relation is not None:
                        if star:
                            self.out.star_relations.add(relation)
                        else:
                            self.out.columns.setdefault(relation, set()).add(name)
                    return
            return
        scope = self.scopes[-1]
        if scope.get(name) is not None:
            self.out.star_relations.add(scope[name])  # type: ignore[arg-type]
        for relation in scope.values():
            if relation is not None:
                self.out.columns.setdefault(relation, set()).add(name)


def resolve(tree: exp.Expression, search_path: tuple[str, ...],
            known: Callable[[str], bool] | None = None) -> Resolution:
    """Walk `tree` once; raise `GuardDenied` on anything that is not part of a read-only query."""
    resolver = _Resolver(search_path, known)
    resolver.visit(tree, frozenset())
    return resolver.out


TablePath = tuple[tuple[str, int | None], ...]
"""How to reach a node from the root: for each step, the argument name and, for a list
argument, the position in the list."""

_MAX_DEPTH = 10_000  # far deeper than any tree the recursive walks above get through


def _path(root: exp.Expression, node: exp.Expression) -> TablePath:
    """The steps from `root` down to `node`, from parent links each confirmed by identity."""
    steps: list[tuple[str, int | None]] = []
    current = node
    while current is not root:
        parent, key = current.parent, current.arg_key
        value = parent.args.get(key) if parent is not None and key is not None else None
        if value is current:
            steps.append((key, None))  # type: ignore[arg-type]
        elif isinstance(value, list):
            index = next((i for i, item in enumerate(value) if item is current), None)
            if index is None:
                raise GuardDenied(Reason.PARSER_DISAGREEMENT, "the statement changed while rewriting")
            steps.append((key, index))  # type: ignore[arg-type]
        else:
            raise GuardDenied(Reason.PARSER_DISAGREEMENT, "the statement changed while rewriting")
        if len(steps) > _MAX_DEPTH:
            raise GuardDenied(Reason.TOO_LARGE, "the statement is nested too deeply")
        current = parent  # type: ignore[assignment]
    steps.reverse()
    return tuple(steps)


def follow(root: exp.Expression, path: TablePath) -> exp.Expression | None:
    """The node `path` leads to from `root`, or None when the tree has no such node."""
    node = root
    for key, index in path:
        value = node.args.get(key)
        if index is not None:
            value = value[index] if isinstance(value, list) and index < len(value) else None
        if not isinstance(value, exp.Expression):
            return None
        node = value
    return node


def table_paths(tree: exp.Expression, resolution: Resolution) -> tuple[tuple[TablePath, str], ...]:
    """Where each physical reference sits in `tree`, with its relation, in `resolution` order.

    A copy of `tree` has the same structure, so `enforce` finds the references in its copy by
    following the paths, without resolving scopes again or walking the whole copy.
    """
    return tuple((_path(tree, node), relation) for node, relation in resolution.tables)


def tables_in_copy(copy: exp.Expression,
                   paths: tuple[tuple[TablePath, str], ...]) -> list[tuple[exp.Table, str]]:
    """The physical references of a copy of the tree `paths` was computed on."""
    found = []
    for path, relation in paths:
        node = follow(copy, path)
        if not isinstance(node, exp.Table):
            raise GuardDenied(Reason.PARSER_DISAGREEMENT, "the statement changed while rewriting")
        found.append((node, relation))
    return found
