"""`enforce`: apply a policy's `Obligations` to a parsed `Statement` and re-validate the result.

Run order (each step a function over the copied tree, like an optimizer rule list):
1. `check_relations`   — every physical relation must be in `allowed_relations`;
2. `check_functions`   — every function (pglast names and sqlglot node types) must be allowed;
3. `secure_views`      — each reference to a masked/filtered table becomes a derived table
                          `(SELECT cols, <mask>(c) AS c … FROM schema.t WHERE <filters>) AS alias`;
                          every other reference is pinned to its schema;
4. `cap_rows`          — clamp or add the outermost LIMIT, or wrap the query when it is not literal;
5. generate SQL and `revalidate` it with pglast: one plain SELECT, the same relations, every
   relation schema-qualified, functions within the allow-list (plus the mask library's own), and
   a literal root LIMIT within the cap. Any disagreement is `sql.parser_disagreement`. The whole
   text is parsed; a secure view's subtree that is the same parse as the view checked on its
   own (`checked_view`, once per view text) contributes that check's facts without a second walk.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
from collections.abc import Mapping
from functools import lru_cache

from pglast import parser as pgparser
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres

from pgwarden.proxy.guard.catalog import Catalog, Column
from pgwarden.proxy.guard.functions import DEFAULT_ALLOWED_FUNCTIONS, MASK_FUNCTIONS, sqlglot_function_name
from pgwarden.proxy.guard.masks import mask_expression
from pgwarden.proxy.guard.model import GuardDenied, Mask, Obligations, Reason, Rewrite, RowFilter
from pgwarden.proxy.guard.names import needs_quotes, split_relation
from pgwarden.proxy.guard.parse import Statement
from pgwarden.proxy.guard.pgcheck import CheckedSubquery, checked_subquery, inspect
from pgwarden.proxy.guard.resolve import norm, tables_in_copy

CAPPED_ALIAS = "_pgwarden_capped"
POSTGRES = Postgres()
_GENERATORS = threading.local()


def generate(tree: exp.Expression) -> str:
    """The SQL of `tree`, without comments, with one generator per thread, reused: sqlglotc's
    compiled Generator leaks about 60 bytes per instance, so one per call grows a long-running
    proxy without bound. A generator resets its state at each `generate`.

    The tree is the caller's own copy and may be changed by the generator's dialect transforms
    (no second deep copy). Comments are not sent on: the upstream needs none of the agent's,
    and a comment is text the guard does not analyse.
    """
    generator = getattr(_GENERATORS, "generator", None)
    if generator is None:
        generator = _GENERATORS.generator = POSTGRES.generator(comments=False)
    return str(generator.generate(tree, copy=False))


def _ident(name: str) -> exp.Identifier:
    return exp.Identifier(this=name, quoted=needs_quotes(name))


def _int(value: int) -> exp.Expression:
    return exp.Literal.number(value)


def allowed_functions(obligations: Obligations) -> frozenset[str]:
    if not obligations.extra_functions:
        return DEFAULT_ALLOWED_FUNCTIONS
    return DEFAULT_ALLOWED_FUNCTIONS | frozenset(f.lower() for f in obligations.extra_functions)


def check_relations(stmt: Statement, obligations: Obligations) -> None:
    for relation in stmt.analysis.relations:
        if relation not in obligations.allowed_relations:
            raise GuardDenied(Reason.RELATION_NOT_ALLOWED, f"relation not allowed: {relation}",
                              detail={"relation": relation})


def check_functions(stmt: Statement, allowed: frozenset[str]) -> None:
    names = set(stmt.facts.functions)
    for node in stmt.resolution.functions:
        name = sqlglot_function_name(node, allowed)
        if name is not None:
            names.add(name)
    for name in sorted(names):
        if name not in allowed:
            raise GuardDenied(Reason.FUNCTION_NOT_ALLOWED, f"function not allowed: {name}",
                              detail={"function": name})


def _filter_value(value: object) -> exp.Expression:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float) and math.isfinite(value):
        return exp.Literal.number(repr(value))
    if isinstance(value, str) and "\x00" not in value:
        return exp.Literal.string(value)
    raise GuardDenied(Reason.POLICY_ERROR, "row filter value has an unsupported type")


def filter_condition(filters: tuple[RowFilter, ...], columns: tuple[str, ...]) -> exp.Expression | None:
    """AND of the filters: `col = v`, `col IN (v, …)`, or FALSE for an empty list."""
    parts: list[exp.Expression] = []
    for row_filter in filters:
        if row_filter.column not in columns:
            raise GuardDenied(Reason.UNKNOWN_COLUMNS,
                              f"row filter column is not in the catalog: {row_filter.column}")
        column = exp.Column(this=_ident(row_filter.column))
        values = [_filter_value(v) for v in row_filter.values]
        if not values:
            parts.append(exp.false())
        elif len(values) == 1:
            parts.append(exp.EQ(this=column, expression=values[0]))
        else:
            parts.append(exp.In(this=column, expressions=values))
    if not parts:
        return None
    condition = parts[0]
    for part in parts[1:]:
        condition = exp.And(this=condition, expression=part)
    return condition


def secure_view(relation: str, masks: Mapping[str, Mask],
                filters: tuple[RowFilter, ...], catalog: Catalog, allowed: frozenset[str]) -> exp.Subquery:
    """The derived table that replaces one reference to a masked or filtered relation."""
    columns = catalog.columns(relation)
    if columns is None:
        raise GuardDenied(Reason.UNKNOWN_COLUMNS,
                          f"no column list for masked or filtered relation: {relation}",
                          detail={"relation": relation})
    unknown = sorted(set(masks) - set(columns))
    if unknown:
        raise GuardDenied(Reason.UNKNOWN_COLUMNS, f"masked column is not in the catalog: {unknown[0]}",
                          detail={"relation": relation})
    types = catalog.column_types(relation) or {}
    projections: list[exp.Expression] = []
    for name in columns:
        column = exp.Column(this=_ident(name))
        mask = masks.get(name)
        if mask is None:
            projections.append(column)
        else:
            projections.append(exp.Alias(this=mask_expression(mask, column, types.get(name), allowed),
                                         alias=_ident(name)))
    schema, name = split_relation(relation)
    base = exp.Table(this=_ident(name), db=_ident(schema))
    inner = exp.Select(expressions=projections).from_(base, copy=False)
    condition = filter_condition(filters, columns)
    if condition is not None:
        inner = inner.where(condition, copy=False)
    return exp.Subquery(this=inner)


@lru_cache(maxsize=512)
def _cached_view(relation: str, masks: tuple[tuple[str, Mask], ...], filters: tuple[RowFilter, ...],
                 columns: tuple[str, ...], types: tuple[tuple[str, str | None], ...],
                 allowed: frozenset[str]) -> exp.Subquery:
    catalog = Catalog({relation: tuple(Column(n, t) for n, t in types)}) if types else \
        Catalog.from_mapping({relation: columns})
    return secure_view(relation, dict(masks), filters, catalog, allowed)


def view_template(relation: str, masks: Mapping[str, Mask], filters: tuple[RowFilter, ...],
                  catalog: Catalog, allowed: frozenset[str]) -> exp.Subquery:
    """The secure view of `relation` (shared template: copy before inserting it in a tree)."""
    columns = catalog.columns(relation)
    if columns is None:
        return secure_view(relation, masks, filters, catalog, allowed)  # raises UNKNOWN_COLUMNS
    types = catalog.column_types(relation) or {}
    try:
        return _cached_view(relation, tuple(sorted(masks.items())), tuple(filters), columns,
                            tuple((c, types.get(c)) for c in columns), allowed)
    except TypeError:  # unhashable mask parameters: build without the cache
        return secure_view(relation, masks, filters, catalog, allowed)


_SPLICE_NONCE = secrets.token_hex(6)


def _view_placeholder(index: int) -> str:
    """A table name standing for a secure view in the tree until the SQL text is generated."""
    return f"pgwarden_view_{_SPLICE_NONCE}_{index}"


def _view_sql(view: exp.Subquery, only: bool) -> str:
    """The SQL of a secure-view template, parenthesised; generated once per (shared) template."""
    key = "pgwarden_sql_only" if only else "pgwarden_sql"
    known = view.meta.get(key)
    if not isinstance(known, str):
        copy = view.copy()
        if only:
            copy.this.args["from_"].this.set("only", True)
        known = view.meta[key] = generate(copy)
    return known


def secure_views(tree: exp.Expression, stmt: Statement, obligations: Obligations, catalog: Catalog,
                 allowed: frozenset[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """Substitute secure views and pin the other relations; return masked and filtered columns,
    and the SQL of each secure view by the placeholder table name that stands for it in `tree`.

    A secure view's SQL depends only on the relation, the obligations and the catalog, so it is
    generated once (`_view_sql`) and spliced into the statement's SQL by `splice_views`; the
    statement's tree carries a placeholder name in its place (no copy of the view's tree, no
    generation of it per call). The spliced SQL is what `revalidate` checks.
    """
    masked: set[str] = set()
    filtered: set[str] = set()
    views: dict[str, exp.Subquery] = {}
    spliced: dict[str, str] = {}
    for table, relation in tables_in_copy(tree, stmt.table_paths):
        masks = obligations.masks.get(relation) or {}
        filters = obligations.row_filters.get(relation) or ()
        if masks or filters:
            view = views.get(relation)
            if view is None:
                view = views[relation] = view_template(relation, masks, filters, catalog, allowed)
            alias = table.args.get("alias")
            if not isinstance(alias, exp.TableAlias):
                alias = exp.TableAlias(this=_ident(norm(table.this)))
            placeholder = _view_placeholder(len(spliced))
            spliced[placeholder] = _view_sql(view, bool(table.args.get("only")))
            table.replace(exp.Table(this=exp.Identifier(this=placeholder, quoted=False), alias=alias))
            for child in table.iter_expressions():  # the dropped reference: no cycles left behind
                if child.parent is table:
                    child.parent = None
            masked.update(f"{relation}.{c}" for c in masks)
            filtered.update(f"{relation}.{f.column}" for f in filters)
        else:
            schema, name = split_relation(relation)
            table.set("this", _ident(name))
            table.set("db", _ident(schema))
    return sorted(masked), sorted(filtered), spliced


def splice_views(sql: str, spliced: dict[str, str]) -> str:
    """`sql` with each placeholder table name replaced by its secure view's SQL."""
    for placeholder, view_sql in spliced.items():
        if sql.count(placeholder) != 1:  # the generator must have written each exactly once
            raise GuardDenied(Reason.PARSER_DISAGREEMENT, "the rewritten statement failed re-validation",
                              detail={"check": "secure view placement"})
        sql = sql.replace(placeholder, view_sql)
    return sql


