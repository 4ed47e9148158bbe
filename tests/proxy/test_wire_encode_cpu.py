"""`wire.encode_line` (orjson, pydantic_core's `to_json` for what orjson refuses) writes every
message byte for byte as `to_json(message, inf_nan_mode="null")` plus a newline did."""

from __future__ import annotations

import enum
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from pgwarden.proxy.guard.model import Reason
from pgwarden.proxy.relay.fast import encode
from pgwarden.proxy.relay.wire import encode_line, tool_error

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)  # beyond 64 bits: orjson refuses, to_json writes
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(), inner, max_size=4)
    | st.dictionaries(st.integers(), inner, min_size=1, max_size=2),  # keys orjson refuses
    max_leaves=40,
)


def _before(message: Any) -> bytes:
    return to_json(message, inf_nan_mode="null") + b"\n"


@settings(max_examples=1500, deadline=None)
@given(_VALUES)
def test_any_json_message_is_written_as_to_json_wrote_it(value: Any) -> None:
    message = {"jsonrpc": "2.0", "id": 7, "result": {"value": value}}
    assert encode_line(message) == _before(message)
    assert encode(message) == _before(message)


class _Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        -math.inf,
        2**64,
        -(2**63) - 1,
        -0.0,
        1e16,
        5e-324,
        "\u2028\x00\x1f\x7f\ud7ff é 😀 \"quoted\" \\",
        Reason.POLICY_DENY,  # a str enum
        _Colour.RED,
        (1, "two"),
        {1: "int key"},
        {"nested": [{"rows": [[1, "a", None, True, 1.5]]}]},
    ],
    ids=repr,
)
def test_edge_values_are_written_as_to_json_wrote_them(value: Any) -> None:
    message = {"jsonrpc": "2.0", "id": "r-1", "result": {"value": value}}
    assert encode_line(message) == _before(message)


def test_a_tool_error_answer_is_one_line() -> None:
    line = encode_line({"jsonrpc": "2.0", "id": 1, "result": tool_error("denied\nbecause")})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line == _before({"jsonrpc": "2.0", "id": 1, "result": tool_error("denied\nbecause")})
