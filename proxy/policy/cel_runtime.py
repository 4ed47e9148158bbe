"""CEL for policies: one environment, one runner class, compiled programs that are safe to share.

cel-python 0.5's `CompiledRunner` transpiles an expression to Python. Used as shipped it has
three problems for a policy engine, fixed here in one place:

* it executes the program in the `celpy.evaluation` module's globals and stores the activation
  there, so two threads evaluating at once see each other's data (FACTS.md: denies turned into
  allows). `Program` instead wraps the generated statements in a function that takes the
  activation as an argument and runs in a private copy of those globals: nothing shared is
  written during an evaluation;
* `has(x)` yields a Python `bool`, which `&&`/`||` refuse next to an error value, so the
  common guard `has(a.b) && a.b == 1` errors when `b` is missing. The generated line is
  rewritten to return a CEL `BoolType`;
* extension functions are emitted as `<module>.<name>(...)`, which only resolves for
  functions defined in `celpy.evaluation`. Ours are published under one namespace name,
  `_pgwarden_cel`, present in the private globals.

The parser is a process-wide singleton whose tree class is fixed by the first `Environment`
(FACTS.md); `environment()` creates ours once and refuses to run if another runner class got
there first, rather than crash later.

Error text from cel-python embeds values of the activation (a principal's claims, a query's
arguments). `error_summary` maps an error to a short, fixed message; nothing else from the
error is ever shown or logged. The `celpy` loggers are silenced for the same reason: at DEBUG
they print whole activations, at ERROR the arguments of a failing call.
"""

from __future__ import annotations

import logging
import re
import textwrap
import types
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

import celpy
import celpy.evaluation as cel_eval
from celpy import celtypes
from celpy.celparser import CELParseError, CELParser

from pgwarden.proxy.policy import cel_functions

logging.getLogger("celpy").setLevel(logging.CRITICAL + 1)

NAMESPACE = "_pgwarden_cel"

# `has()` as transpiled by cel-python: a Python bool. Rewritten to a CEL BoolType.
_HAS_LINE = re.compile(
    r"^(?P<lhs>ex_\d+) = lambda activation: "
    r"(?P<test>not isinstance\(celpy\.evaluation\.result\(activation, ex_\d+_h\), CELEvalError\))$",
    re.MULTILINE,
)
_RESULT_LINE = re.compile(r"^CEL = celpy\.evaluation\.result\(base_activation, ", re.MULTILINE)

CelValue = Any  # a celtypes value (celpy's own Value alias is a large Union)


