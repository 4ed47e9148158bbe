"""The guard's masks, checked and re-applied in Python on result values.

The SQL the upstream ran already masked these columns; this is the second layer, for an
upstream that returned something else (ignored the rewritten SQL, a bug, a compromise).
For each value under a masked column name:

- a value that has the shape the SQL mask produces is kept (masking it again would change
  it: a hash of a hash);
- any other value is replaced by the Python version of the same mask, which gives the value
  the SQL mask would have given for that input (`null`, `fixed`, `partial`, `email`, `hash`);
- `sql` masks (operator-written expressions) cannot be recomputed in Python: a value under
  such a column is kept as the upstream returned it. Their protection is the SQL rewrite only.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pgwarden.proxy.guard.model import Mask

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def apply_mask(mask: Mask, value: Any) -> Any:
    """The value `mask` gives for the raw `value` (same rules as the SQL mask library)."""
    if value is None or mask.kind == "null":
        return None
    if mask.kind == "fixed":
        return str(mask.param("text", "***"))
    text = _text(value)
    if mask.kind == "partial":
        keep = min(int(mask.param("keep_last", 4)), len(text) // 2)
        fill = str(mask.param("fill", "*"))
        return fill * (len(text) - keep) + (text[len(text) - keep :] if keep else "")
    if mask.kind == "email":
        parts = text.split("@")
        return "***@" + (parts[1] if len(parts) > 1 else "")
    if mask.kind == "hash":
        salt = str(mask.param("salt", ""))
        return hashlib.sha256((salt + text).encode("utf-8")).hexdigest()
    return value  # "sql": not computable here (see the module docstring)


def conforms(mask: Mask, value: Any) -> bool:
    """Whether `value` already has the shape `mask` produces."""
    if value is None:
        return True
    kind = mask.kind
    if kind == "null":
        return False
    if kind == "fixed":
        return bool(value == str(mask.param("text", "***")))
    if kind == "sql":
        return True
    if not isinstance(value, str):
        return False
    if kind == "email":
        return value.startswith("***@") and "@" not in value[4:]
    if kind == "hash":
        return _HEX64.fullmatch(value) is not None
    if kind == "partial":
        fill = str(mask.param("fill", "*"))
        keep = min(int(mask.param("keep_last", 4)), len(value) // 2)
        hidden = value[: len(value) - keep]
        return len(fill) == 1 and hidden == fill * len(hidden)
    return False


def enforce_value(masks: tuple[Mask, ...], value: Any) -> tuple[Any, bool]:
    """The value to show under a column masked by `masks`, and whether it had to be changed."""
    if any(conforms(m, value) for m in masks):
        return value, False
    if len(masks) == 1:
        return apply_mask(masks[0], value), True
    return None, True  # several different masks and none fits: show nothing
