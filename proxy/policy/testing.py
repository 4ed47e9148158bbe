"""Policy tests: `<name>_test.yaml` beside `<name>.yaml`, run by `pgwarden policy test`.

    version: 1
    policies: [analyst.yaml]          # optional; default: the policy file beside this one
    catalog:                          # optional declared columns (else --catalog-dsn / demo db)
      public.customers: [id, name, email]
    principals:                       # optional named principals, reused by cases
      alice: {id: alice, roles: [analyst], tenant: 1}
    cases:
      - name: aggregates over orders are allowed
        principal: alice              # a name from `principals`, or an inline mapping
        tool: query                   # default "query"; method defaults to tools/call
        sql: SELECT count(*) FROM orders
        arguments: {}                 # for calls without SQL
        now: 2026-01-01T09:00:00Z     # optional decision time
        expect:
          effect: allow               # required; everything else is optional
          rules: [analyst.read]       # matched rule ids (as a set)
          reason_code: policy.deny
          reason_contains: HR
          masked_columns: [public.customers.email]   # as a set
          row_filters: [public.orders.tenant_id]     # as a set
          row_cap: 1000
          relations: [public.orders]
          sql: SELECT ...             # the exact rewritten SQL
          sql_contains: ["LIMIT 1000"]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pgwarden.proxy.guard import Catalog
from pgwarden.proxy.policy import yaml_source
from pgwarden.proxy.policy.errors import PolicyError, Problem
from pgwarden.proxy.policy.explain import Explanation, explain_call
from pgwarden.proxy.policy.loader import load_policy

TEST_SUFFIX = "_test"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Expect(_Model):
    effect: Literal["allow", "deny"]
    rules: list[str] | None = None
    reason_code: str | None = None
    reason_contains: str | None = None
    masked_columns: list[str] | None = None
    row_filters: list[str] | None = None
    row_cap: int | None = Field(default=None)
    relations: list[str] | None = None
    sql: str | None = None
    sql_contains: list[str] | None = None


class Case(_Model):
    name: str
    principal: str | dict[str, Any]
    method: str = "tools/call"
    tool: str = "query"
    sql: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    upstream: str = ""
    now: datetime | None = None
    expect: Expect


class TestFile(_Model):
    version: Literal[1]
    policies: list[str] | None = None
    catalog: dict[str, list[str]] | None = None
    principals: dict[str, dict[str, Any]] = Field(default_factory=dict)
    cases: list[Case] = Field(min_length=1)


@dataclass
class CaseResult:
    name: str
    line: int | None
    failures: list[str] = field(default_factory=list)
    explanation: Explanation | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class FileResult:
    test_file: Path
    policy_files: list[Path]
    cases: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)   # the test file or policy did not load

    @property
    def passed(self) -> bool:
        return not self.problems and all(c.passed for c in self.cases)


def test_file_for(policy: Path) -> Path:
    return policy.with_name(f"{policy.stem}{TEST_SUFFIX}{policy.suffix}")


def discover(paths: list[Path]) -> list[Path]:
    """Test files for `paths`: a test file itself, the test beside a policy, all tests in a dir."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.is_file() and p.stem.endswith(TEST_SUFFIX)
                                and p.suffix in (".yaml", ".yml")))
            continue
        if path.stem.endswith(TEST_SUFFIX):
            found.append(path)
            continue
        candidate = test_file_for(path)
        if candidate.exists():
            found.append(candidate)
    return list(dict.fromkeys(found))


