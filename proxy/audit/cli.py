"""`pgwarden audit`: verify, show and report on hash-chained audit logs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pgwarden.proxy.audit.log import chain_files
from pgwarden.proxy.audit.query import RecordFilter, parse_time, printable, sql_text
from pgwarden.proxy.audit.report import render_report
from pgwarden.proxy.audit.verify import iter_records, verify_files

LOG_ENV = "PGWARDEN_AUDIT_LOG"


def _files(files: Sequence[Path], log_path: str | None) -> list[Path]:
    if files:
        return list(files)
    if log_path:
        found = chain_files(Path(log_path))
        if found:
            return found
    raise click.UsageError(f"give audit files, or --log PATH (or ${LOG_ENV}) for a log's whole chain")


def _time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise click.BadParameter(
            "use ISO 8601 (2026-11-20T09:00) or a duration back from now (30m, 12h, 7d)"
        ) from None


_filters = [
    click.option("--principal", help="Only this principal id."),
    click.option("--decision", type=click.Choice(["allow", "deny"]), help="Only this effect."),
    click.option("--rule", help="Only decisions that matched this rule id."),
    click.option("--table", help="Only decisions touching this relation (schema.table or table)."),
    click.option("--since", callback=_time, help="From this time (ISO 8601, or 30m / 12h / 7d ago)."),
    click.option("--until", callback=_time, help="Up to this time (same forms as --since)."),
    click.option("--log", "log_path", envvar=LOG_ENV,
                 help=f"Active log file: read its whole chain [${LOG_ENV}]."),
]


def _with_filters(f: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_filters):
        f = option(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def audit() -> None:
    """Inspect pgwarden's hash-chained audit logs (JSON Lines, one record per decision).

    Each record carries the SHA-256 of the record before it; `verify` proves nothing was
    changed, removed or reordered. Records hold SQL with literals replaced by `?`, never row values.
    """


@audit.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--log", "log_path", envvar=LOG_ENV,
              help=f"Active log file: verify its whole chain [${LOG_ENV}].")
@click.option("--partial", is_flag=True, help="Accept a chain that starts after seq 1 (older files pruned).")
def verify(files: tuple[Path, ...], log_path: str | None, partial: bool) -> None:
    """Check the hash chain of FILES (any order; rotated files are put in chain order).

    Exit status 0 if every chain is intact; 1 with the first broken record (file, line, seq and
    what is wrong: hash mismatch, prev mismatch, seq gap, reordered, malformed) otherwise.
    """
    paths = _files(files, log_path)
    result = verify_files(paths, partial=partial)
    for chain in result.chains:
        click.echo(f"ok: instance {chain.instance_id}: {chain.records} records, seq {chain.first_seq}.."
                   f"{chain.last_seq} in {len(chain.files)} file(s), last hash {chain.last_hash}")
    if result.problem is not None:
        click.echo(f"BROKEN: {printable(result.problem)}", err=True)
        sys.exit(1)
    if not result.chains:
        click.echo("no records")


@audit.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_with_filters
@click.option("--limit", type=int, default=200, show_default=True, help="Show at most the newest N records.")
@click.option("--json", "as_json", is_flag=True, help="Print matching records as JSON Lines instead.")
def show(files: tuple[Path, ...], log_path: str | None, principal: str | None, decision: str | None,
         rule: str | None, table: str | None, since: datetime | None, until: datetime | None,
         limit: int, as_json: bool) -> None:
    """Print the decisions in FILES that match the filters, as a table.

    Display only: this does not verify the chain (use `pgwarden audit verify`).
    """
    selected = RecordFilter(principal, decision, rule, table, since, until)
    records = list(selected.apply(iter_records(_files(files, log_path))))[-limit:]
    if as_json:
        for item in records:
            click.echo(json.dumps(item.record, sort_keys=True))
        return
    out = Table(title=f"{len(records)} decision(s)", show_lines=False)
    columns = ("seq", "time", "principal", "tool", "decision", "rules", "reason", "tables", "rows",
               "SQL")
    for column in columns:
        out.add_column(column, overflow="fold")
    for item in records:
        r = item.record
        effect = str(r.get("decision"))
        rows = "" if r.get("rows") is None else str(r.get("rows")) + ("+" if r.get("truncated") else "")
        out.add_row(
            Text(str(r.get("seq"))), Text(printable(r.get("ts"))[:19]), Text(printable(r.get("principal"))),
            Text(printable(r.get("tool") or r.get("method"))),
            Text(effect, style="green" if effect == "allow" else "red"),
            Text(printable(", ".join(r.get("rules") or []))), Text(printable(r.get("reason_code") or "")),
            Text(printable(", ".join(r.get("relations") or []))), Text(rows),
            Text(printable(sql_text(r.get("sql_sent")) or sql_text(r.get("sql")))),
        )
    Console(width=None if sys.stdout.isatty() else 200).print(out)


@audit.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_with_filters
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the HTML report.")
@click.option("--title", default="pgwarden audit report", show_default=True)
def report(files: tuple[Path, ...], log_path: str | None, principal: str | None, decision: str | None,
           rule: str | None, table: str | None, since: datetime | None, until: datetime | None,
           output: Path, title: str) -> None:
    """Write a self-contained HTML report of FILES for a reviewer.

    Chain status, decisions over time, top denied reasons, tables touched per principal, and
    every decision's SQL before and after rewrite (redacted as stored). No external resources.
    """
    paths = _files(files, log_path)
    verification = verify_files(paths, partial=True)
    selected = RecordFilter(principal, decision, rule, table, since, until)
    loaded = list(selected.apply(iter_records(paths)))
    html = render_report(loaded, verification=verification, files=[p.name for p in paths], title=title)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, output)
    click.echo(f"wrote {output} ({len(loaded)} decisions)")