def _literal_int(node: exp.Expression | None) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        return int(node.this)
    return None


def cap_rows(tree: exp.Expression, cap: int) -> exp.Expression:
    """The query with at most `cap` rows: clamp a literal LIMIT, add one, or wrap the query."""
    if isinstance(tree, (exp.Select, exp.SetOperation)):
        limit = tree.args.get("limit")
        if limit is None:
            tree.set("limit", exp.Limit(expression=_int(cap)))
            return tree
        if isinstance(limit, exp.Limit) and not limit.args.get("offset") and not limit.expressions:
            value = _literal_int(limit.expression)
            if value is not None:
                limit.set("expression", _int(min(value, cap)))
                return tree
        if isinstance(limit, exp.Fetch):
            options = limit.args.get("limit_options")
            ties = isinstance(options, exp.LimitOptions) and (
                options.args.get("with_ties") or options.args.get("percent"))
            value = _literal_int(limit.args.get("count")) if limit.args.get("count") else 1
            if value is not None and not ties:
                tree.set("limit", exp.Limit(expression=_int(min(value, cap))))
                return tree
    wrapped = exp.Subquery(this=tree, alias=exp.TableAlias(this=exp.to_identifier(CAPPED_ALIAS)))
    return exp.Select(expressions=[exp.Star()]).from_(wrapped, copy=False).limit(_int(cap), copy=False)