def run_test_file(path: Path, *, catalog_factory: Callable[[TestFile], Catalog | None]) -> FileResult:
    """Load the test file and its policy, run every case. Never raises for a failing case."""
    result = FileResult(path, [])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        result.problems.append(Problem(str(path), None, None, "cannot read the test file"))
        return result
    doc = yaml_source.load(text, str(path))
    if doc.problems or doc.data is None:
        result.problems.extend(doc.problems or [Problem(str(path), None, None, "empty test file")])
        return result
    try:
        spec = TestFile.model_validate(doc.data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            where = ".".join(str(p) for p in loc)
            result.problems.append(Problem(str(path), doc.line(loc), None, f"{where}: {error['msg']}"))
        return result
    if spec.policies:
        result.policy_files = [path.parent / p for p in spec.policies]
    else:
        stem = path.stem.removesuffix(TEST_SUFFIX)
        result.policy_files = [path.with_name(stem + path.suffix)]
    try:
        catalog = catalog_factory(spec)
        policy = load_policy(result.policy_files, catalog=catalog)
    except PolicyError as error:
        result.problems.extend(error.problems)
        return result
    except Exception as exc:  # the catalog database is unreachable, ...
        result.problems.append(Problem(str(path), None, None,
                                       f"cannot prepare the catalog: {type(exc).__name__}"))
        return result
    for index, case in enumerate(spec.cases):
        result.cases.append(_run_case(policy, catalog, spec, case, doc.line(("cases", index))))
    return result


def _run_case(policy: Any, catalog: Catalog | None, spec: TestFile, case: Case,
              line: int | None) -> CaseResult:
    out = CaseResult(case.name, line)
    if isinstance(case.principal, str):
        principal = spec.principals.get(case.principal)
        if principal is None:
            out.failures.append(f"unknown principal {case.principal!r}")
            return out
    else:
        principal = case.principal
    now = case.now.astimezone(UTC) if case.now is not None and case.now.tzinfo else case.now
    explanation = explain_call(policy, principal, tool=case.tool, arguments=case.arguments, sql=case.sql,
                               method=case.method, upstream=case.upstream, catalog=catalog, now=now)
    out.explanation = explanation
    out.failures.extend(compare(case.expect, explanation))
    return out


def compare(expect: Expect, got: Explanation) -> list[str]:
    """Differences between what a case expects and what the call got (empty when it passes)."""
    failures: list[str] = []

    def check(label: str, wanted: Any, actual: Any) -> None:
        if wanted != actual:
            failures.append(f"{label}: expected {wanted!r}, got {actual!r}")

    check("effect", expect.effect, got.effect)
    rules = set(got.decision.rules) if got.decision else set()
    if expect.rules is not None:
        check("rules", sorted(set(expect.rules)), sorted(rules))
    if expect.reason_code is not None:
        check("reason_code", expect.reason_code, got.reason_code)
    if expect.reason_contains is not None and expect.reason_contains not in got.reason:
        failures.append(f"reason: expected it to contain {expect.reason_contains!r}, got {got.reason!r}")
    if expect.masked_columns is not None:
        check("masked_columns", sorted(set(expect.masked_columns)), sorted(set(got.masked_columns)))
    if expect.row_filters is not None:
        check("row_filters", sorted(set(expect.row_filters)), sorted(set(got.row_filters)))
    if "row_cap" in expect.model_fields_set:
        check("row_cap", expect.row_cap, got.row_cap)
    if expect.relations is not None:
        check("relations", sorted(expect.relations), sorted(got.analysis.relations if got.analysis else ()))
    sql = got.rewrite.sql if got.rewrite else None
    if expect.sql is not None:
        check("sql", " ".join(expect.sql.split()), " ".join(sql.split()) if sql else None)
    for piece in expect.sql_contains or ():
        if sql is None or piece not in sql:
            failures.append(f"sql: expected it to contain {piece!r}, got {sql!r}")
    if got.effect == "allow" and got.decision is not None:
        for error in got.decision.errors:  # an allowed call should not hide a broken rule
            failures.append(f"rule {error.rule_id} failed to evaluate: {error.message}")
    return failures


def declared_catalog(spec: TestFile) -> Catalog | None:
    return Catalog.from_mapping(spec.catalog) if spec.catalog else None


def catalog_for(spec: TestFile, dsn: str | None, default_dsn: Callable[[], str] | None) -> Catalog | None:
    """The catalog of a test run: --catalog-dsn, else the file's declared columns, else the demo db."""
    if dsn:
        return Catalog.from_dsn(dsn)
    declared = declared_catalog(spec)
    if declared is not None:
        return declared
    if default_dsn is not None:
        return Catalog.from_dsn(default_dsn())
    return None
