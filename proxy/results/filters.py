"""Result-side enforcement: the row cap and the masks, applied again to what came back.

`filter_result(result, plan)` returns the result the client gets and what was done. When the
upstream returned more rows than the cap, the extra rows are dropped and the result says so
in a text item (and `truncated: true` in pgwarden's structured content). Results flagged
`isError` and results not in the expected format pass unchanged (`verified=False`): the SQL
rewrite is then the only enforcement, which the audit record shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pgwarden.proxy.guard.model import Mask
from pgwarden.proxy.results.formats import ResultFormat, count_rows, read_rows
from pgwarden.proxy.results.masks import enforce_value

JSON = dict[str, object]


@dataclass(frozen=True, slots=True)
class ResultPlan:
    """What must hold for the rows of one result. Column names are as they appear in results."""

    format: ResultFormat = "opaque"
    rows_path: tuple[str, ...] = ()
    row_cap: int | None = None
    masks: Mapping[str, tuple[Mask, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Filtered:
    result: dict[str, object]
    rows: int | None = None  # rows the client receives (None: unknown format)
    truncated: bool = False
    values_replaced: int = 0  # masked-column values that did not look masked and were replaced
    verified: bool = False  # the rows were read and checked


def truncation_note(shown: int, cap: int) -> str:
    return (
        f"pgwarden: the result was cut to {shown} row{'s' if shown != 1 else ''} by the policy's row cap "
        f"({cap}); more rows matched. Aggregate or filter to see the rest."
    )


def filter_result(result: dict[str, object], plan: ResultPlan) -> Filtered:
    """Apply `plan` to a tool result (see the module docstring)."""
    if result.get("isError") is True or plan.format == "opaque":
        return Filtered(result)
    if not plan.masks and plan.format == "pgwarden":
        # Nothing to mask: only the row count matters, and rows within the cap pass as they are.
        count = count_rows(result, plan.format)
        if count is None:
            return Filtered(result)
        if plan.row_cap is None or count <= plan.row_cap:
            return Filtered(result, rows=count, verified=True)
    table = read_rows(result, plan.format, rows_path=plan.rows_path)
    if table is None:
        return Filtered(result)
    rows = table.rows
    truncated = plan.row_cap is not None and len(rows) > plan.row_cap
    if truncated and plan.row_cap is not None:
        rows = rows[: plan.row_cap]
    replaced = 0
    if plan.masks:
        for row in rows:
            for column, masks in plan.masks.items():
                if column in row:
                    row[column], changed = enforce_value(masks, row[column])
                    replaced += changed
    if not truncated and not replaced:
        return Filtered(result, rows=len(rows), verified=True)
    out = table.write(rows)
    if truncated and plan.row_cap is not None:
        sc = out.get("structuredContent")
        if isinstance(sc, dict):
            out["structuredContent"] = {**sc, "truncated": True}
        content = out.get("content")
        note = {"type": "text", "text": truncation_note(len(rows), plan.row_cap)}
        out["content"] = [*(content if isinstance(content, list) else []), note]
    return Filtered(out, rows=len(rows), truncated=truncated, values_replaced=replaced, verified=True)
