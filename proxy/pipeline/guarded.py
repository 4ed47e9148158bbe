"""The real gate: guard (analyse, rewrite) + policy (decide) + result filters + audit.

One `GuardedExchange` per policed request, inside one telemetry request span:

    tools/call of an SQL tool: find the SQL (tool map) → parse and analyse (guard) → decide
    (policy) → rewrite under the obligations (guard, re-validated by pglast) → forward the
    rewritten arguments → filter the result (row cap, masks) → audit.

A tool the map does not know is decided by the policy as a tool without SQL, except that a
call whose arguments look like SQL is denied (an unmapped SQL tool would bypass the guard).
Every error is a deny; every request leaves exactly one audit record.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR

from pgwarden.proxy.audit.journal import Intent
from pgwarden.proxy.audit.log import AuditLog, AuditWriteError
from pgwarden.proxy.audit.redact import RedactedSQL, redact_normalized, redact_scanned, redact_sql
from pgwarden.proxy.guard.catalog import Catalog
from pgwarden.proxy.guard.enforce import enforce
from pgwarden.proxy.guard.model import Analysis, GuardDenied, Mask, Obligations, Reason, Rewrite
from pgwarden.proxy.guard.parse import Statement, parse_statement, precheck
from pgwarden.proxy.guard.shapes import Shape, ShapeCache
from pgwarden.proxy.guard.tokens import Scanned, scan_sql
from pgwarden.proxy.pipeline.gate import JSON, Allowed, CallContext, Denied, ListKind, Outcome, Verdict
from pgwarden.proxy.policy.activation import Principal as PolicyPrincipal
from pgwarden.proxy.policy.activation import RequestInfo
from pgwarden.proxy.policy.engine import Decision, PolicySet
from pgwarden.proxy.relay.wire import tool_error
from pgwarden.proxy.results.filters import ResultPlan, filter_result
from pgwarden.proxy.telemetry import (
    AUDIT_WRITE_FAILED,
    SPAN_ANALYSE,
    SPAN_DECIDE,
    SPAN_REWRITE,
    SPAN_UPSTREAM,
    Telemetry,
)
from pgwarden.proxy.telemetry.request import RequestSpan
from pgwarden.proxy.toolmaps.detect import suggest
from pgwarden.proxy.toolmaps.model import ToolMap, ToolSpec, looks_like_sql_arguments
from pgwarden.proxy.toolmaps.resources import resource_relation, table_argument_relation

logger = logging.getLogger(__name__)

PolicySource = Callable[[], PolicySet]
"""The current policy (a `PolicyWatcher.current`, or a constant for a fixed policy)."""

AUDIT_FAILED_TEXT = "pgwarden could not write the audit record of this call, so its result is withheld."

STATEMENT_CACHE_SIZE = 256
"""Statements (parsed, analysed and redacted) kept per gate, by exact text and search path."""
CACHEABLE_SQL_CHARS = 8192  # longer statements are analysed every time (bounded memory)
SHAPE_CACHE_ENV = "PGWARDEN_SHAPE_CACHE"  # "off" disables learned shapes (benchmarks compare both)

NETWORK_TRANSPORT = {"stdio": "pipe", "http": "tcp"}
"""The relay's front transport as the semantic conventions' `network.transport` value."""


def principal_id(principal: Any) -> str:
    if isinstance(principal, Mapping):
        return str(principal.get("id", ""))
    return str(getattr(principal, "id", ""))


def _principal_mapping(principal: Any) -> Mapping[str, Any]:
    if isinstance(principal, Mapping):
        return principal
    to_cel = getattr(principal, "to_cel", None)
    if callable(to_cel):
        mapping: Mapping[str, Any] = to_cel()
        return mapping
    raise TypeError("a principal is a mapping or has to_cel()")


def denied_text(reason_code: str, message: str) -> str:
    return f"pgwarden denied this call ({reason_code}): {message}"


@dataclass(frozen=True, slots=True)
class Analysed:
    """One statement of a call after analysis: parsed, or matched to a learned shape."""

    sql: str
    search_path: tuple[str, ...]
    context: Hashable
    scanned: Scanned | None
    statement: Statement | None  # None when a learned shape stands in for it
    shape: Shape | None
    redacted: RedactedSQL

    @property
    def analysis(self) -> Analysis:
        if self.shape is not None:
            return self.shape.analysis
        assert self.statement is not None
        return self.statement.analysis


class GuardedGate:
    """The gate the product runs with. See the module docstring."""

    def __init__(
        self,
        policy: PolicySource,
        *,
        tool_map: ToolMap,
        catalog: Catalog | None = None,
        telemetry: Telemetry | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.policy = policy
        self.tool_map = tool_map
        self.catalog = catalog
        self.telemetry = telemetry
        self.audit = audit
        self.sql_looking_tools: set[str] = set()  # unmapped tools whose schema looks like SQL
        self._principals: dict[int, tuple[Any, PolicyPrincipal]] = {}
        self._statements: OrderedDict[tuple[str, tuple[str, ...]], tuple[Statement, RedactedSQL]]
        self._statements = OrderedDict()
        self.shapes: ShapeCache | None = None if os.environ.get(SHAPE_CACHE_ENV) == "off" else ShapeCache()
        self.template_fills = 0  # statements served from a learned shape's template (a counter)

    def statement(self, sql: str, search_path: tuple[str, ...],
                  scanned: Scanned | None = None) -> tuple[Statement, RedactedSQL]:
        """`parse_statement` of `sql` and its redaction for the audit record, cached by exact text.

        Both are pure functions of the text and the search path (no catalog is involved), and a
        `Statement` is never mutated (`enforce` rewrites a copy), so a statement sent again is
        not parsed again. A denied statement raises `GuardDenied` and is never cached.
        """
        key = (sql, search_path)
        hit = self._statements.get(key)
        if hit is not None:
            self._statements.move_to_end(key)
            return hit
        statement = parse_statement(sql, search_path=search_path)
        # The guard accepted the text, so Postgres's grammar did: the scan alone redacts it.
        entry = (statement, redact_scanned(scanned) if scanned is not None else redact_sql(sql))
        if len(sql) <= CACHEABLE_SQL_CHARS:
            self._statements[key] = entry
            if len(self._statements) > STATEMENT_CACHE_SIZE:
                self._statements.popitem(last=False)
        return entry

    def _context(self, search_path: tuple[str, ...]) -> Hashable:
        """What a learned shape depends on besides the text: search path and catalog contents."""
        catalog = self.catalog
        return (search_path, id(catalog), catalog.generation if catalog is not None else 0)

    def analyse(self, sql: str, search_path: tuple[str, ...]) -> Analysed:
        """`sql` analysed: from a learned shape when it has one, else parsed (`statement`)."""
        precheck(sql)
        scanned = scan_sql(sql) if self.shapes is not None and len(sql) <= CACHEABLE_SQL_CHARS else None
        context = self._context(search_path)
        if scanned is not None and self.shapes is not None:
            shape = self.shapes.find(scanned, context)
            if shape is not None:
                return Analysed(sql, search_path, context, scanned, None, shape, redact_scanned(scanned))
        statement, redacted = self.statement(sql, search_path, scanned)
        return Analysed(sql, search_path, context, scanned, statement, None, redacted)

    def rewrite(self, analysed: Analysed, obligations: Obligations) -> tuple[Rewrite, RedactedSQL]:
        """`enforce` of the analysed statement, or its learned template filled with its constants
        and confirmed by Postgres's parser; with the redaction of the SQL to send for the audit."""
        shape, scanned = analysed.shape, analysed.scanned
        if shape is not None and scanned is not None and self.shapes is not None:
            template = self.shapes.template(shape, obligations)
            if template is not None:
                sql = template.checked_fill(scanned.constants)
                self.template_fills += 1
                # Constants are all placeholders in the redaction: it is the same for every fill.
                known = template.memo.get("redacted")
                if not isinstance(known, RedactedSQL):
                    known = template.memo["redacted"] = redact_normalized(sql, template.rewrite.normalized)
                redacted = dataclasses.replace(known, length=len(sql))
                return dataclasses.replace(template.rewrite, sql=sql), redacted
        statement = analysed.statement
        if statement is None:
            statement, _ = self.statement(analysed.sql, analysed.search_path, scanned)
        rewrite = enforce(statement, obligations, self.catalog)
        redacted = redact_normalized(rewrite.sql, rewrite.normalized)
        if scanned is not None and self.shapes is not None:
            self.shapes.learn(scanned, analysed.context, statement, obligations, rewrite, self.catalog)
        return rewrite, redacted

    def prepared(self, principal: Any) -> PolicyPrincipal:
        """The principal converted once for the policy engine (cached per principal object)."""
        key = id(principal)
        hit = self._principals.get(key)
        if hit is not None and hit[0] is principal:
            return hit[1]
        if len(self._principals) > 1024:
            self._principals.clear()
        converted = PolicySet.prepare_principal(_principal_mapping(principal))
        self._principals[key] = (principal, converted)
        return converted

    @contextmanager
    def open(
        self,
        context: CallContext,
        *,
        tool: str | None = None,
        prompt: str | None = None,
        uri: str | None = None,
    ) -> Iterator[GuardedExchange]:
        span_cm: AbstractContextManager[RequestSpan | None] = nullcontext()
        if self.telemetry is not None:
            span_cm = self.telemetry.request_span(
                method=context.method,
                tool=tool,
                prompt=prompt,
                resource_uri=uri,
                request_id=context.request_id,
                protocol_version=context.protocol_version,
                session_id=context.session_id,
                parent_meta=context.meta,
                transport=NETWORK_TRANSPORT.get(context.transport, context.transport),
            )
        with span_cm as span:
            exchange = GuardedExchange(self, context, span, tool=tool, prompt=prompt, uri=uri)
            try:
                yield exchange
            finally:
                if not exchange.finished:  # cancelled or failed before finish: still one record
                    exchange.record(is_error=True)
                    exchange.write_audit(raising=False)