class CelCompileError(ValueError):
    """An expression that does not parse or cannot be turned into a program."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class CelEvaluationError(Exception):
    """An expression failed to evaluate. `summary` is short and holds no activation data."""

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


def _published_functions() -> dict[str, Callable[..., Any]]:
    functions: dict[str, Callable[..., Any]] = {}
    for name, fn in cel_functions.FUNCTIONS.items():
        fn.__module__ = NAMESPACE
        fn.__qualname__ = fn.__name__
        functions[name] = fn
    return functions


FUNCTIONS: dict[str, Callable[..., Any]] = _published_functions()
_GLOBALS: dict[str, Any] = dict(vars(cel_eval))
_GLOBALS[NAMESPACE] = types.SimpleNamespace(**{fn.__name__: fn for fn in FUNCTIONS.values()})

# Names an expression may use without declaring them: functions, macros and type names.
KNOWN_FUNCTIONS: frozenset[str] = frozenset(
    {name for name in cel_eval.base_functions if name[0].isalpha()} | set(FUNCTIONS)
    | {"has", "dyn", "all", "exists", "exists_one", "map", "filter"}
)
TYPE_NAMES: frozenset[str] = frozenset(
    {"bool", "bytes", "double", "duration", "int", "list", "map", "null_type", "string",
     "timestamp", "type", "uint"}
)
MACROS: frozenset[str] = frozenset({"all", "exists", "exists_one", "map", "filter"})


class _PolicyRunner(celpy.CompiledRunner):
    """A compiled program that takes its activation as an argument (see module docstring)."""

    def __init__(self, environment: celpy.Environment, ast: Any,
                 functions: dict[str, Any] | None = None) -> None:
        super().__init__(environment, ast, functions)
        source = _HAS_LINE.sub(r"\g<lhs> = lambda activation: celpy.celtypes.BoolType(\g<test>)",
                               self.tp.source_text)
        if len(_RESULT_LINE.findall(source)) != 1:
            raise CelCompileError("expression could not be compiled (unexpected program shape)")
        body = textwrap.indent(source, "    ")
        code = f"def _program(base_activation):\n{body}\n    return CEL\n"
        namespace = dict(_GLOBALS)
        exec(compile(code, "<policy expression>", "exec"), namespace)  # noqa: S102 - cel-python's own output
        self.program: Callable[[cel_eval.Activation], CelValue] = namespace["_program"]

    def evaluate(self, activation: Any) -> CelValue:
        value = self.program(activation)
        if isinstance(value, cel_eval.CELEvalError):
            raise value
        return value


@cache
def environment() -> celpy.Environment:
    """The one CEL environment of this process (compiled runner, our tree class)."""
    parser = CELParser.CEL_PARSER
    if parser is not None and parser.options.tree_class is not _PolicyRunner.tree_node_class:
        raise RuntimeError("cel-python's parser was already created for another runner class; "
                           "pgwarden policies need the compiled runner in every CEL user of the process")
    return celpy.Environment(runner_class=_PolicyRunner)


class Program:
    """A compiled CEL expression. `evaluate` is reentrant: nothing shared is written."""

    __slots__ = ("_runner", "ast", "source")

    def __init__(self, source: str, ast: Any, runner: _PolicyRunner) -> None:
        self.source = source
        self.ast = ast
        self._runner = runner

    def evaluate(self, activation: cel_eval.Activation) -> CelValue:
        """The expression's value; raises `CelEvaluationError` with a short summary on error."""
        try:
            value = self._runner.program(activation)
        except Exception as exc:  # a Python error escaping cel-python's own checks
            raise CelEvaluationError(error_summary(exc)) from None
        if isinstance(value, cel_eval.CELEvalError):
            raise CelEvaluationError(error_summary(value)) from None
        return value


def parse(source: str) -> Any:
    """Parse `source` to cel-python's tree; raises `CelCompileError` with the position."""
    env = environment()
    try:
        return env.compile(source)
    except CELParseError as exc:
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        raise CelCompileError("CEL syntax error", line=line, column=column) from None
    except Exception:  # lark may raise others on odd input
        raise CelCompileError("CEL syntax error") from None


def compile_program(source: str, ast: Any | None = None) -> Program:
    """Compile `source` (or its already-parsed `ast`) to a `Program`."""
    tree = parse(source) if ast is None else ast
    try:
        runner = environment().program(tree, functions=FUNCTIONS)
    except CelCompileError:
        raise
    except Exception:
        raise CelCompileError("expression could not be compiled") from None
    return Program(source, tree, cast(_PolicyRunner, runner))


def make_activation(values: Mapping[str, CelValue]) -> cel_eval.Activation:
    """An activation holding `values` (already CEL values), shared by every program of a call.

    Top-level variables are also set as attributes: the transpiled code reads `activation.x`,
    and an attribute skips cel-python's slow name resolution. Macros still find them through
    the activation's name container.
    """
    activation = cel_eval.Activation(functions=FUNCTIONS, vars=dict(values))
    for name, value in values.items():
        object.__setattr__(activation, name, value)
    return activation


# ---- values -------------------------------------------------------------------------------

_String = celtypes.StringType
_Map = celtypes.MapType
_new_str = str.__new__
_new_map = dict.__new__
_fill_map = dict.update


