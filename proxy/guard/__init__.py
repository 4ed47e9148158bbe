"""The SQL guard: analyse untrusted SQL, rewrite it under obligations, re-validate it.

Pure functions over sqlglot trees (and pglast for the second opinion); the only I/O is the
optional catalog introspection in `catalog`.
"""

from pgwarden.proxy.guard.catalog import Catalog
from pgwarden.proxy.guard.enforce import enforce, fingerprint, redact_literals
from pgwarden.proxy.guard.functions import ALLOWED_TYPES, DEFAULT_ALLOWED_FUNCTIONS
from pgwarden.proxy.guard.masks import MASK_KINDS, validate_mask
from pgwarden.proxy.guard.model import (
    Analysis,
    GuardDenied,
    Mask,
    Obligations,
    Reason,
    Rewrite,
    RowFilter,
)
from pgwarden.proxy.guard.parse import Statement, analyse, parse_statement

__all__ = [
    "ALLOWED_TYPES",
    "DEFAULT_ALLOWED_FUNCTIONS",
    "MASK_KINDS",
    "Analysis",
    "Catalog",
    "GuardDenied",
    "Mask",
    "Obligations",
    "Reason",
    "Rewrite",
    "RowFilter",
    "Statement",
    "analyse",
    "enforce",
    "fingerprint",
    "parse_statement",
    "redact_literals",
    "validate_mask",
]