class GuardedExchange:
    """One policed request (see `pgwarden.proxy.pipeline.gate.Exchange`)."""

    def __init__(
        self,
        gate: GuardedGate,
        context: CallContext,
        span: RequestSpan | None,
        *,
        tool: str | None,
        prompt: str | None,
        uri: str | None,
    ) -> None:
        self.gate = gate
        self.context = context
        self.span = span
        self.tool, self.prompt, self.uri = tool, prompt, uri
        self.policy = gate.policy()
        self.principal = gate.prepared(context.principal)
        self.plan: ResultPlan | None = None
        self.spec: ToolSpec | None = None
        self.intent: Intent | None = None  # the journaled decision of a forwarded call
        self.finished = False
        self.record(principal_id=principal_id(context.principal), policy_revision=self.policy.revision)

    # -- telemetry / audit helpers --------------------------------------------------------------

    def record(self, **values: Any) -> None:
        if self.span is not None:
            self.span.record_decision(**values)

    def stage(self, name: str) -> AbstractContextManager[Any]:
        return self.span.child(name) if self.span is not None else nullcontext()

    def write_audit(self, *, raising: bool = True) -> None:
        log = self.gate.audit
        if log is None or self.span is None:
            return
        try:
            self.span.audit(log, self.intent)
        except AuditWriteError:
            if raising:
                raise
            logger.error("audit record could not be written")

    async def write_audit_async(self) -> None:
        """The audit record, written on a worker thread (a strict log waits for fsync)."""
        log = self.gate.audit
        if log is None or self.span is None:
            return
        await self.span.audit_async(log, self.intent)

    def _deny(self, code: str, message: str, decision: Decision | None = None) -> Denied:
        self.record(
            decision="deny",
            reason_code=code,
            reason=message,
            rules=decision.rules if decision is not None else None,
            relations=decision.relations if decision is not None else None,
        )
        return Denied(code, message)

    def _request(self, method: str, name: str, arguments: Mapping[str, Any]) -> RequestInfo:
        return RequestInfo(
            method=method, tool=name, arguments=dict(arguments), upstream=self.context.upstream
        )

    def _default_schema(self) -> str:
        return self.policy.search_path[0] if self.policy.search_path else "public"

    # -- tools/call -----------------------------------------------------------------------------

    def check_tool_call(self, tool: str, arguments: Mapping[str, Any]) -> Verdict:
        """The verdict on a tools/call; an allowed call's decision is journaled before it is
        forwarded (strict audit log), so its answer need not wait for the record's sync."""
        verdict = self._check_tool_call(tool, arguments)
        if isinstance(verdict, Allowed):
            return self._journal() or verdict
        return verdict

    def _journal(self) -> Denied | None:
        log = self.gate.audit
        if log is None or self.span is None:
            return None
        try:
            self.intent = log.intend(self.span.audit_entry())
        except AuditWriteError:
            logger.error("the decision of a call could not be journaled")
            self.span.audit_failed()
            return Denied(AUDIT_WRITE_FAILED, AUDIT_FAILED_TEXT)
        return None

    def _check_tool_call(self, tool: str, arguments: Mapping[str, Any]) -> Verdict:
        spec = self.spec = self.gate.tool_map.spec(tool)
        if self.span is not None:  # a no-op unless the operator opted in (telemetry.capture_sensitive)
            raw_sql = arguments.get(spec.sql.name) if spec is not None and spec.sql is not None else None
            self.span.record_sensitive(sql=raw_sql if isinstance(raw_sql, str) else None, arguments=arguments)
        if spec is not None and spec.deny:
            return self._deny(Reason.TOOL_NOT_ALLOWED, spec.deny)
        if spec is None or spec.sql is None:
            return self._check_plain_tool(tool, arguments, spec)
        raw = arguments.get(spec.sql.name)
        statements: list[str]
        if spec.sql.kind == "string":
            if not isinstance(raw, str):
                return self._deny(Reason.EMPTY, f"argument {spec.sql.name!r} must be an SQL string")
            statements = [raw]
        else:
            if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
                return self._deny(Reason.EMPTY, f"argument {spec.sql.name!r} must be a list of SQL strings")
            statements = list(raw)
        rewritten: list[str] = []
        for sql in statements:
            verdict = self._check_statement(tool, arguments, sql, spec)
            if isinstance(verdict, Denied):
                return verdict
            rewritten.append(verdict)
        new_arguments = dict(arguments)
        new_arguments[spec.sql.name] = rewritten[0] if spec.sql.kind == "string" else rewritten
        return Allowed(new_arguments)

    def _check_plain_tool(self, tool: str, arguments: Mapping[str, Any], spec: ToolSpec | None) -> Verdict:
        if spec is None:
            suspicious = looks_like_sql_arguments(arguments)
            if suspicious is not None or tool in self.gate.sql_looking_tools:
                return self._deny(
                    Reason.TOOL_NOT_ALLOWED,
                    f"tool {tool!r} looks like it runs SQL but is not in pgwarden's tool map; an operator "
                    "must confirm it in the configuration (tool_map) before it can be used",
                )
        if spec is not None and spec.table is not None:
            relation = table_argument_relation(
                arguments.get(spec.table), default_schema=self._default_schema()
            )
            if relation is None or not self.policy.may_read_relation(
                self.principal, relation, upstream=self.context.upstream
            ):
                return self._deny(Reason.RELATION_NOT_ALLOWED, "that table is not allowed by policy")
            self.record(relations=(relation,))
        with self.stage(SPAN_DECIDE):
            decision = self.policy.decide(self.principal, self._request("tools/call", tool, arguments), None)
        if not decision.allowed:
            return self._deny(str(decision.reason_code or Reason.POLICY_NO_MATCH), decision.reason, decision)
        self.record(decision="allow", rules=decision.rules)
        return Allowed()

    def _check_statement(
        self, tool: str, arguments: Mapping[str, Any], sql: str, spec: ToolSpec
    ) -> str | Denied:
        policy = self.policy
        try:
            with self.stage(SPAN_ANALYSE):
                analysed = self.gate.analyse(sql, tuple(policy.search_path))
        except GuardDenied as denied:
            self.record(sql=sql)
            return self._deny(denied.code, denied.message)
        self.record(sql_redacted=analysed.redacted)
        with self.stage(SPAN_DECIDE):
            decision = policy.decide(
                self.principal, self._request("tools/call", tool, arguments), analysed.analysis
            )
        if not decision.allowed:
            return self._deny(str(decision.reason_code or Reason.POLICY_NO_MATCH), decision.reason, decision)
        obligations = decision.obligations
        cap = obligations.row_cap
        if cap is not None and spec.result != "opaque":
            # One row more than the cap tells whether the cap cut anything; the result filter
            # drops it. Only where the result format is known, so the extra row never leaks.
            obligations = dataclasses.replace(obligations, row_cap=cap + 1)
        try:
            with self.stage(SPAN_REWRITE):
                rewrite, sent_redacted = self.gate.rewrite(analysed, obligations)
        except GuardDenied as denied:
            return self._deny(denied.code, denied.message, decision)
        masks: dict[str, list[Mask]] = {}
        for relation, columns in decision.obligations.masks.items():
            for column, mask in columns.items():
                if f"{relation}.{column}" in rewrite.masked_columns or relation in rewrite.relations:
                    masks.setdefault(column, []).append(mask)
        self.plan = ResultPlan(
            format=spec.result,
            rows_path=spec.rows_path,
            row_cap=cap,
            masks={column: tuple(dict.fromkeys(found)) for column, found in masks.items()},
        )
        self.record(
            decision="allow",
            rules=decision.rules,
            relations=rewrite.relations,
            masked_columns=rewrite.masked_columns,
            row_filters=rewrite.row_filters_applied,
            row_cap=cap,
            sent_sql_redacted=sent_redacted,
            fingerprint=rewrite.fingerprint,
        )
        return rewrite.sql

    # -- other requests -----------------------------------------------------------------------------

    def check_request(self, params: Mapping[str, Any]) -> Verdict:
        method = self.context.method
        if method in ("resources/read", "resources/subscribe"):
            uri = params.get("uri")
            if not isinstance(uri, str):
                return self._deny(Reason.POLICY_NO_MATCH, "a resource URI is required")
            return self._check_resource(uri)
        if method == "prompts/get":
            name, arguments = params.get("name"), params.get("arguments") or {}
            if not isinstance(name, str) or not isinstance(arguments, Mapping):
                return self._deny(Reason.POLICY_NO_MATCH, "a prompt name is required")
            return self._decide("prompts/get", name, arguments)
        if method == "completion/complete":
            ref = params.get("ref")
            if (
                isinstance(ref, Mapping)
                and ref.get("type") == "ref/prompt"
                and isinstance(ref.get("name"), str)
            ):
                return self._decide("prompts/get", ref["name"], {})
            if isinstance(ref, Mapping) and isinstance(ref.get("uri"), str):
                return self._decide("resources/read", ref["uri"], {})
            return self._deny(Reason.POLICY_NO_MATCH, "completion needs a prompt or resource reference")
        return self._deny(Reason.POLICY_NO_MATCH, f"{method} is not allowed by policy")

    def _check_resource(self, uri: str) -> Verdict:
        relation = resource_relation(uri, default_schema=self._default_schema())
        if relation is not None:
            self.record(relations=(relation,))
            if self.policy.may_read_relation(self.principal, relation, upstream=self.context.upstream):
                self.record(decision="allow")
                return Allowed()
            return self._deny(Reason.RELATION_NOT_ALLOWED, "that table is not allowed by policy")
        return self._decide("resources/read", uri, {})

    def _decide(self, method: str, name: str, arguments: Mapping[str, Any]) -> Verdict:
        with self.stage(SPAN_DECIDE):
            decision = self.policy.decide(self.principal, self._request(method, name, arguments), None)
        if not decision.allowed:
            return self._deny(str(decision.reason_code or Reason.POLICY_NO_MATCH), decision.reason, decision)
        self.record(decision="allow", rules=decision.rules)
        return Allowed()

    def visible(self, kind: ListKind, items: list[JSON]) -> list[JSON]:
        policy, who, upstream = self.policy, self.principal, self.context.upstream
        if kind == "tools":
            tool_map = self.gate.tool_map
            for found in suggest(items, tool_map):
                if found.tool not in self.gate.sql_looking_tools:
                    logger.warning(
                        "upstream tool %r looks like it runs SQL; confirm it in tool_map", found.tool
                    )
                    self.gate.sql_looking_tools.add(found.tool)
            shown = []
            for item in items:
                name = item.get("name")
                spec = tool_map.spec(name) if isinstance(name, str) else None
                if not isinstance(name, str) or (spec is not None and spec.deny):
                    continue
                if spec is None and name in self.gate.sql_looking_tools:
                    continue
                if policy.may_call_tool(who, name, upstream=upstream):
                    shown.append(item)
        elif kind == "prompts":
            shown = [
                i
                for i in items
                if isinstance(i.get("name"), str)
                and policy.may_call_tool(who, i["name"], method="prompts/get", upstream=upstream)
            ]
        elif kind == "resources":
            shown = [i for i in items if isinstance(i.get("uri"), str) and self._may_read_resource(i["uri"])]
        else:
            shown = [
                i
                for i in items
                if isinstance(i.get("uriTemplate"), str)
                and policy.may_call_tool(who, i["uriTemplate"], method="resources/read", upstream=upstream)
            ]
        self.record(decision="allow", rows_returned=len(shown))
        return shown

    def _may_read_resource(self, uri: str) -> bool:
        relation = resource_relation(uri, default_schema=self._default_schema())
        if relation is not None:
            return self.policy.may_read_relation(self.principal, relation, upstream=self.context.upstream)
        return self.policy.may_call_tool(
            self.principal, uri, method="resources/read", upstream=self.context.upstream
        )

    def upstream(self) -> AbstractContextManager[Any]:
        return self.stage(SPAN_UPSTREAM)

    # -- the end --------------------------------------------------------------------------------

    async def finish(self, verdict: Verdict | None, outcome: Outcome) -> JSON | None:
        self.finished = True
        tool_call = self.context.method == "tools/call"
        result: JSON | None
        if isinstance(verdict, Denied):
            result = tool_error(denied_text(verdict.reason_code, verdict.message)) if tool_call else None
            self.record(is_error=True)
        elif outcome.result is not None:
            result = self._filtered(outcome.result) if tool_call else None
            final = result if result is not None else outcome.result
            self.record(is_error=final.get("isError") is True)
        else:
            result = None
            self.record(is_error=True)
            if self.span is not None and outcome.error is not None:
                self.span.set_error(str(outcome.error.get("code", "error")))
        if await self._record_after_answer():
            return result
        try:
            await self.write_audit_async()
        except AuditWriteError:
            if tool_call:
                return tool_error(AUDIT_FAILED_TEXT)
            raise MCPError(code=INTERNAL_ERROR, message=AUDIT_FAILED_TEXT) from None
        return result

    async def _record_after_answer(self) -> bool:
        """Leave the record of a journaled call for after its answer, when the front runs such
        work (`CallContext.after_answer`), no span exporter waits for the record's number and
        the log's last records were written (`AuditLog.records_may_follow_answers`).

        Its decision is durable in the journal before the answer leaves (this waits for that);
        the record adds the outcome. Should the record then fail, the journal still holds the
        decision and the next start puts it in the chain (outcome lost), as after a crash.
        False: the record is written before the answer, as for every other call.
        """
        intent, span, log, later = self.intent, self.span, self.gate.audit, self.context.after_answer
        if intent is None or span is None or log is None or later is None or span.exported \
                or not log.records_may_follow_answers:
            return False
        if not intent.done:  # usually synced while the upstream worked
            with anyio.CancelScope(shield=True):
                await intent.wait_async()
        if intent.error is not None:
            return False  # the journal line is not durable: the record is, before the answer
        span.audit_deferred = True
        intent.answered = True

        async def record() -> None:
            try:
                await span.audit_async(log, intent)
            except AuditWriteError:
                logger.error("the audit record of an answered call could not be written; "
                             "its decision is in the journal for the next start")

        later.append(record)
        return True

    def _filtered(self, result: JSON) -> JSON | None:
        spec = self.spec
        if spec is not None and spec.lists_tables:
            return self._filter_table_list(result)
        if self.plan is None:
            return None
        filtered = filter_result(result, self.plan)
        self.record(rows_returned=filtered.rows, truncated=filtered.truncated)
        if filtered.values_replaced:
            logger.warning(
                "upstream returned %d unmasked values under masked columns", filtered.values_replaced
            )
        return filtered.result

    def _filter_table_list(self, result: JSON) -> JSON | None:
        sc = result.get("structuredContent")
        tables = sc.get("tables") if isinstance(sc, dict) else None
        if not isinstance(tables, list) or not isinstance(sc, dict):
            return tool_error("pgwarden could not check this table list, so it is withheld")
        kept = [
            t
            for t in tables
            if isinstance(t, dict)
            and self.policy.may_read_relation(
                self.principal, f"{t.get('schema')}.{t.get('name')}", upstream=self.context.upstream
            )
        ]
        self.record(rows_returned=len(kept))
        text = json.dumps(kept, indent=2, default=str)
        return {
            **result,
            "structuredContent": {**sc, "tables": kept},
            "content": [{"type": "text", "text": text}],
        }
