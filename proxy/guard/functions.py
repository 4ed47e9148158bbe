"""Which functions and types a query may use, and the SQL name of each sqlglot function node.

Allow-lists, not deny-lists: a function is callable only if its Postgres name is in
`DEFAULT_ALLOWED_FUNCTIONS` or in the policy's `extra_functions`. Everything that reads files,
opens connections, runs SQL from strings, sleeps, changes settings, touches large objects,
advisory locks, sequences, transaction ids or server internals is simply absent from the list.

Deliberate omissions (read before extending):
- `current_setting`, `version`, `current_user`/`session_user`/`current_role`, `current_schema`,
  `current_database`, `inet_server_addr`: they leak server configuration or identity.
- `to_regclass`, `format_type`, `obj_description`, `has_*_privilege`, `pg_get_*`: catalog readers
  that bypass the relation allow-list.
- `xpath`, `xmlparse`, `query_to_xml` and the SQL/XML family: they parse XML or run SQL text.

Casts and typed literals run the target type's input function, so types are allow-listed too
(`ALLOWED_TYPES`): `'pg_authid'::regclass` resolves catalog names, a row type names a relation.
"""

from __future__ import annotations

from functools import cache

import sqlglot
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres

AGGREGATES = frozenset({
    "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and", "bool_or", "every",
    "bit_and", "bit_or", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp",
    "corr", "covar_pop", "covar_samp", "regr_avgx", "regr_avgy", "regr_count", "regr_intercept",
    "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy", "percentile_cont",
    "percentile_disc", "mode", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg",
    "any_value",
})

WINDOW = frozenset({
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
    "first_value", "last_value", "nth_value",
})

MATH = frozenset({
    "abs", "ceil", "ceiling", "floor", "round", "trunc", "sqrt", "cbrt", "power", "pow", "exp", "ln",
    "log", "log10", "mod", "sign", "div", "pi", "degrees", "radians", "width_bucket", "random",
    "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "gcd", "lcm", "factorial", "scale",
})

STRING = frozenset({
    "lower", "upper", "length", "char_length", "character_length", "octet_length", "bit_length",
    "substr", "substring", "left", "right", "trim", "btrim", "ltrim", "rtrim", "lpad", "rpad",
    "replace", "split_part", "strpos", "position", "concat", "concat_ws", "initcap", "reverse",
    "repeat", "translate", "overlay", "ascii", "chr", "starts_with", "format", "md5",
    "regexp_replace", "regexp_match", "regexp_matches", "regexp_split_to_array",
    "regexp_split_to_table", "regexp_count", "regexp_like", "regexp_substr", "regexp_instr",
    "string_to_array", "array_to_string", "to_char", "to_number", "like_escape",
    "similar_to_escape", "similar_escape", "normalize", "is_normalized", "unistr",
})

DATETIME = frozenset({
    "now", "current_date", "current_time", "current_timestamp", "localtime", "localtimestamp",
    "clock_timestamp", "statement_timestamp", "transaction_timestamp", "date_trunc", "date_part",
    "extract", "age", "date_bin", "make_date", "make_time", "make_timestamp", "make_timestamptz",
    "make_interval", "justify_days", "justify_hours", "justify_interval", "isfinite", "to_date",
    "to_timestamp", "timezone", "date_add", "date_subtract",
})

JSON = frozenset({
    "to_json", "to_jsonb", "row_to_json", "array_to_json", "json_build_object",
    "jsonb_build_object", "json_build_array", "jsonb_build_array", "json_object", "jsonb_object",
    "json_array_length", "jsonb_array_length", "json_extract_path", "json_extract_path_text",
    "jsonb_extract_path", "jsonb_extract_path_text", "json_object_keys", "jsonb_object_keys",
    "json_typeof", "jsonb_typeof", "jsonb_set", "jsonb_set_lax", "jsonb_insert",
    "json_strip_nulls", "jsonb_strip_nulls", "jsonb_pretty", "json_each", "jsonb_each",
    "json_each_text", "jsonb_each_text", "json_array_elements", "jsonb_array_elements",
    "json_array_elements_text", "jsonb_array_elements_text", "json_to_record", "jsonb_to_record",
    "json_to_recordset", "jsonb_to_recordset", "jsonb_path_exists", "jsonb_path_match",
    "jsonb_path_query", "jsonb_path_query_array", "jsonb_path_query_first",
})

ARRAYS_AND_SETS = frozenset({
    "array_length", "cardinality", "unnest", "array_position", "array_positions", "array_remove",
    "array_replace", "array_append", "array_prepend", "array_cat", "array_upper", "array_lower",
    "array_dims", "array_ndims", "generate_series", "generate_subscripts", "array_fill",
    "trim_array", "array_reverse", "array_sort", "array_sample", "array_shuffle",
})

CONDITIONAL = frozenset({"coalesce", "nullif", "greatest", "least", "num_nulls", "num_nonnulls", "grouping"})

MISC = frozenset({"gen_random_uuid", "encode", "decode", "sha224", "sha256", "sha384", "sha512"})

DEFAULT_ALLOWED_FUNCTIONS: frozenset[str] = (
    AGGREGATES | WINDOW | MATH | STRING | DATETIME | JSON | ARRAYS_AND_SETS | CONDITIONAL | MISC
)
"""Postgres function names (lower-case, unqualified or `pg_catalog.`) a query may call by default."""

