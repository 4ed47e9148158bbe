"""Record refused HTTP requests in the hash-chained audit log.

`RefusalAuditor(audit_log)` is an `on_refusal` hook for `AuthMiddleware`. Refusals of an
authenticated principal (insufficient scope, rate or concurrency limit) are always recorded.
Refusals before authentication (no or bad credentials, wrong host or origin) cost an attacker
nothing to produce, so they are recorded at most `unauthenticated_per_second` per second (with a
burst of as many); the ones left out are counted and the count goes into the next record's
reason, so a flood is visible without every junk request forcing an fsync.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pgwarden.proxy.audit.log import AuditLog
from pgwarden.proxy.audit.record import AuditEntry
from pgwarden.proxy.auth.events import AuthRefusal
from pgwarden.proxy.auth.limits import TokenBucket

AUDIT_METHOD = "auth/refusal"


def refusal_entry(event: AuthRefusal, *, suppressed: int = 0) -> AuditEntry:
    """The audit entry for one refusal: decision deny, the refusal code as reason code."""
    reason = f"HTTP {event.status} {event.method} {event.path}: {event.reason}"
    if event.client:
        reason += f" (client {event.client})"
    if suppressed:
        reason += f"; {suppressed} similar unauthenticated refusal(s) not recorded before this one"
    return AuditEntry(
        method=AUDIT_METHOD,
        decision="deny",
        principal=event.principal_id,
        reason_code=str(event.code),
        reason=reason,
        is_error=True,
    )


class RefusalAuditor:
    """An `on_refusal` hook writing to an `AuditLog` (off the event loop)."""

    def __init__(
        self,
        audit_log: AuditLog,
        *,
        unauthenticated_per_second: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audit_log = audit_log
        self._clock = clock
        burst = max(1.0, unauthenticated_per_second)
        self._bucket = TokenBucket(unauthenticated_per_second, burst, burst, clock())
        self.suppressed = 0

    async def __call__(self, event: AuthRefusal) -> None:
        if event.principal_id is None and self._bucket.take(self._clock()) > 0.0:
            self.suppressed += 1
            return
        suppressed, self.suppressed = (
            (self.suppressed, 0) if event.principal_id is None else (0, self.suppressed)
        )
        await self.audit_log.append_async(refusal_entry(event, suppressed=suppressed))
