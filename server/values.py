"""How Postgres values become JSON values in tool results, without losing information.

| Postgres type                          | JSON value                                             |
| -------------------------------------- | ------------------------------------------------------ |
| smallint, integer, bigint, oid         | number                                                 |
| real, double precision                 | number; `"NaN"`, `"Infinity"`, `"-Infinity"` as strings |
| numeric, money                         | string, Postgres's exact text (`"1.10"`, `"NaN"`)      |
| boolean                                | true / false                                           |
| json, jsonb                            | the JSON value itself                                  |
| bytea                                  | string, Postgres hex format: `"\\x00ff"`               |
| timestamp, timestamptz                 | string, ISO 8601 (`"2024-01-01T00:00:00+00:00"`, UTC)  |
| date, time, timetz                     | string, ISO 8601                                       |
| interval                               | string, ISO 8601 duration (`"P1Y2M3DT4H5M6S"`)         |
| arrays                                 | arrays of the element's JSON value                     |
| anything else (text, uuid, inet, enum, range, …) | string, Postgres's text output               |

Infinite and BC dates/timestamps have no ISO 8601 form; they come as Postgres writes them
(`"infinity"`, `"0044-03-15 BC"`). The session runs with `TimeZone=UTC`, `DateStyle=ISO`
and `IntervalStyle=iso_8601` (see `SESSION_OPTIONS`), which these conversions rely on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.string import TextLoader

# Session settings the conversions below depend on.
SESSION_OPTIONS: dict[str, str] = {
    "TimeZone": "UTC",
    "DateStyle": "ISO",
    "IntervalStyle": "iso_8601",
}

# Types loaded as Postgres's text output instead of a lossy or fragile Python object.
TEXT_LOADED_TYPES = (
    "numeric", "money", "interval", "date", "time", "timetz", "timestamp", "timestamptz",
    "int4range", "int8range", "numrange", "daterange", "tsrange", "tstzrange",
    "int4multirange", "int8multirange", "nummultirange", "datemultirange", "tsmultirange",
    "tstzmultirange", "uuid", "inet", "cidr",
)

_TZ_HOURS_ONLY = re.compile(r"([+-]\d\d)$")


def configure_loaders(conn: AsyncConnection[Any]) -> None:
    """Make `conn` load the types above as text (psycopg then builds arrays from these too)."""
    for name in TEXT_LOADED_TYPES:
        conn.adapters.register_loader(name, TextLoader)


def _iso_datetime(text: str) -> str:
    """`2024-01-01 10:00:00+00` → `2024-01-01T10:00:00+00:00`; infinity and BC unchanged."""
    if not text[:1].isdigit() or text.endswith(" BC"):
        return text
    text = text.replace(" ", "T", 1)
    return _TZ_HOURS_ONLY.sub(r"\1:00", text)


def _iso_time(text: str) -> str:
    return _TZ_HOURS_ONLY.sub(r"\1:00", text)


def _float(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _bytea(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return value


def _identity(value: Any) -> Any:
    return value


_BY_TYPE: dict[str, Callable[[Any], Any]] = {
    "timestamp": lambda v: _iso_datetime(v) if isinstance(v, str) else v,
    "timestamptz": lambda v: _iso_datetime(v) if isinstance(v, str) else v,
    "timetz": lambda v: _iso_time(v) if isinstance(v, str) else v,
    "float4": _float,
    "float8": _float,
    "bytea": _bytea,
    "json": _identity,
    "jsonb": _identity,
}


def _generic(value: Any) -> Any:
    """Values of types without a specific rule: JSON scalars pass, the rest become text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytea(value)
    if isinstance(value, list | tuple):
        return [_generic(v) for v in value]
    return str(value)


def converter(type_name: str) -> Callable[[Any], Any]:
    """A function turning a loaded value of `type_name` (`"timestamptz"`, `"int4[]"`) into JSON."""
    base = type_name[:-2] if type_name.endswith("[]") else type_name
    scalar = _BY_TYPE.get(base, _generic)

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list) and base not in ("json", "jsonb"):
            return [convert(v) for v in value]
        return scalar(value)

    return convert
