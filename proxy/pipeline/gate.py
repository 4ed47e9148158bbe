"""The narrow interface between the relay and the guard pipeline.

The relay knows MCP (methods, params, results, sessions); the gate knows security (what a
principal may call, how its SQL is rewritten, what a result may show, how it is audited).
They meet here, and only here.

For every request that is policed, the relay opens one `Exchange` and uses it in this order:

    with gate.open(context, tool=name) as exchange:       # one span, one audit record
        verdict = exchange.check_tool_call(name, arguments)  # or check_request(params)
        if isinstance(verdict, Allowed):
            with exchange.upstream():                        # the upstream leg (a child span)
                outcome = <forward verdict.arguments>
        result = await exchange.finish(verdict, outcome)     # filter the result, audit

List requests (`tools/list`, ...) use `exchange.visible(kind, items)` instead of a check.
`check_*` are synchronous and do no I/O (CEL runs on the event-loop thread); `finish` is
async because writing the audit record may wait for the disk. The exchange
audits exactly once: in `finish`, or when the block is left without it (the client cancelled,
the relay failed). Nothing here allows by default: an implementation that does not know a
tool, a resource or a prompt denies it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

JSON = dict[str, Any]
ListKind = Literal["tools", "resources", "resourceTemplates", "prompts"]
AfterAnswer = Callable[[], Awaitable[None]]
"""Work an exchange leaves until its answer has been written (see `CallContext.after_answer`)."""


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who asks, through which front, for which upstream. Built by the relay per request."""

    principal: Any  # pgwarden.proxy.auth.Principal (opaque to the relay)
    upstream: str  # the configured upstream's name
    method: str  # the MCP method, e.g. "tools/call"
    request_id: str | int | None = None
    session_id: str | None = None  # front session (HTTP) when there is one
    protocol_version: str | None = None  # the front client's protocol version
    transport: str = "stdio"  # "stdio" | "http"
    meta: Mapping[str, Any] = field(default_factory=dict)  # trace context only (traceparent, tracestate)
    # A front that runs these once the answer is written (or the client cancelled the call)
    # passes a list; an exchange may then leave work that need not delay the answer there.
    after_answer: list[AfterAnswer] | None = None


@dataclass(frozen=True, slots=True)
class Allowed:
    """Go ahead. `arguments` (tools/call) is what to forward: the rewritten SQL in place of the
    client's; None forwards the client's arguments unchanged."""

    arguments: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Denied:
    """Refused. `reason_code` is stable (see `pgwarden.proxy.guard.model.Reason`); `message` is
    short and safe to show the model: no SQL literals, no policy internals, no stack trace."""

    reason_code: str
    message: str


Verdict = Allowed | Denied


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened upstream. At most one of `result` / `error` is set; neither when the call
    never went upstream (denied)."""

    result: JSON | None = None  # the upstream's result, wire form (camelCase keys)
    error: JSON | None = None  # a JSON-RPC error object {"code", "message", ...}
    duration_s: float = 0.0


class Exchange(Protocol):
    """One policed MCP request, from decision to audit (see the module docstring)."""

    def check_tool_call(self, tool: str, arguments: Mapping[str, Any]) -> Verdict:
        """Decide a `tools/call`. No I/O."""
        ...

    def check_request(self, params: Mapping[str, Any]) -> Verdict:
        """Decide a request that reads data without a tool: `resources/read`, `prompts/get`,
        `resources/subscribe`, `completion/complete`. No I/O."""
        ...

    def visible(self, kind: ListKind, items: list[JSON]) -> list[JSON]:
        """The items of a list page the caller may use (unknown ones hidden)."""
        ...

    def upstream(self) -> AbstractContextManager[Any]:
        """Wraps the forward to the upstream (timing, a child span)."""
        ...

    async def finish(self, verdict: Verdict | None, outcome: Outcome) -> JSON | None:
        """Filter and audit (the audit write may wait for the disk, off the event loop); return
        the result the client gets (None: relay `outcome` as is).

        A denied call must come back as a result here (an `isError` tool result, or a result the
        relay turns into a JSON-RPC error for non-tool methods). An exchange that cannot write
        the audit record it must write strictly returns a deny instead of the data.
        """
        ...


class Gate(Protocol):
    """What the relay needs from the guard pipeline."""

    def open(
        self,
        context: CallContext,
        *,
        tool: str | None = None,
        prompt: str | None = None,
        uri: str | None = None,
    ) -> AbstractContextManager[Exchange]:
        """Open the exchange of one request (its span and its audit record)."""
        ...