@lru_cache(maxsize=512)
def checked_view(view_sql: str) -> CheckedSubquery | None:
    """A secure view's SQL (as spliced) parsed and walked on its own by Postgres's grammar,
    once per distinct text (see `pgcheck.checked_subquery`)."""
    return checked_subquery(view_sql)


def _release(tree: exp.Expression) -> None:
    """Unlink every node of `tree` (the call's own copy, done with) from its parent.

    A sqlglot tree is full of reference cycles (each node links its parent), so a dropped copy
    waits for the cyclic garbage collector, and every call's copy makes those collections
    come sooner. Without the parent links, reference counting frees it at once.
    """
    for node in tree.walk():
        node.parent = None


def revalidate(sql: str, stmt: Statement, allowed: frozenset[str], cap: int | None, *,
               views: Mapping[str, str] | None = None) -> None:
    """Re-parse the SQL we are about to send with Postgres's grammar; any surprise is a deny.

    The whole text is parsed. `views` (placeholder -> SQL, from `secure_views`): a derived
    table in the parse whose subquery is the parse of one of them (locations aside) adds the
    facts found when that view was checked on its own, rather than being walked again.
    """
    checked: dict[bytes, CheckedSubquery] = {}
    for view_sql in (views or {}).values():
        found = checked_view(view_sql)
        if found is not None:
            checked[found.signature] = found
    try:
        facts = inspect(sql, stmt.search_path, stmt.known, checked)
    except GuardDenied as denied:
        raise GuardDenied(Reason.PARSER_DISAGREEMENT, "the rewritten statement failed re-validation",
                          detail={"check": str(denied.code)}) from denied
    problem = None
    if facts.unpinned:
        problem = "unpinned relation"
    elif facts.relations != set(stmt.analysis.relations):
        problem = "relations differ"
    elif cap is not None and not (facts.root_limit_plain and facts.root_limit is not None
                                  and facts.root_limit <= cap):
        problem = "row cap not enforced"
    else:
        outside = sorted(facts.functions - allowed - MASK_FUNCTIONS)
        if outside:
            problem = f"function outside the allow-list: {outside[0]}"
    if problem:
        raise GuardDenied(Reason.PARSER_DISAGREEMENT, "the rewritten statement failed re-validation",
                          detail={"check": problem})


