"""The server's settings: the hardening limits, all on by default."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_ROWS = 1000
DEFAULT_MAX_RESULT_BYTES = 1_000_000
DEFAULT_STATEMENT_TIMEOUT_MS = 5_000
DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class ServerSettings:
    """Limits every statement runs under.

    `max_rows` caps the rows a query returns (a client may ask for fewer, never more);
    `max_result_bytes` caps the JSON size of the returned rows. Timeouts are Postgres's
    `statement_timeout` and `idle_in_transaction_session_timeout`, in milliseconds.
    `statement_check` is the server's pglast check (one plain SELECT); turning it off leaves
    only the Postgres-level layers (read-only transaction, named cursor, rollback) and exists
    to test those layers alone.
    """

    max_rows: int = DEFAULT_MAX_ROWS
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS
    idle_in_transaction_timeout_ms: int = DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS
    pool_min_size: int = 1
    pool_max_size: int = 4
    pool_timeout_s: float = 10.0
    statement_check: bool = True
    application_name: str = "pgwarden-server"

    def __post_init__(self) -> None:
        positive = {
            "max_rows": self.max_rows,
            "max_result_bytes": self.max_result_bytes,
            "statement_timeout_ms": self.statement_timeout_ms,
            "idle_in_transaction_timeout_ms": self.idle_in_transaction_timeout_ms,
            "pool_max_size": self.pool_max_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if not 0 <= self.pool_min_size <= self.pool_max_size:
            raise ValueError("pool_min_size must be between 0 and pool_max_size")
        if self.pool_timeout_s <= 0:
            raise ValueError("pool_timeout_s must be positive")
