"""Readable text renderings of tool results (the text content beside structuredContent)."""

from __future__ import annotations

import json
from typing import Any

from pgwarden.server.database import QueryResult


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("|", "\\|").replace("\r", "\\r").replace("\n", "\\n")


def query_text(result: QueryResult) -> str:
    """A Markdown table of the rows and a line saying how many came back and why it stopped."""
    lines = []
    if result.columns:
        lines.append("| " + " | ".join(_cell(c.name) for c in result.columns) + " |")
        lines.append("|" + "|".join(" --- " for _ in result.columns) + "|")
        lines.extend("| " + " | ".join(_cell(v) for v in row) + " |" for row in result.rows)
    summary = f"{result.row_count} row{'s' if result.row_count != 1 else ''}"
    if result.truncated_by == "max_rows":
        summary += (f"; truncated at the row cap ({result.max_rows}): more rows exist — "
                    "add WHERE / LIMIT or aggregate")
    elif result.truncated_by == "max_result_bytes":
        summary += "; truncated at the result size cap — select fewer or narrower columns"
    lines.append(f"({summary})")
    return "\n".join(lines)


def _plan_lines(node: dict[str, Any], depth: int, lines: list[str]) -> None:
    label = str(node.get("Node Type", "?"))
    if "Relation Name" in node:
        schema = node.get("Schema")
        relation = f"{schema}.{node['Relation Name']}" if schema else node["Relation Name"]
        label += f" on {relation}"
        if node.get("Alias") and node["Alias"] != node["Relation Name"]:
            label += f" {node['Alias']}"
    if "Index Name" in node:
        label += f" using {node['Index Name']}"
    cost = f"(cost={node.get('Startup Cost')}..{node.get('Total Cost')} rows={node.get('Plan Rows')} " \
           f"width={node.get('Plan Width')})"
    prefix = "  " * depth + ("-> " if depth else "")
    lines.append(f"{prefix}{label}  {cost}")
    for key in ("Filter", "Index Cond", "Hash Cond", "Join Filter", "Merge Cond", "Sort Key", "Group Key"):
        if key in node:
            value = node[key]
            shown = ", ".join(value) if isinstance(value, list) else str(value)
            lines.append("  " * depth + f"     {key}: {shown}")
    for child in node.get("Plans", []) or []:
        _plan_lines(child, depth + 1, lines)


def plan_text(plan: Any) -> str:
    """An indented tree like EXPLAIN's text format, from `EXPLAIN (FORMAT JSON)` output."""
    lines: list[str] = []
    for entry in plan if isinstance(plan, list) else [plan]:
        if isinstance(entry, dict) and isinstance(entry.get("Plan"), dict):
            _plan_lines(entry["Plan"], 0, lines)
    return "\n".join(lines) if lines else json.dumps(plan)
