"""Span, metric and log attribute names: OpenTelemetry semantic conventions, then pgwarden's own.

The MCP conventions (OpenTelemetry semantic-conventions, `mcp.*` and `gen_ai.*`) name the
request; every pgwarden attribute lives under the single prefix `pgwarden.`.
"""

from __future__ import annotations

from pgwarden.proxy.guard.model import Reason

# OpenTelemetry MCP / GenAI / JSON-RPC semantic conventions.
MCP_METHOD_NAME = "mcp.method.name"
MCP_PROTOCOL_VERSION = "mcp.protocol.version"
MCP_SESSION_ID = "mcp.session.id"
MCP_RESOURCE_URI = "mcp.resource.uri"
JSONRPC_REQUEST_ID = "jsonrpc.request.id"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_PROMPT_NAME = "gen_ai.prompt.name"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"  # opt-in only: sensitive
ERROR_TYPE = "error.type"
NETWORK_TRANSPORT = "network.transport"
EXECUTE_TOOL = "execute_tool"
TOOL_ERROR = "tool_error"

# pgwarden attributes.
PRINCIPAL_ID = "pgwarden.principal.id"
DECISION = "pgwarden.decision"
RULE_IDS = "pgwarden.rule.ids"
REASON_CODE = "pgwarden.reason.code"
RELATIONS = "pgwarden.relations"
MASKED_COLUMNS = "pgwarden.masked_columns"
ROW_CAP = "pgwarden.row_cap"
ROW_FILTERS = "pgwarden.row_filters"
POLICY_REVISION = "pgwarden.policy.revision"
SQL_FINGERPRINT = "pgwarden.sql.fingerprint"
SQL_REDACTED = "pgwarden.sql.redacted"  # the rewritten SQL as sent, literals replaced
SQL_ORIGINAL_REDACTED = "pgwarden.sql.original_redacted"  # the SQL as received, literals replaced
SQL_ORIGINAL_LENGTH = "pgwarden.sql.original_length"
SQL_TEXT = "pgwarden.sql.text"  # opt-in only: the SQL as received, literals included
ROWS_RETURNED = "pgwarden.rows_returned"
TRUNCATED = "pgwarden.truncated"
AUDIT_SEQ = "pgwarden.audit.seq"
INSTANCE_ID = "pgwarden.instance.id"

# Child span names, one per pipeline stage.
SPAN_ANALYSE = "pgwarden.analyse"
SPAN_DECIDE = "pgwarden.decide"
SPAN_REWRITE = "pgwarden.rewrite"
SPAN_UPSTREAM = "pgwarden.upstream"
GUARD_STAGES = frozenset({SPAN_ANALYSE, SPAN_DECIDE, SPAN_REWRITE})

# Metric names.
METRIC_DECISIONS = "pgwarden.decisions"
METRIC_GUARD_DURATION = "pgwarden.guard.duration"
METRIC_UPSTREAM_DURATION = "pgwarden.upstream.duration"
METRIC_OPERATION_DURATION = "mcp.server.operation.duration"
METRIC_AUDIT_FAILURES = "pgwarden.audit.write_failures"

# Log event name of audit records.
AUDIT_EVENT = "pgwarden.audit"

# The reason code a proxy returns when the audit record of a decision cannot be written.
AUDIT_WRITE_FAILED = Reason.AUDIT_WRITE_FAILED.value
