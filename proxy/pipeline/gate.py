"""The narrow interface between the relay and the guard pipeline.

The relay knows MCP (methods, params, results, sessions); the gate knows security (what a
principal may call, how its SQL is rewritten, what a result may show, how it is audited).
They meet here, and only here: the relay asks before it forwards anything that carries data
and hands the gate every result before it goes back to the client.

Contract, in call order for one `tools/call`:

1. `check_tool_call(call)` - synchronous, no I/O: analyse, decide, rewrite. Returns
   `Allowed` (with the arguments to forward) or `Denied` (the relay answers the client with
   an `isError` result carrying the reason; nothing reaches the upstream).
2. the relay forwards `Allowed.arguments` upstream (or not, when denied).
3. `finish_tool_call(call, verdict, outcome)` - exactly once per call, whatever happened
   (denied, forwarded, upstream error, timeout, cancellation): filters the result where its
   format is known, audits, and returns what the client receives.

Lists are filtered with `visible_*`; a read of one resource or one prompt goes through
`check_resource_read` / `check_prompt_get` and `finish_request`. Nothing here allows by
default: an implementation that does not know a tool, a resource or a prompt denies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who asks, through which front, for which upstream. Built by the relay per request."""

    principal: Any  # pgwarden.proxy.auth.principal.Principal (opaque to the relay)
    upstream: str  # the configured upstream's name
    method: str  # the MCP method, e.g. "tools/call"
    request_id: str | int | None = None
    session_id: str | None = None  # front session (HTTP) when there is one
    protocol_version: str | None = None  # the front client's protocol version
    transport: str = "stdio"  # "stdio" | "http"
    meta: Mapping[str, Any] = field(default_factory=dict)  # trace context only (traceparent, tracestate)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One `tools/call` as the client sent it."""

    context: CallContext
    tool: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Allowed:
    """Go ahead. `arguments` is what to forward (rewritten SQL in place of the client's).

    `plan` is opaque to the relay: whatever the gate needs in `finish_*` to filter the
    result (row cap, masked columns, result format) and to audit (decision, rewrite).
    """

    arguments: Mapping[str, Any] | None = None
    plan: Any = None


@dataclass(frozen=True, slots=True)
class Denied:
    """Refused. `reason_code` is stable (see `pgwarden.proxy.guard.model.Reason`); `message` is
    short and safe to show the model: no SQL literals, no policy internals, no stack trace."""

    reason_code: str
    message: str
    plan: Any = None


Verdict = Allowed | Denied


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened upstream. Exactly one of `result` / `error` is set, or neither when the
    call never went upstream (denied) or was cancelled by the client."""

    result: JSON | None = None  # the upstream's result, wire form (camelCase keys)
    error: JSON | None = None  # a JSON-RPC error object {"code", "message", ...}
    cancelled: bool = False
    duration_s: float = 0.0


class Gate(Protocol):
    """What the relay needs from the guard pipeline. See the module docstring for the order."""

    def check_tool_call(self, call: ToolCall) -> Verdict:
        """Decide one tool call. Must not block: no I/O, CEL on the calling thread."""
        ...

    def finish_tool_call(self, call: ToolCall, verdict: Verdict, outcome: Outcome) -> JSON | None:
        """Filter and audit. Returns the result to send (None: send `outcome.error` as is).

        Called exactly once per `check_tool_call`. A gate that cannot audit a call it must
        audit strictly returns an `isError` result instead of the data.
        """
        ...

    def visible_tools(self, context: CallContext, tools: Sequence[JSON]) -> list[JSON]:
        """The tools of a `tools/list` page this principal may call (unknown tools hidden)."""
        ...

    def visible_resources(self, context: CallContext, resources: Sequence[JSON]) -> list[JSON]:
        """The resources of a `resources/list` page this principal may read."""
        ...

    def visible_resource_templates(self, context: CallContext, templates: Sequence[JSON]) -> list[JSON]:
        """The resource templates this principal may see."""
        ...

    def visible_prompts(self, context: CallContext, prompts: Sequence[JSON]) -> list[JSON]:
        """The prompts of a `prompts/list` page this principal may get."""
        ...

    def check_request(self, context: CallContext, params: Mapping[str, Any]) -> Verdict:
        """Decide a non-tool request that reads data: `resources/read`, `prompts/get`,
        `resources/subscribe`, `completion/complete`."""
        ...

    def finish_request(self, context: CallContext, verdict: Verdict, outcome: Outcome) -> JSON | None:
        """Filter and audit a request decided by `check_request` (same contract as
        `finish_tool_call`)."""
        ...
