"""`pgwarden demo`: a scripted agent session through the proxy, readable in a terminal.

Starts the embedded PostgreSQL with the demo data, then for a few principals runs pgwarden's
proxy (with the example policies in `policies/`) in front of pgwarden's own server, and talks
to it as an MCP client over stdio, the way an agent would. Every call is shown with what came
back and what the proxy did: the decision, the rules, the SQL it actually sent upstream (from
its audit log, literals redacted) and the reason. Finishes on its own and exits 0.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"


@dataclass(frozen=True)
class Step:
    title: str
    sql: str
    shows: str  # what the step demonstrates: allowed, masked, capped, row-filtered, denied


@dataclass(frozen=True)
class Persona:
    principal: dict[str, Any]
    who: str
    steps: tuple[Step, ...]


PERSONAS = (
    Persona(
        {"id": "ann", "roles": ["analyst"]},
        "Ann, sales analyst",
        (
            Step(
                "Revenue by country",
                "SELECT c.country, count(*) AS orders, sum(o.total) AS revenue "
                "FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.country "
                "ORDER BY revenue DESC LIMIT 3",
                "allowed; customer PII masked inside the derived table",
            ),
            Step(
                "Card numbers of recent payments",
                "SELECT id, card_number, amount FROM payments ORDER BY id DESC LIMIT 3",
                "masked: last four digits only",
            ),
            Step("Every order", "SELECT id, total FROM orders ORDER BY id", "capped by the row cap"),
            Step(
                "List customers' e-mails",
                "SELECT name, email FROM customers LIMIT 3",
                "denied: customers only in aggregate",
            ),
            Step(
                "Peek at API keys", "SELECT service, api_key FROM secrets", "denied: secrets are off limits"
            ),
        ),
    ),
    Persona(
        {"id": "sam", "roles": ["support"], "tenant": 2},
        "Sam, support agent for tenant 2",
        (
            Step(
                "Customers per tenant",
                "SELECT tenant_id, count(*) FROM customers GROUP BY tenant_id",
                "row-filtered: only tenant 2 is visible",
            ),
            Step(
                "A customer's national id",
                "SELECT id, name, national_id FROM customers ORDER BY id LIMIT 3",
                "row-filtered and masked",
            ),
            Step("Salaries", "SELECT * FROM hr.salaries", "denied: HR data"),
            Step(
                "Sneak a write in", "SELECT 1; UPDATE orders SET total = 0", "denied: one read-only statement"
            ),
        ),
    ),
    Persona(
        {"id": "bob", "roles": ["marketing"]},
        "Bob, marketing (no special role)",
        (
            Step(
                "Product catalogue",
                "SELECT sku, name, price FROM products ORDER BY id LIMIT 3",
                "allowed by the default policy",
            ),
            Step("Customer list", "SELECT name FROM customers LIMIT 3", "denied: no rule allows it"),
        ),
    ),
)


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _result_table(result: Any) -> Table | Text:
    sc = result.structured_content or {}
    if result.is_error or "rows" not in sc:
        body = " ".join(getattr(c, "text", "") for c in result.content)
        return Text(body.strip(), style="bold red" if result.is_error else "")
    table = Table(show_edge=False, header_style="bold cyan", pad_edge=False)
    for column in sc["columns"]:
        table.add_column(column["name"])
    for row in sc["rows"][:4]:
        table.add_row(*(_cell(v) for v in row))
    shown = len(sc["rows"])
    note = f"{shown} row{'s' if shown != 1 else ''}"
    if sc.get("truncated"):
        note += " (cut: row cap)"
    table.caption = note
    return table


def _audit_lines(record: dict[str, Any] | None) -> Text:
    if record is None:
        return Text("(no audit record found)", style="dim")
    lines = Text()
    decision = record.get("decision", "?")
    lines.append("decision  ", style="bold")
    lines.append(decision.upper() + "\n", style="green" if decision == "allow" else "red")
    if record.get("rules"):
        lines.append("rules     ", style="bold")
        lines.append(", ".join(record["rules"]) + "\n")
    if record.get("masked_columns"):
        lines.append("masked    ", style="bold")
        lines.append(", ".join(record["masked_columns"]) + "\n")
    if record.get("row_filters"):
        lines.append("filtered  ", style="bold")
        lines.append(", ".join(record["row_filters"]) + "\n")
    if record.get("row_cap") is not None:
        lines.append("row cap   ", style="bold")
        lines.append(f"{record['row_cap']}" + (" (reached)" if record.get("truncated") else "") + "\n")
    sent = (record.get("sql_sent") or {}).get("text")
    if sent:
        lines.append("sent SQL  ", style="bold")
        lines.append(sent + "\n", style="yellow")
    if record.get("reason_code") or (decision != "allow" and record.get("reason")):
        lines.append("reason    ", style="bold")
        lines.append(f"{record.get('reason_code')}: {record.get('reason') or ''}\n", style="red")
    return lines


def _last_call_record(audit: Path, seen: int) -> tuple[dict[str, Any] | None, int]:
    if not audit.exists():
        return None, seen
    records = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
    calls = [r for r in records[seen:] if r.get("method") == "tools/call"]
    return (calls[-1] if calls else None), len(records)


async def _run_persona(console: Console, persona: Persona, *, reader_dsn: str, audit: Path) -> int:
    from mcp import Client, StdioServerParameters

    pgwarden = str(Path(sys.executable).parent / "pgwarden")
    args = [
        "proxy",
        "--policy",
        str(POLICIES),
        "--principal",
        json.dumps(persona.principal),
        "--catalog-dsn",
        reader_dsn,
        "--audit-log",
        str(audit),
        "--tool-map",
        "pgwarden",
        "--",
        pgwarden,
        "server",
        "--dsn",
        reader_dsn,
    ]
    params = StdioServerParameters(command=pgwarden, args=args)
    console.rule(f"[bold]{persona.who}[/]  principal {json.dumps(persona.principal)}")
    seen = 0
    async with Client(params, mode="legacy") as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        console.print(f"tools/list shows {persona.principal['id']}: [cyan]{', '.join(tools) or '(none)'}[/]")
        for number, step in enumerate(persona.steps, 1):
            result = await client.call_tool("query", {"sql": step.sql})
            await anyio.sleep(0.05)  # the audit write lands right after the answer
            record, seen = _last_call_record(audit, seen)
            body = Table.grid(padding=(0, 1))
            body.add_row(Text("agent SQL ", style="bold"), Text(step.sql, style="white"))
            body.add_row(Text("result    ", style="bold"), _result_table(result))
            body.add_row(Text(""), _audit_lines(record))
            console.print(
                Panel(
                    body,
                    title=f"{number}. {step.title}",
                    subtitle=step.shows,
                    title_align="left",
                    border_style="red" if result.is_error else "green",
                )
            )
    return len(persona.steps)


async def run_demo(console: Console) -> None:
    from pgwarden.server import embedded

    started = time.monotonic()
    console.print(
        Panel.fit("pgwarden demo: an AI agent's SQL, checked by policy, rewritten, audited", style="bold")
    )
    console.print("Starting the embedded PostgreSQL with the demo data…")
    database = await anyio.to_thread.run_sync(lambda: embedded.ensure_demo_database(embedded.start()))
    with tempfile.TemporaryDirectory(prefix="pgwarden-demo-") as scratch:
        audit = Path(scratch) / "audit.jsonl"
        calls = 0
        for persona in PERSONAS:
            calls += await _run_persona(console, persona, reader_dsn=database.reader_dsn, audit=audit)
        from pgwarden.proxy.audit import verify_files

        verdict = verify_files([audit])
        console.rule()
        console.print(
            f"{calls} calls in {time.monotonic() - started:.1f} s; audit log: "
            f"{'hash chain intact' if verdict.ok else 'CHAIN BROKEN'} "
            f"({sum(1 for _ in audit.open())} records)."
        )
        console.print("Next: [bold]pgwarden proxy --help[/] to put pgwarden in front of your own server.")


@click.command()
def demo() -> None:
    """Run a scripted agent session through the proxy against the embedded demo database."""
    console = Console()
    anyio.run(run_demo, console)
