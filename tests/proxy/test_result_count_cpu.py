"""`filter_result` without masks on pgwarden's result format counts the rows without building
them: the same `Filtered` (result, row count, truncation, verification) as reading every row."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwarden.proxy.guard.model import Mask
from pgwarden.proxy.results.filters import Filtered, ResultPlan, filter_result
from pgwarden.proxy.results.formats import count_rows, read_rows


def _result(rows: list[Any], columns: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": "rendered rows"}],
        "structuredContent": {
            "columns": columns if columns is not None else [{"name": "id", "type": "int4"}, {"name": "n"}],
            "rows": rows,
            "row_count": len(rows) if isinstance(rows, list) else 0,
            "truncated": False,
        },
        **extra,
    }


def _slow(result: dict[str, Any], plan: ResultPlan) -> Filtered:
    """`filter_result` as it was without masks: every row read (`read_rows`); over the cap, the
    full path (a mask on a column no row has forces it, and changes nothing)."""
    if result.get("isError") is True:
        return Filtered(result)
    table = read_rows(result, plan.format, rows_path=plan.rows_path)
    if table is None:
        return Filtered(result)
    rows = table.rows
    truncated = plan.row_cap is not None and len(rows) > plan.row_cap
    if not truncated:
        return Filtered(result, rows=len(rows), verified=True)
    return filter_result(result, ResultPlan(format=plan.format, row_cap=plan.row_cap,
                                            masks={"never-a-column": (Mask("null"),)}))


SHAPES: list[tuple[str, dict[str, Any]]] = [
    ("plain", _result([[1, "a"], [2, "b"]])),
    ("empty", _result([])),
    ("a row that is not a list", _result([[1, "a"], {"id": 2}])),
    ("a column without a name", _result([[1, "a"]], columns=[{"name": "id"}, {"type": "text"}])),
    ("a column name that is not text", _result([[1, "a"]], columns=[{"name": "id"}, {"name": 3}])),
    ("columns not a list", _result([[1]], columns={"name": "id"})),
    ("rows not a list", _result("1,a")),  # type: ignore[arg-type]
    ("no structured content", {"content": [{"type": "text", "text": "x"}]}),
    ("structured content not an object", {"structuredContent": [1, 2]}),
    ("an error result", _result([[1, "a"], [2, "b"], [3, "c"]], isError=True)),
]


@pytest.mark.parametrize("cap", [None, 0, 1, 2, 3, 1000])
@pytest.mark.parametrize(("label", "result"), SHAPES, ids=[label for label, _ in SHAPES])
def test_counting_gives_what_reading_every_row_gives(
    label: str, result: dict[str, Any], cap: int | None
) -> None:
    plan = ResultPlan(format="pgwarden", row_cap=cap)
    before = copy.deepcopy(result)
    fast = filter_result(result, plan)
    assert fast == _slow(copy.deepcopy(result), plan)
    assert fast.result is result or fast.truncated  # passed on as it came unless cut
    assert result == before


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers() | st.text() | st.none(), min_size=2, max_size=2), max_size=12),
    cap=st.none() | st.integers(min_value=0, max_value=14),
)
def test_any_table_and_cap_agree(rows: list[list[Any]], cap: int | None) -> None:
    result = _result(rows)
    plan = ResultPlan(format="pgwarden", row_cap=cap)
    assert filter_result(copy.deepcopy(result), plan) == _slow(copy.deepcopy(result), plan)
    assert count_rows(result, "pgwarden") == len(rows)


def test_rows_over_the_cap_are_still_cut_and_said_so() -> None:
    result = _result([[i, str(i)] for i in range(5)])
    filtered = filter_result(result, ResultPlan(format="pgwarden", row_cap=3))
    assert filtered.truncated and filtered.rows == 3 and filtered.verified
    sc = filtered.result["structuredContent"]
    assert isinstance(sc, dict) and sc["rows"] == [[0, "0"], [1, "1"], [2, "2"]] and sc["truncated"] is True
    assert "4" not in str(filtered.result["content"])


def test_other_formats_are_not_counted() -> None:
    for fmt in ("json_rows", "json_items", "json_embedded", "opaque"):
        assert count_rows(_result([[1, "a"]]), fmt) is None  # type: ignore[arg-type]
