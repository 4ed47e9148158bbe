"""Load and validate policy files into a `PolicySet`. A policy with any problem is never loaded.

Checks, each reported with file, line and rule id:
YAML syntax and duplicate keys; the version-1 schema (unknown keys, types, effects, mask kinds
and their parameters); CEL syntax; variables other than `principal`, `request`, `sql`, `now`
(row filters: only `principal` and `now`); unknown functions; each expression evaluated once
on a sample activation (errors that only depend on the data — a missing key, a type mismatch
— are accepted, since real principals differ from the sample); relation and tool globs;
mask/filter columns written `schema.table.column`; masks the guard's mask library refuses;
with a catalog, tables, masked and filtered columns the catalog does not have; duplicate rule
ids across all files; conflicting `search_path`s.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from pgwarden.proxy.guard.model import Mask
from pgwarden.proxy.policy import activation as act
from pgwarden.proxy.policy import cel_inspect, cel_runtime, globs, yaml_source
from pgwarden.proxy.policy.cel_runtime import CelCompileError, CelEvaluationError
from pgwarden.proxy.policy.engine import PolicySet, filter_values
from pgwarden.proxy.policy.errors import PolicyError, Problem
from pgwarden.proxy.policy.rules import RowFilterRule, Rule, compile_condition
from pgwarden.proxy.policy.schema import PolicyFileSpec, RuleSpec

DEFAULT_SEARCH_PATH = ("public",)
_DATA_DEPENDENT = ("missing key", "no matching overload")
_FUNCTION_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")


class ColumnCatalog(Protocol):
    """What the loader needs of a catalog (the guard's `Catalog` fits)."""

    def columns(self, relation: str) -> tuple[str, ...] | None: ...


def policy_files(paths: Iterable[Path | str]) -> list[Path]:
    """Expand `paths`: a directory stands for its `*.yaml`/`*.yml` files, minus `*_test.yaml`."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.suffix in (".yaml", ".yml") and not p.stem.endswith("_test") and p.is_file())
            out.extend(found)
        else:
            out.append(path)
    return list(dict.fromkeys(out))


def revision_of(contents: Sequence[bytes]) -> str:
    """sha256 over the files' contents in load order (names excluded: replicas agree)."""
    digest = hashlib.sha256()
    for content in contents:
        digest.update(len(content).to_bytes(8, "big"))
        digest.update(content)
    return digest.hexdigest()


def load_policy(paths: Sequence[Path | str], *, catalog: ColumnCatalog | None = None) -> PolicySet:
    """Load every policy file in `paths` as one policy set; raise `PolicyError` on any problem."""
    files = policy_files(paths)
    if not files:
        raise PolicyError([Problem("<none>", None, None, "no policy files given")])
    texts: list[tuple[str, str]] = []
    problems: list[Problem] = []
    contents: list[bytes] = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            problems.append(Problem(str(path), None, None, f"cannot read file ({exc.strerror or 'error'})"))
            continue
        try:
            texts.append((str(path), raw.decode("utf-8")))
        except UnicodeDecodeError:
            problems.append(Problem(str(path), None, None, "file is not UTF-8"))
            continue
        contents.append(raw)
    if problems:
        raise PolicyError(problems)
    return load_policy_texts(texts, catalog=catalog, revision=revision_of(contents))


def load_policy_texts(texts: Sequence[tuple[str, str]], *, catalog: ColumnCatalog | None = None,
                      revision: str | None = None) -> PolicySet:
    """Load policy documents given as `(name, text)` pairs; raise `PolicyError` on any problem."""
    problems: list[Problem] = []
    rules: list[Rule] = []
    search_paths: list[tuple[str, tuple[str, ...]]] = []
    seen: dict[str, str] = {}
    for name, text in texts:
        file_rules, search_path, ids = _load_file(name, text, catalog, problems)
        if search_path is not None:
            search_paths.append((name, search_path))
        for rule_id, line in ids:
            if rule_id in seen:
                problems.append(Problem(name, line, rule_id,
                                        f"duplicate rule id (first defined at {seen[rule_id]})"))
            else:
                seen[rule_id] = f"{name}:{line}"
        rules.extend(file_rules)
    distinct = {sp for _, sp in search_paths}
    if len(distinct) > 1:
        problems.append(Problem(search_paths[1][0], None, None,
                                "search_path differs between policy files; set it in one file only"))
    if problems:
        raise PolicyError(problems)
    if revision is None:
        revision = revision_of([text.encode("utf-8") for _, text in texts])
    search_path = next(iter(distinct)) if distinct else DEFAULT_SEARCH_PATH
    return PolicySet(rules, revision=revision, files=[n for n, _ in texts], search_path=search_path)


def _load_file(name: str, text: str, catalog: ColumnCatalog | None, problems: list[Problem]
               ) -> tuple[list[Rule], tuple[str, ...] | None, list[tuple[str, int | None]]]:
    doc = yaml_source.load(text, name)
    problems.extend(doc.problems)
    if doc.data is None:
        return [], None, []
    data = doc.data
    if not isinstance(data, dict):
        problems.append(Problem(name, 1, None, "a policy file is a mapping with 'version' and 'rules'"))
        return [], None, []
    if "version" not in data:
        problems.append(Problem(name, 1, None, "missing 'version' (this format is version 1)"))
        return [], None, []
    if data["version"] != 1 or isinstance(data["version"], bool):
        problems.append(Problem(name, doc.line(("version",)), None,
                                f"unsupported version {data['version']!r} (this pgwarden reads version 1)"))
        return [], None, []
    try:
        spec = PolicyFileSpec.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            problems.append(Problem(name, doc.line(loc), _rule_id_at(data, loc), _message(error, loc)))
        return [], None, []
    search_path = tuple(spec.search_path) if spec.search_path is not None else None
    if search_path is not None:
        for schema in search_path:
            if not re.match(r"^[a-z_][a-z0-9_$]*$", schema):
                problems.append(Problem(name, doc.line(("search_path",)), None,
                                        f"search_path entry {schema!r} is not a plain schema name"))
    ids = [(r["id"], doc.line(("rules", i)))
           for i, r in enumerate(spec.rules) if isinstance(r.get("id"), str)]
    rules = []
    for index, raw_rule in enumerate(spec.rules):
        try:
            rule_spec = RuleSpec.model_validate(raw_rule)
        except ValidationError as exc:
            for error in exc.errors():
                loc = ("rules", index, *error["loc"])
                problems.append(Problem(name, doc.line(loc), _rule_id_at(data, loc),
                                        _message(error, tuple(error["loc"]))))
            continue
        checker = _RuleChecker(name, doc, index, rule_spec, catalog, problems)
        rule = checker.compile()
        if rule is not None:
            rules.append(rule)
    return rules, search_path, ids


def _rule_id_at(data: Any, loc: tuple[Any, ...]) -> str | None:
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        try:
            rule_id = data["rules"][loc[1]].get("id")
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
        return rule_id if isinstance(rule_id, str) else None
    return None


def _message(error: Any, loc_parts: tuple[Any, ...]) -> str:
    loc = ".".join(str(p) for p in loc_parts if not isinstance(p, int))
    text = str(error["msg"])
    if error.get("type") == "extra_forbidden":
        text = "unknown key"
    elif error.get("type") == "missing":
        text = "required key is missing"
    text = text.removeprefix("Value error, ")
    return f"{loc}: {text}" if loc else text


class _RuleChecker:
    """Validate and compile one rule, appending problems instead of stopping at the first."""

    def __init__(self, file: str, doc: yaml_source.Document, index: int, spec: RuleSpec,
                 catalog: ColumnCatalog | None, problems: list[Problem]) -> None:
        self.file, self.doc, self.index, self.spec = file, doc, index, spec
        self.catalog, self.problems = catalog, problems
        self.ok = True

    def problem(self, path: tuple[str | int, ...], message: str) -> None:
        self.ok = False
        line = self.doc.line(("rules", self.index, *path))
        self.problems.append(Problem(self.file, line, self.spec.id, message))

    def compile(self) -> Rule | None:
        spec = self.spec
        for i, pattern in enumerate(spec.tools):
            problem = globs.tool_glob_problem(pattern)
            if problem:
                self.problem(("tools", i), problem)
        for i, pattern in enumerate(spec.tables):
            problem = globs.relation_glob_problem(pattern)
            if problem:
                self.problem(("tables", i), problem)
            elif self.catalog is not None and not globs.has_wildcard(pattern) \
                    and self.catalog.columns(pattern) is None:
                self.problem(("tables", i), f"table {pattern} is not in the catalog")
        for i, function in enumerate(spec.functions):
            if not _FUNCTION_NAME.match(function):
                self.problem(("functions", i), f"function name {function!r} must be a lower-case name")
        masks = self._masks()
        row_filters = self._row_filters()
        condition = self._condition()
        if not self.ok or condition is None:
            return None
        return Rule(
            id=spec.id, effect=spec.effect, condition=condition, description=spec.description,
            reason=spec.reason, methods=frozenset(spec.methods), tools=tuple(spec.tools),
            tables=tuple(spec.tables), masks=masks, row_filters=tuple(row_filters),
            row_cap=spec.row_cap, functions=frozenset(spec.functions), file=self.file,
            line=self.doc.line(("rules", self.index)),
        )

    def _column(self, path: tuple[str | int, ...], name: str, what: str) -> tuple[str, str] | None:
        if not globs.is_column_name(name):
            self.problem(path, f"{what} {name!r} must name a column as schema.table.column")
            return None
        relation, column = name.rsplit(".", 1)
        if self.catalog is not None:
            columns = self.catalog.columns(relation)
            if columns is None:
                self.problem(path, f"{what} {name}: table {relation} is not in the catalog")
                return None
            if column not in columns:
                self.problem(path, f"{what} {name}: table {relation} has no column {column!r}")
                return None
        return relation, column

    def _masks(self) -> dict[str, dict[str, Mask]]:
        from pgwarden.proxy.guard.functions import DEFAULT_ALLOWED_FUNCTIONS
        from pgwarden.proxy.guard.masks import validate_mask

        allowed = DEFAULT_ALLOWED_FUNCTIONS | frozenset(self.spec.functions)
        out: dict[str, dict[str, Mask]] = {}
        for name, mask_spec in self.spec.masks.items():
            path = ("masks", name)
            target = self._column(path, name, "mask")
            mask = Mask(mask_spec.kind, mask_spec.params())
            try:
                validate_mask(mask, allowed)
            except ValueError as exc:
                self.problem(path, f"mask {name}: {exc}")
                continue
            if target is not None:
                out.setdefault(target[0], {})[target[1]] = mask
        return out

    def _row_filters(self) -> list[RowFilterRule]:
        out = []
        for name, source in self.spec.row_filters.items():
            path = ("row_filters", name)
            target = self._column(path, name, "row filter")
            program = self._expression(path, source, act.ROW_FILTER_VARIABLES, "row filter")
            if program is None or target is None:
                continue
            try:
                filter_values(program.evaluate(act.sample()))
            except CelEvaluationError as exc:
                if not exc.summary.startswith(_DATA_DEPENDENT):
                    self.problem(path, f"row filter fails on a sample principal: {exc.summary}")
                    continue
            except TypeError as exc:
                self.problem(path, f"row filter on a sample principal: {exc}")
                continue
            reads = cel_inspect.references(cel_runtime.parse(source)).variables & act.ROW_FILTER_VARIABLES
            out.append(RowFilterRule(target[0], target[1], program, frozenset(reads)))
        return out

    def _expression(self, path: tuple[str | int, ...], source: str, variables: frozenset[str],
                    what: str) -> cel_runtime.Program | None:
        try:
            tree = cel_runtime.parse(source)
        except CelCompileError as exc:
            where = f" at line {exc.line}, column {exc.column}" if exc.line is not None else ""
            self.problem(path, f"{what}: CEL syntax error{where}")
            return None
        refs = cel_inspect.references(tree)
        unknown = sorted(refs.variables - variables - cel_runtime.TYPE_NAMES)
        if unknown:
            self.problem(path, f"{what}: unknown variable{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(unknown)} (known: {', '.join(sorted(variables))})")
        functions = sorted(refs.functions - cel_runtime.KNOWN_FUNCTIONS)
        if functions:
            self.problem(path, f"{what}: unknown function{'s' if len(functions) > 1 else ''} "
                               f"{', '.join(functions)}")
        if unknown or functions:
            return None
        try:
            return cel_runtime.compile_program(source, tree)
        except CelCompileError as exc:
            self.problem(path, f"{what}: {exc}")
            return None

    def _condition(self) -> Any:
        path = ("when",)
        program = self._expression(path, self.spec.when, act.VARIABLES, "condition")
        if program is None:
            return None
        try:
            condition = compile_condition(self.spec.when)
        except CelCompileError as exc:
            self.problem(path, f"condition: {exc}")
            return None
        try:
            condition.evaluate(act.sample())
        except CelEvaluationError as exc:
            if not exc.summary.startswith(_DATA_DEPENDENT):
                self.problem(path, f"condition fails on a sample activation: {exc.summary}")
                return None
        return condition
