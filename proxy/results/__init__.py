"""Result-side filters: the row cap and masks enforced again on results of known formats."""

from pgwarden.proxy.results.filters import Filtered, ResultPlan, filter_result, truncation_note
from pgwarden.proxy.results.formats import RESULT_FORMATS, ResultFormat, read_rows

__all__ = [
    "RESULT_FORMATS",
    "Filtered",
    "ResultFormat",
    "ResultPlan",
    "filter_result",
    "read_rows",
    "truncation_note",
]