def to_cel(value: Any) -> CelValue:
    """Convert JSON-like Python data (plus datetime/timedelta) to CEL values.

    Faster than `celpy.json_to_cel` for the shapes an activation holds; tuples and frozensets
    become lists, mapping keys are stringified.
    """
    kind = type(value)
    if kind is str:
        return _new_str(_String, value)
    if kind is bool:
        return celtypes.BoolType(value)
    if kind is int:
        return celtypes.IntType(value)
    if kind is float:
        return celtypes.DoubleType(value)
    if value is None:
        return None
    if kind is dict or isinstance(value, Mapping):
        # MapType's own __init__ re-checks every key through the ABCs; the keys here are fresh
        # strings, so fill the dict directly.
        mapping = _new_map(_Map)
        _fill_map(mapping, {_new_str(_String, str(k)): to_cel(v) for k, v in value.items()})
        return mapping
    if kind is list or kind is tuple or isinstance(value, list | tuple | frozenset | set):
        return celtypes.ListType([to_cel(v) for v in value])
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return celtypes.TimestampType(stamp)
    if isinstance(value, timedelta):
        return celtypes.DurationType(value)
    if isinstance(value, str):
        return celtypes.StringType(str(value))
    if isinstance(value, bool):
        return celtypes.BoolType(bool(value))
    if isinstance(value, int):
        return celtypes.IntType(int(value))
    if isinstance(value, float):
        return celtypes.DoubleType(float(value))
    if isinstance(value, bytes):
        return celtypes.BytesType(value)
    raise TypeError(f"cannot pass a {kind.__name__} to a policy expression")


def from_cel_scalar(value: CelValue) -> str | int | float | bool:
    """A CEL scalar as a plain Python value; raises TypeError for anything else (null, lists...)."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    raise TypeError("not a scalar")


# ---- errors ---------------------------------------------------------------------------------

_SUMMARIES: tuple[tuple[str, str], ...] = (
    ("no such member", "missing key or field (guard it with has())"),
    ("no such key", "missing key or field (guard it with has())"),
    ("divide by zero", "division by zero"),
    ("modulus by zero", "division by zero"),
    ("unbound function", "unknown function"),
    ("no such overload", "no matching overload (wrong value type)"),
    ("no matching overload", "no matching overload (wrong value type)"),
    ("invalid_argument", "invalid argument (for example an index out of range)"),
    ("undeclared reference", "unknown name"),
    ("return error for overflow", "integer overflow"),
    (cel_functions.BAD_PATTERN, "invalid relation pattern"),
)


def _innermost(exc: BaseException) -> BaseException:
    """cel-python nests errors as `CELEvalError(text, type, args)`; find the innermost one."""
    seen = 0
    while isinstance(exc, cel_eval.CELEvalError) and seen < 16:
        args = exc.args
        if len(args) >= 3 and isinstance(args[2], tuple) and args[2] and isinstance(args[2][0], str) \
                and args[1] is cel_eval.CELEvalError:
            exc = cel_eval.CELEvalError(*args[2])
            seen += 1
            continue
        break
    return exc


def error_summary(exc: BaseException) -> str:
    """A short, fixed description of an evaluation error; never any of its data."""
    inner = _innermost(exc)
    if isinstance(inner, cel_eval.CELEvalError) and inner.args and isinstance(inner.args[0], str):
        text = inner.args[0]
        for prefix, summary in _SUMMARIES:
            if text.startswith(prefix):
                return summary
        cause = inner.args[1] if len(inner.args) > 1 else None
        if cause is ZeroDivisionError:
            return "division by zero"
        if cause is KeyError:
            return "missing key or field (guard it with has())"
        if cause is TypeError:
            return "no matching overload (wrong value type)"
        if cause is IndexError:
            return "invalid argument (for example an index out of range)"
        return "evaluation error"
    if isinstance(inner, RecursionError):
        return "expression too deeply nested"
    return "evaluation error"
