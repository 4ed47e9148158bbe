"""Gates for relay-level tests only: they let the relay be tested without the guard and the
policy engine. The product never uses them (it refuses to start without a policy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pgwarden.proxy.pipeline.gate import Allowed, CallContext, Denied, Outcome, ToolCall, Verdict
from pgwarden.proxy.relay.wire import tool_error

JSON = dict[str, Any]


class AllowAllGate:
    """Everything goes through unchanged; records what it saw."""

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []
        self.finished: list[Outcome] = []

    def check_tool_call(self, call: ToolCall) -> Verdict:
        self.calls.append(call)
        return Allowed()

    def finish_tool_call(self, call: ToolCall, verdict: Verdict, outcome: Outcome) -> JSON | None:
        self.finished.append(outcome)
        return None

    def visible_tools(self, context: CallContext, tools: Sequence[JSON]) -> list[JSON]:
        return list(tools)

    def visible_resources(self, context: CallContext, resources: Sequence[JSON]) -> list[JSON]:
        return list(resources)

    def visible_resource_templates(self, context: CallContext, templates: Sequence[JSON]) -> list[JSON]:
        return list(templates)

    def visible_prompts(self, context: CallContext, prompts: Sequence[JSON]) -> list[JSON]:
        return list(prompts)

    def check_request(self, context: CallContext, params: Mapping[str, Any]) -> Verdict:
        return Allowed()

    def finish_request(self, context: CallContext, verdict: Verdict, outcome: Outcome) -> JSON | None:
        return None


class DenyAllGate(AllowAllGate):
    """Nothing goes through; lists come back empty."""

    def check_tool_call(self, call: ToolCall) -> Verdict:
        self.calls.append(call)
        return Denied("policy.no_matching_allow", "no policy allows this call")

    def finish_tool_call(self, call: ToolCall, verdict: Verdict, outcome: Outcome) -> JSON | None:
        self.finished.append(outcome)
        if isinstance(verdict, Denied):
            return tool_error(f"pgwarden denied this call ({verdict.reason_code}): {verdict.message}")
        return None

    def visible_tools(self, context: CallContext, tools: Sequence[JSON]) -> list[JSON]:
        return []

    def visible_resources(self, context: CallContext, resources: Sequence[JSON]) -> list[JSON]:
        return []

    def visible_resource_templates(self, context: CallContext, templates: Sequence[JSON]) -> list[JSON]:
        return []

    def visible_prompts(self, context: CallContext, prompts: Sequence[JSON]) -> list[JSON]:
        return []

    def check_request(self, context: CallContext, params: Mapping[str, Any]) -> Verdict:
        return Denied("policy.no_matching_allow", "no policy allows this request")