def enforce(stmt: Statement, obligations: Obligations, catalog: Catalog | None = None) -> Rewrite:
    """Apply `obligations` to `stmt` and return the SQL to send on, or raise `GuardDenied`."""
    allowed = allowed_functions(obligations)
    check_relations(stmt, obligations)
    check_functions(stmt, allowed)
    if obligations.row_cap is not None and obligations.row_cap < 0:
        raise GuardDenied(Reason.POLICY_ERROR, "row cap must not be negative")
    catalog = catalog if catalog is not None else Catalog()
    tree = stmt.tree.copy()
    try:
        masked, filtered, spliced = secure_views(tree, stmt, obligations, catalog, allowed)
        if obligations.row_cap is not None:
            tree = cap_rows(tree, obligations.row_cap)
        sql = splice_views(generate(tree), spliced)
        _release(tree)
    except RecursionError as error:
        raise GuardDenied(Reason.TOO_LARGE, "the statement is nested too deeply") from error
    revalidate(sql, stmt, allowed, obligations.row_cap, views=spliced)
    normalized = normalize(sql)
    return Rewrite(
        sql=sql,
        normalized=normalized,
        fingerprint=hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:16],
        masked_columns=tuple(masked),
        row_filters_applied=tuple(filtered),
        row_cap=obligations.row_cap,
        relations=stmt.analysis.relations,
    )


def normalize(sql: str) -> str:
    """`sql` with every constant replaced by `$n`, by Postgres's own normalisation (libpg_query,
    as pg_stat_statements does). Only for SQL that parses: the guard's own output."""
    return str(pgparser.normalize(sql))


def redact_literals(sql: str) -> str:
    """`sql` with every constant replaced by `$n` (Postgres's own normalisation), for audit logs."""
    try:
        return str(pgparser.normalize(sql))
    except pgparser.ParseError:
        return "<unparseable>"


def fingerprint(sql: str) -> str:
    """A stable hash of the statement's shape, constants ignored (libpg_query fingerprint)."""
    try:
        return str(pgparser.fingerprint(sql))
    except pgparser.ParseError:
        return ""
