"""`pgwarden policy`: check, test and explain policy files.

    pgwarden policy check policies/default.yaml
    pgwarden policy test policies/
    pgwarden policy explain --policy policies/analyst.yaml --principal '{"roles": ["analyst"]}' \\
        --tool query --sql 'SELECT count(*) FROM orders' --json

`explain` and `test` need a catalog (table → columns) to apply masks: `--catalog-dsn` (or
PGWARDEN_CATALOG_DSN), else a test file's declared columns, else the embedded demo database,
whose DSN the `pgwarden` entry point provides (this package never imports the server).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pgwarden.proxy.guard import Catalog
from pgwarden.proxy.policy.errors import PolicyError, Problem
from pgwarden.proxy.policy.explain import explain_call
from pgwarden.proxy.policy.loader import load_policy, policy_files
from pgwarden.proxy.policy.testing import FileResult, TestFile, catalog_for, discover, run_test_file

DEMO_DSN_KEY = "pgwarden.demo_dsn"
CATALOG_ENV = "PGWARDEN_CATALOG_DSN"

catalog_option = click.option(
    "--catalog-dsn", envvar=CATALOG_ENV, default=None, metavar="DSN",
    help=f"Database to read table columns from (read-only). Env: {CATALOG_ENV}.")


def _default_dsn() -> Callable[[], str] | None:
    ctx = click.get_current_context(silent=True)
    provider = ctx.meta.get(DEMO_DSN_KEY) if ctx is not None else None
    return provider if callable(provider) else None


def _print_problems(console: Console, problems: tuple[Problem, ...] | list[Problem]) -> None:
    for problem in problems:
        console.print(f"[red]error[/red] {problem}", highlight=False, markup=True, soft_wrap=True)


@click.group("policy")
def policy() -> None:
    """Check, test and explain pgwarden policy files (YAML with CEL)."""


@policy.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@catalog_option
def check(paths: tuple[Path, ...], catalog_dsn: str | None) -> None:
    """Validate policy files as one policy set; exit 1 with file:line messages on problems.

    With --catalog-dsn, tables and masked or filtered columns are checked against it.
    """
    console = Console(stderr=False)
    catalog = Catalog.from_dsn(catalog_dsn) if catalog_dsn else None
    try:
        loaded = load_policy(list(paths), catalog=catalog)
    except PolicyError as error:
        _print_problems(Console(stderr=True), error.problems)
        count = len(error.problems)
        click.echo(f"{count} problem{'s' if count != 1 else ''}; the policy would not be loaded", err=True)
        sys.exit(1)
    files = ", ".join(str(p) for p in policy_files(list(paths)))
    console.print(f"ok: {len(loaded.rules)} rules in {files} (revision {loaded.revision[:12]})",
                  highlight=False)


@policy.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@catalog_option
@click.option("-v", "--verbose", is_flag=True, help="Show passing cases too.")
def test(paths: tuple[Path, ...], catalog_dsn: str | None, verbose: bool) -> None:
    """Run the `<name>_test.yaml` cases beside each policy file (or the test files given)."""
    console = Console()
    test_files = discover(list(paths))
    if not test_files:
        click.echo("no policy test files found (expected <name>_test.yaml beside <name>.yaml)", err=True)
        sys.exit(2)
    default = _default_dsn()

    def factory(spec: TestFile) -> Catalog | None:
        return catalog_for(spec, catalog_dsn, default)

    results = [run_test_file(path, catalog_factory=factory) for path in test_files]
    total = sum(len(r.cases) for r in results)
    failed = sum(1 for r in results for c in r.cases if not c.passed)
    broken = [r for r in results if r.problems]
    for result in results:
        _report(console, result, verbose)
    summary = f"{total - failed} passed, {failed} failed"
    if broken:
        summary += f", {len(broken)} file(s) could not run"
    console.print(("[green]" if not failed and not broken else "[red]") + summary, highlight=False)
    sys.exit(0 if not failed and not broken else 1)


def _report(console: Console, result: FileResult, verbose: bool) -> None:
    console.print(f"[bold]{result.test_file}[/bold]", highlight=False)
    if result.problems:
        _print_problems(console, result.problems)
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("", width=4)
    table.add_column("case")
    table.add_column("details", overflow="fold")
    for case in result.cases:
        if case.passed and not verbose:
            continue
        status = "[green]ok[/green]" if case.passed else "[red]FAIL[/red]"
        where = f" (line {case.line})" if case.line else ""
        details = "\n".join(case.failures)
        if case.passed and case.explanation is not None:
            e = case.explanation
            details = f"{e.effect} {', '.join(e.decision.rules) if e.decision else ''} {e.reason_code or ''}"
        table.add_row(status, case.name + where, details)
    if table.row_count:
        console.print(table)
    passed = sum(1 for c in result.cases if c.passed)
    console.print(f"  {passed}/{len(result.cases)} cases passed", highlight=False)


@policy.command("explain")
@click.option("--policy", "policy_paths", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Policy file or directory (repeatable: one policy set).")
@click.option("--principal", "principal_json", required=True, metavar="JSON",
              help='The caller, e.g. \'{"id": "ann", "roles": ["analyst"], "tenant": 1}\'.')
@click.option("--tool", required=True, help="Tool name (or prompt name / resource URI with --method).")
@click.option("--sql", default=None, help="The statement (the `sql` argument of the tool).")
@click.option("--arguments", "arguments_json", default=None, metavar="JSON", help="Other tool arguments.")
@click.option("--method", default="tools/call", show_default=True)
@click.option("--upstream", default="", help="Upstream name as the proxy would report it.")
@click.option("--now", "now_text", default=None, metavar="ISO-8601", help="Decision time (default: now).")
@catalog_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def explain(policy_paths: tuple[Path, ...], principal_json: str, tool: str, sql: str | None,
            arguments_json: str | None, method: str, upstream: str, now_text: str | None,
            catalog_dsn: str | None, as_json: bool) -> None:
    """Show the decision a call would get: effect, rules, reason, obligations, rewritten SQL."""
    principal = _json_object(principal_json, "--principal")
    arguments = _json_object(arguments_json, "--arguments") if arguments_json else {}
    now = _parse_now(now_text)
    dsn = catalog_dsn
    if dsn is None:
        default = _default_dsn()
        dsn = default() if default is not None else None
    catalog = Catalog.from_dsn(dsn) if dsn else None
    try:
        loaded = load_policy(list(policy_paths), catalog=catalog)
    except PolicyError as error:
        _print_problems(Console(stderr=True), error.problems)
        sys.exit(1)
    outcome = explain_call(loaded, principal, tool=tool, arguments=arguments, sql=sql, method=method,
                           upstream=upstream, catalog=catalog, now=now)
    data = outcome.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    _print_explanation(Console(), data)


def _print_explanation(console: Console, data: dict[str, Any]) -> None:
    colour = "green" if data["effect"] == "allow" else "red"
    console.print(f"[bold {colour}]{data['effect'].upper()}[/bold {colour}]  (settled at: {data['stage']})")
    console.print(f"rules:      {', '.join(data['rules']) or '-'}", highlight=False)
    code = f"  [{data['reason_code']}]" if data["reason_code"] else ""
    console.print(f"reason:     {data['reason']}{code}", highlight=False, markup=False)
    for error in data["errors"]:
        console.print(f"error:      rule {error['rule']}: {error['message']}", highlight=False, markup=False)
    console.print(f"relations:  {', '.join(data['relations']) or '-'}", highlight=False)
    obligations = data["obligations"]
    if obligations and data["effect"] == "allow":
        masks = ", ".join(f"{col} ({spec['kind']})" for col, spec in obligations["masks"].items())
        filters = ", ".join(f"{rel}.{f['column']} in {f['values']}"
                            for rel, fs in obligations["row_filters"].items() for f in fs)
        console.print(f"masks:      {masks or '-'}", highlight=False, markup=False)
        console.print(f"row filter: {filters or '-'}", highlight=False, markup=False)
        console.print(f"row cap:    {obligations['row_cap'] if obligations['row_cap'] is not None else '-'}",
                      highlight=False)
    if data["sql"]:
        console.print("sql:", highlight=False)
        console.print(data["sql"], highlight=False, markup=False, soft_wrap=True)


def _json_object(text: str | None, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg})", param_hint=option) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return value


def _parse_now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("not an ISO-8601 time", param_hint="--now") from None