# Functions the mask library itself emits; allowed in the rewritten SQL only.
MASK_FUNCTIONS: frozenset[str] = frozenset({
    "repeat", "greatest", "least", "length", "right", "split_part", "encode", "sha256",
    "convert_to", "concat",
})

ALLOWED_TYPES: frozenset[str] = frozenset({
    "bool", "boolean", "int2", "int4", "int8", "smallint", "integer", "int", "bigint", "numeric",
    "decimal", "real", "float4", "float8", "double precision", "float", "text", "varchar",
    "character varying", "char", "character", "bpchar", "date", "time", "timetz", "timestamp",
    "timestamptz", "time with time zone", "time without time zone", "timestamp with time zone",
    "timestamp without time zone", "interval", "json", "jsonb", "uuid", "bytea", "inet", "cidr",
    "macaddr", "money", "bit", "varbit", "bit varying", "jsonpath", "tsvector", "tsquery",
    "oid", "int4range", "int8range", "numrange", "daterange", "tsrange", "tstzrange",
})
"""Types a query may cast to or declare (without array brackets, lower-case)."""

# sqlglot classes that stand for operators or SQL syntax rather than a named function call.
# pglast re-checks the generated SQL, where these appear as operators or syntax nodes.
SYNTAX_CLASSES: frozenset[type[exp.Expr]] = frozenset({
    exp.Cast, exp.Case, exp.If, exp.Array, exp.Exists, exp.Extract, exp.Substring, exp.Trim,
    exp.JSONExtract, exp.JSONExtractScalar, exp.JSONBExtract, exp.JSONBExtractScalar,
    exp.JSONBContains, exp.JSONBContainsAnyTopKeys, exp.JSONBContainsAllTopKeys,
    exp.JSONBContainsTopKey, exp.ArrayContainsAll, exp.ArrayContainedBy, exp.ArrayOverlaps,
    exp.RegexpLike, exp.RegexpILike, exp.CurrentDate, exp.CurrentTimestamp, exp.CurrentTime,
    exp.Coalesce, exp.Greatest, exp.Least, exp.Nullif, exp.Collate, exp.ArrayAny, exp.ArrayAll,
})

# Operators (AND, OR, comparisons, arithmetic) that sqlglot models as function classes.
_OPERATOR_BASES = (exp.Connector, exp.Binary, exp.Unary, exp.Predicate)

# sqlglot classes that must never reach Postgres whatever the policy says.
DENIED_CLASSES: frozenset[type[exp.Expr]] = frozenset({
    exp.CurrentUser, exp.CurrentSchema,
})


@cache
def _classes_for_name(name: str) -> frozenset[type[exp.Expr]]:
    """The sqlglot classes the Postgres dialect builds for a call of `name` (one to three arguments)."""
    found: set[type[exp.Expr]] = set()
    for args in ("x", "x, y", "x, y, z"):
        try:
            node = sqlglot.parse_one(f"SELECT {name}({args})", dialect="postgres")
        except Exception:  # noqa: S112 - probing arities; failures are expected
            continue
        if isinstance(node, exp.Select) and node.expressions:
            found.update(type(n) for n in node.expressions[0].walk() if isinstance(n, exp.Func))
    found.discard(exp.Anonymous)
    return frozenset(found)


@cache
def _classes_for_names(names: frozenset[str]) -> frozenset[type[exp.Expr]]:
    out: set[type[exp.Expr]] = set()
    for name in names:
        out |= _classes_for_name(name)
    return frozenset(out)


def _display_name(cls: type[exp.Expr]) -> str:
    names = [k.lower() for k, b in Postgres.parser_class.FUNCTIONS.items()
             if b is cls or getattr(b, "__self__", None) is cls]
    return sorted(names)[0] if names else cls.key


def sqlglot_function_name(node: exp.Func, allowed: frozenset[str]) -> str | None:
    """The name to check for `node` against `allowed`, or None when the node is allowed syntax.

    `Anonymous` nodes carry their name. A typed class is accepted when some allowed name parses
    to it (the generated SQL is re-checked by pglast, which sees the real names); any other class
    returns a name that is not on the allow-list, so unknown node types are denied.
    """
    cls = type(node)
    if cls is exp.Anonymous:
        name = node.name.lower()
        return None if name == "row" else name
    if cls in DENIED_CLASSES:
        return _display_name(cls)
    if cls in SYNTAX_CLASSES or isinstance(node, _OPERATOR_BASES):
        return None
    if cls in _classes_for_names(DEFAULT_ALLOWED_FUNCTIONS) or cls in _classes_for_names(allowed):
        return None
    return _display_name(cls)


def warm_up() -> None:
    """Build the name tables now rather than on the first query."""
    _classes_for_names(DEFAULT_ALLOWED_FUNCTIONS)


def type_is_allowed(name: str) -> bool:
    """Whether a (lower-case, possibly `pg_catalog.`-qualified, possibly array) type may be used."""
    base = name.strip().lower()
    while base.endswith("[]"):
        base = base[:-2].strip()
    base = base.removeprefix("pg_catalog.")
    if "(" in base:
        base = base.split("(", 1)[0].strip()
    return base in ALLOWED_TYPES
