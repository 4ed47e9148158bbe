"""One MCP request as seen by the proxy: its span, its child spans, its decision.

`Telemetry.request_span(...)` opens a `RequestSpan`; the proxy runs the pipeline stages in
`req.child(...)`, reports the outcome with `req.record_decision(...)`, writes the audit record
with `req.audit(...)` and leaves the block, which ends the span and records the metrics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from pgwarden.proxy.audit.journal import Intent
from pgwarden.proxy.audit.log import AuditLog, AuditWriteError
from pgwarden.proxy.audit.record import AuditEntry
from pgwarden.proxy.audit.redact import RedactedSQL, redact_sql
from pgwarden.proxy.telemetry import attributes as A
from pgwarden.proxy.telemetry.propagation import inject_meta

if TYPE_CHECKING:
    from pgwarden.proxy.telemetry.telemetry import Telemetry


@dataclass(slots=True)
class _Outcome:
    principal: str | None = None
    decision: str | None = None
    rules: tuple[str, ...] = ()
    reason_code: str | None = None
    reason: str | None = None
    relations: tuple[str, ...] = ()
    masked_columns: tuple[str, ...] = ()
    row_filters: tuple[str, ...] = ()
    row_cap: int | None = None
    policy_revision: str | None = None
    fingerprint: str | None = None
    fingerprint_of: RedactedSQL | None = None  # the statement whose fingerprint stands in for `fingerprint`
    sql: RedactedSQL | None = None
    sql_sent: RedactedSQL | None = None
    rows: int | None = None
    truncated: bool | None = None
    is_error: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _tuple(values: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(str(v) for v in values) if values else ()


_NO_SPAN: AbstractContextManager[Span] = nullcontext(trace.INVALID_SPAN)  # reusable: holds no state


class _StageTimer:
    """Times one stage for the metrics, without a span."""

    __slots__ = ("_name", "_request", "_start")

    def __init__(self, request: RequestSpan, name: str) -> None:
        self._request = request
        self._name = name
        self._start = 0.0

    def __enter__(self) -> Span:
        self._start = time.perf_counter()
        return trace.INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        self._request._stage_done(self._name, self._start)


class RequestSpan:
    """Handle on the span of one MCP request. Not shared between requests; not thread-safe."""

    def __init__(self, telemetry: Telemetry, span: Span, method: str, tool: str | None,
                 request_id: str | None, session_id: str | None) -> None:
        self._telemetry = telemetry
        self.span = span
        self.method = method
        self.tool = tool
        self.request_id = request_id
        self.session_id = session_id
        self.started = time.perf_counter()
        self.outcome = _Outcome()
        self.audit_record: dict[str, Any] | None = None
        self.error_type: str | None = None
        # Attributes added after the span started are visible only to span exporters: with
        # none configured, `record_decision` skips building them on the span.
        self._exported = telemetry.providers.exports_spans
        self.audit_deferred = False  # the record is written after the answer (after the span)
        ctx = span.get_span_context()
        self.trace_id = f"{ctx.trace_id:032x}" if ctx.is_valid else None
        self.span_id = f"{ctx.span_id:016x}" if ctx.is_valid else None

    @property
    def exported(self) -> bool:
        """Whether a span exporter receives this span (and so its attributes)."""
        return self._exported

    # -- structure ---------------------------------------------------------------------------

    def child(self, name: str, **attributes: str | int | bool) -> AbstractContextManager[Span]:
        """A child span for one pipeline stage (`pgwarden.analyse`, `.decide`, `.rewrite`, `.upstream`).

        An exception leaving the stage marks the child with `error.type` (its class name only:
        exception messages may quote SQL) and propagates. With no span exporter no child span
        is built (nobody could see it), and with no metric reader either the stage is not
        timed (only metrics use the timings).
        """
        if self._exported:
            return self._child_span(name, attributes)
        if self._telemetry.metrics.enabled:
            return _StageTimer(self, name)
        return _NO_SPAN

    @contextmanager
    def _child_span(self, name: str, attributes: dict[str, str | int | bool]) -> Iterator[Span]:
        start = time.perf_counter()
        kind = SpanKind.CLIENT if name == A.SPAN_UPSTREAM else SpanKind.INTERNAL
        with self._telemetry.tracer.start_as_current_span(
            name, kind=kind, attributes=attributes or None, record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_attribute(A.ERROR_TYPE, type(exc).__qualname__)
                span.set_status(StatusCode.ERROR)
                raise
            finally:
                self._stage_done(name, start)

    def _stage_done(self, name: str, start: float) -> None:
        elapsed = time.perf_counter() - start
        stages = self.outcome.stage_seconds
        stages[name] = stages.get(name, 0.0) + elapsed
        if name == A.SPAN_UPSTREAM:
            self._telemetry.metrics.upstream_duration(elapsed, self.method, self.tool)

    def inject_meta(self, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Add W3C `traceparent`/`tracestate` of the current span (the upstream child when called
        inside it) to `meta` (the upstream request's `_meta`) and return it."""
        return inject_meta(meta)

    # -- what happened ------------------------------------------------------------------------

    def record_sensitive(self, *, sql: str | None = None, arguments: Mapping[str, Any] | None = None) -> None:
        """Put the SQL as received and the tool arguments on the span — only if the operator opted in."""
        if not self._telemetry.config.capture_sensitive:
            return
        if sql is not None:
            self.span.set_attribute(A.SQL_TEXT, sql)
        if arguments is not None:
            self.span.set_attribute(A.GEN_AI_TOOL_CALL_ARGUMENTS, json.dumps(arguments, default=str))

    def record_decision(
        self,
        *,
        decision: str | None = None,
        principal_id: str | None = None,
        rules: Sequence[str] | None = None,
        reason_code: str | None = None,
        reason: str | None = None,
        relations: Sequence[str] | None = None,
        masked_columns: Sequence[str] | None = None,
        row_cap: int | None = None,
        row_filters: Sequence[str] | None = None,
        policy_revision: str | None = None,
        sql: str | None = None,
        sent_sql: str | None = None,
        sql_redacted: RedactedSQL | None = None,
        sent_sql_redacted: RedactedSQL | None = None,
        fingerprint: str | None = None,
        rows_returned: int | None = None,
        truncated: bool | None = None,
        is_error: bool | None = None,
    ) -> None:
        """Record what was decided and what came of it; call once or several times (values merge).

        `sql` is the statement as received and `sent_sql` the rewritten statement sent upstream,
        both raw: they are redacted here (literals → `?`) before they reach a span or the audit
        log. A caller that already redacted them (from its own parse tree, `redact_tree`) passes
        `sql_redacted` / `sent_sql_redacted` instead, which saves a parse per statement.
        `is_error` is the `isError` of the result the client gets (a deny is an error).
        """
        o = self.outcome
        if decision is not None:
            o.decision = decision
        if principal_id is not None:
            o.principal = principal_id
        if rules is not None:
            o.rules = _tuple(rules)
        if reason_code is not None:
            o.reason_code = str(reason_code)
        if reason is not None:
            o.reason = reason
        if relations is not None:
            o.relations = _tuple(relations)
        if masked_columns is not None:
            o.masked_columns = _tuple(masked_columns)
        if row_cap is not None:
            o.row_cap = row_cap
        if row_filters is not None:
            o.row_filters = _tuple(row_filters)
        if policy_revision is not None:
            o.policy_revision = policy_revision
        derived_fingerprint = False
        if sql is not None or sql_redacted is not None:
            o.sql = sql_redacted if sql_redacted is not None else redact_sql(sql or "")
            if fingerprint is None and o.fingerprint is None and o.fingerprint_of is None:
                # The statement's own fingerprint, unless the caller gives one (computed when needed).
                o.fingerprint_of = o.sql
                derived_fingerprint = True
        if sent_sql is not None or sent_sql_redacted is not None:
            o.sql_sent = sent_sql_redacted if sent_sql_redacted is not None else redact_sql(sent_sql or "")
        if fingerprint is not None:
            o.fingerprint = fingerprint
        if rows_returned is not None:
            o.rows = rows_returned
        if truncated is not None:
            o.truncated = truncated
        if is_error is not None:
            o.is_error = is_error
            if is_error:
                self.set_error(A.TOOL_ERROR if self.method == "tools/call" else "error")
        if not self._exported:
            return
        # Attributes added after the span started reach span exporters only: built only for them.
        attrs: dict[str, Any] = {}
        if decision is not None:
            attrs[A.DECISION] = decision
        if principal_id is not None:
            attrs[A.PRINCIPAL_ID] = principal_id
        if rules is not None:
            attrs[A.RULE_IDS] = list(o.rules)
        if reason_code is not None:
            attrs[A.REASON_CODE] = o.reason_code
        if relations is not None:
            attrs[A.RELATIONS] = list(o.relations)
        if masked_columns is not None:
            attrs[A.MASKED_COLUMNS] = list(o.masked_columns)
        if row_cap is not None:
            attrs[A.ROW_CAP] = row_cap
        if row_filters is not None:
            attrs[A.ROW_FILTERS] = list(o.row_filters)
        if policy_revision is not None:
            attrs[A.POLICY_REVISION] = policy_revision
        if (sql is not None or sql_redacted is not None) and o.sql is not None:
            attrs[A.SQL_ORIGINAL_LENGTH] = o.sql.length
            if o.sql.text is not None:
                attrs[A.SQL_ORIGINAL_REDACTED] = o.sql.text
            if derived_fingerprint and o.sql.fingerprint is not None:
                attrs[A.SQL_FINGERPRINT] = o.sql.fingerprint
        sent_text = o.sql_sent.text if o.sql_sent is not None else None
        if (sent_sql is not None or sent_sql_redacted is not None) and sent_text is not None:
            attrs[A.SQL_REDACTED] = sent_text
        if fingerprint is not None:
            attrs[A.SQL_FINGERPRINT] = fingerprint
        if rows_returned is not None:
            attrs[A.ROWS_RETURNED] = rows_returned
        if truncated is not None:
            attrs[A.TRUNCATED] = truncated
        self.span.set_attributes(attrs)

    def set_error(self, error_type: str) -> None:
        """Mark the request failed with `error.type` (`tool_error`, a JSON-RPC code, a class name)."""
        self.error_type = error_type
        self.span.set_attribute(A.ERROR_TYPE, error_type)
        self.span.set_status(StatusCode.ERROR)

    # -- audit --------------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint given by the caller, else that of the first statement recorded."""
        o = self.outcome
        if o.fingerprint is not None:
            return o.fingerprint
        return o.fingerprint_of.fingerprint if o.fingerprint_of is not None else None

    def audit_entry(self) -> AuditEntry:
        """The audit entry of this request as recorded so far."""
        o = self.outcome
        return AuditEntry(
            method=self.method,
            tool=self.tool,
            request_id=self.request_id,
            session_id=self.session_id,
            decision=o.decision or "unknown",
            principal=o.principal,
            rules=o.rules,
            reason_code=o.reason_code,
            reason=o.reason,
            fingerprint=self.fingerprint,
            sql=o.sql,
            sql_sent=o.sql_sent,
            relations=o.relations,
            masked_columns=o.masked_columns,
            row_filters=o.row_filters,
            row_cap=o.row_cap,
            rows=o.rows,
            truncated=o.truncated,
            is_error=o.is_error,
            duration_us=int((time.perf_counter() - self.started) * 1_000_000),
            trace_id=self.trace_id,
            span_id=self.span_id,
            policy_revision=o.policy_revision,
        )

    def _before_audit(self) -> AuditEntry:
        if self.audit_record is not None:
            raise RuntimeError("this request already has its audit record")
        return self.audit_entry()

    def _after_audit(self, record: dict[str, Any] | None) -> dict[str, Any] | None:
        if record is not None:
            self.audit_record = record
            if self._exported:
                self.span.set_attribute(A.AUDIT_SEQ, int(record["seq"]))
            self._telemetry.emit_audit_record(record, self.span)
        return record

    def audit_failed(self) -> None:
        """The audit record (or journal line) of this request could not be written: a deny."""
        self._telemetry.metrics.audit_failure()
        self.record_decision(decision="deny", reason_code=A.AUDIT_WRITE_FAILED, is_error=True)

    def audit(self, log: AuditLog, intent: Intent | None = None) -> dict[str, Any] | None:
        """Append this request's record to `log` (once), then emit it as an OpenTelemetry log record.

        Raises `AuditWriteError` (strict log): the span is then marked deny/`audit.write_failed`
        and the caller must answer the client with a deny.
        """
        entry = self._before_audit()
        try:
            record = log.append(entry, intent=intent)
        except AuditWriteError:
            self.audit_failed()
            raise
        return self._after_audit(record)

    async def audit_async(self, log: AuditLog, intent: Intent | None = None) -> dict[str, Any] | None:
        """`audit` for the event loop: the record joins the log's next group commit, or, when
        this is the only request in flight and the disk is fast, is committed on the loop
        (`AuditLog.append_async`); returns once it is durable (strict log), or, for a call
        journaled as `intent`, once the journal line is durable and the record written."""
        entry = self._before_audit()
        try:
            # Alone: no other request is being handled, so nothing else waits on this loop.
            record = await log.append_async(entry, alone=self._telemetry.open_requests <= 1, intent=intent)
        except AuditWriteError:
            self.audit_failed()
            raise
        return self._after_audit(record)

    # -- end ----------------------------------------------------------------------------------

    def _finish(self) -> None:
        m = self._telemetry.metrics
        if not m.enabled:
            return
        o = self.outcome
        guard = sum(s for name, s in o.stage_seconds.items() if name in A.GUARD_STAGES)
        if o.decision is not None:
            m.decision(o.decision, o.reason_code, self.method, self.tool)
            if guard:
                m.guard_duration(guard, o.decision)
        m.operation_duration(time.perf_counter() - self.started, self.method, self.tool, self.error_type)
