"""Per-principal request limits: a token bucket (rate + burst) and an in-flight cap.

Both run on the event loop with no await between check and update, so no lock is needed and
exactly `burst` requests of a simultaneous flood get through. State is per process (each
replica limits on its own, in line with the stateless scale-out design): with N replicas a
principal's effective limit is up to N times the configured one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from pgwarden.proxy.auth.config import LimitsConfig, RateLimit

_MAX_BUCKETS = 100_000


@dataclass(slots=True)
class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; one token per request."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take a token: 0.0 when allowed, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.updated) * self.rate >= self.capacity


class PrincipalLimiter:
    """Rate and concurrency limits keyed by principal id."""

    def __init__(self, config: LimitsConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._in_flight: dict[str, int] = {}

    def _limit(self, principal_id: str) -> RateLimit:
        return self.config.for_principal(principal_id)

    def take(self, principal_id: str) -> float | None:
        """None when the request may proceed; otherwise seconds to wait (for Retry-After)."""
        limit = self._limit(principal_id)
        if limit.rate_per_second is None or limit.burst is None:
            return None
        now = self._clock()
        bucket = self._buckets.get(principal_id)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._prune(now)
            bucket = TokenBucket(limit.rate_per_second, float(limit.burst), float(limit.burst), now)
            self._buckets[principal_id] = bucket
        wait = bucket.take(now)
        return None if wait == 0.0 else wait

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled completely (they carry no information)."""
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]

    def enter(self, principal_id: str) -> bool:
        """Claim an in-flight slot; False when the principal is at its cap. Pair with `leave`."""
        cap = self._limit(principal_id).max_concurrent
        current = self._in_flight.get(principal_id, 0)
        if cap is not None and current >= cap:
            return False
        self._in_flight[principal_id] = current + 1
        return True

    def leave(self, principal_id: str) -> None:
        current = self._in_flight.get(principal_id, 0) - 1
        if current <= 0:
            self._in_flight.pop(principal_id, None)
        else:
            self._in_flight[principal_id] = current

    def in_flight(self, principal_id: str) -> int:
        return self._in_flight.get(principal_id, 0)


def retry_after_header(seconds: float) -> str:
    """Retry-After in whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
