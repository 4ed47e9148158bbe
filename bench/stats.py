"""Summaries of latency samples: median, p99, mean, and the ratios the report prints."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """`{n, median, p99, mean, min}` of `samples` (same unit as the samples)."""
    values = sorted(samples)
    if not values:
        return {
            "n": 0,
            "median": float("nan"),
            "p99": float("nan"),
            "mean": float("nan"),
            "min": float("nan"),
        }
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
        "min": values[0],
    }


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a Markdown table (`–` for missing)."""
    if value is None or value != value:  # None or NaN
        return "–"
    return f"{value:.{digits}f}"
