"""Static facts about a parsed CEL expression, found by walking cel-python's parse tree.

Used at load time (unknown variables and functions are reported with the rule id before any
evaluation) and to split a condition into its top-level `&&` conjuncts, so the listing
questions (`may_call_tool`, `may_read_relation`) can evaluate the parts that do not depend on
the call's SQL or arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lark import Token, Tree

from pgwarden.proxy.policy.cel_runtime import MACROS

# Fields of `request` that are known before the call's arguments are (tools/list, resources).
CALL_INDEPENDENT_REQUEST_FIELDS = frozenset({"method", "tool", "upstream"})


@dataclass
class References:
    """Names an expression uses: free variables, functions/methods, and which `request` fields."""

    variables: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    request_fields: set[str] = field(default_factory=set)   # "*" when used other than request.<f>

    @property
    def call_dependent(self) -> bool:
        """True when the value can depend on the SQL or the arguments of the call."""
        return "sql" in self.variables or bool(self.request_fields - CALL_INDEPENDENT_REQUEST_FIELDS)


def _bare_ident(node: Any) -> str | None:
    """The identifier when `node` is just a name (through the grammar's single-child chain)."""
    while isinstance(node, Tree):
        if node.data == "ident":
            token = node.children[0]
            return str(token.value) if isinstance(token, Token) else None
        if len(node.children) != 1:
            return None
        node = node.children[0]
    return None


def references(tree: Any) -> References:
    """Collect the free variables, called functions and `request` fields of an expression."""
    refs = References()
    _walk(tree, frozenset(), refs)
    return refs


def _token(node: Any) -> str:
    return str(node.value) if isinstance(node, Token) else ""


def _walk(node: Any, bound: frozenset[str], refs: References) -> None:
    if not isinstance(node, Tree):
        return
    data = node.data
    children: list[Any] = list(node.children)
    if data in ("ident", "dot_ident"):
        name = _token(children[0])
        if data == "dot_ident" or name not in bound:
            refs.variables.add(name)
            if name == "request":
                refs.request_fields.add("*")
        return
    if data in ("ident_arg", "dot_ident_arg"):
        refs.functions.add(_token(children[0]))
        for child in children[1:]:
            _walk(child, bound, refs)
        return
    if data == "member_dot":
        target, name = children[0], _token(children[1])
        root = _bare_ident(target)
        if root == "request" and "request" not in bound:
            refs.variables.add("request")
            refs.request_fields.add(name)
            return
        _walk(target, bound, refs)
        return
    if data == "member_dot_arg":
        target, method = children[0], _token(children[1])
        args = children[2].children if len(children) > 2 and isinstance(children[2], Tree) else []
        _walk(target, bound, refs)
        if method in MACROS and len(args) >= 2:
            variable = _bare_ident(args[0])
            if variable is None:
                refs.functions.add(method)  # malformed macro: let the compiler report it
                for arg in args:
                    _walk(arg, bound, refs)
                return
            for arg in args[1:]:
                _walk(arg, bound | {variable}, refs)
            return
        refs.functions.add(method)
        for arg in args:
            _walk(arg, bound, refs)
        return
    for child in children:
        _walk(child, bound, refs)


_PASS_THROUGH = {"expr", "conditionalor", "relation", "addition", "multiplication", "unary",
                 "member", "primary"}


def conjuncts(tree: Any) -> list[Any]:
    """The top-level `&&` operands of an expression (parentheses unwrapped), in order.

    `a && (b && c)` gives `[a, b, c]`; `a || b` gives `[a || b]`.
    """
    out: list[Any] = []
    _split(tree, out)
    return out


def _split(node: Any, out: list[Any]) -> None:
    original = node
    while isinstance(node, Tree):
        if node.data == "conditionaland" and len(node.children) == 2:
            _split(node.children[0], out)
            _split(node.children[1], out)
            return
        if node.data == "paren_expr":
            node = node.children[0]
            continue
        if node.data in _PASS_THROUGH | {"conditionaland"} and len(node.children) == 1:
            node = node.children[0]
            continue
        break
    out.append(original)


def source_of(tree: Any, source: str) -> str:
    """The text of `tree` inside `source` (the parser keeps positions)."""
    meta = tree.meta
    return source[meta.start_pos:meta.end_pos]
