"""Statements with other constants, for the learned-shape tests: the same query, other values.

`value_variant(sql, k)` changes every constant a learned shape may swap (not a pinned one) and
that Postgres's normalisation treats as a value (not a column position or a type modifier):
strings get a suffix, numbers grow by `k`. Text Postgres cannot scan or parse comes back as is.
"""

from __future__ import annotations

from pglast import parser as pgparser

from pgwarden.proxy.guard.tokens import Constant, scan_sql


def changed(constant: Constant, k: int) -> str:
    if constant.kind == "string":
        return constant.text[:-1] + f"v{k}'"
    if constant.kind in ("integer", "bigint"):
        return str(int(constant.text) + k)
    return f"{constant.text}{k}"


def splice(sql: str, constants: tuple[Constant, ...], replacements: dict[int, str]) -> str:
    out, position = [], 0
    for index, constant in enumerate(constants):
        out.append(sql[position:constant.start])
        out.append(replacements.get(index, constant.text))
        position = constant.end
    out.append(sql[position:])
    return "".join(out)


def value_variant(sql: str, k: int) -> str:
    scanned = scan_sql(sql)
    if scanned is None:
        return sql
    try:
        normalized = pgparser.normalize(sql)
    except pgparser.ParseError:
        return sql
    values = {}
    for index, constant in enumerate(scanned.constants):
        if constant.pinned:
            continue
        candidate = changed(constant, k)
        try:
            if pgparser.normalize(splice(sql, scanned.constants, {index: candidate})) == normalized:
                values[index] = candidate
        except pgparser.ParseError:
            continue
    return splice(sql, scanned.constants, values)
