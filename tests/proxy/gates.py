"""Gates for relay-level tests only: they let the relay be tested without the guard and the
policy engine. The product never uses them (it refuses to start without a policy)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from pgwarden.proxy.pipeline.gate import Allowed, CallContext, Denied, ListKind, Outcome, Verdict
from pgwarden.proxy.relay.wire import tool_error

JSON = dict[str, Any]


class _AllowExchange:
    def __init__(self, gate: AllowAllGate) -> None:
        self.gate = gate

    def check_tool_call(self, tool: str, arguments: Mapping[str, Any]) -> Verdict:
        self.gate.calls.append((tool, dict(arguments)))
        return Allowed()

    def check_request(self, params: Mapping[str, Any]) -> Verdict:
        return Allowed()

    def visible(self, kind: ListKind, items: list[JSON]) -> list[JSON]:
        return items

    def upstream(self) -> Any:
        return nullcontext()

    async def finish(self, verdict: Verdict | None, outcome: Outcome) -> JSON | None:
        self.gate.finished.append(outcome)
        return None


class _DenyExchange(_AllowExchange):
    def check_tool_call(self, tool: str, arguments: Mapping[str, Any]) -> Verdict:
        self.gate.calls.append((tool, dict(arguments)))
        return Denied("policy.no_matching_allow", "no policy allows this call")

    def check_request(self, params: Mapping[str, Any]) -> Verdict:
        return Denied("policy.no_matching_allow", "no policy allows this request")

    def visible(self, kind: ListKind, items: list[JSON]) -> list[JSON]:
        return []

    async def finish(self, verdict: Verdict | None, outcome: Outcome) -> JSON | None:
        self.gate.finished.append(outcome)
        if isinstance(verdict, Denied):
            return tool_error(f"pgwarden denied this call ({verdict.reason_code}): {verdict.message}")
        return None


class AllowAllGate:
    """Everything goes through unchanged; records what it saw."""

    exchange = _AllowExchange

    def __init__(self) -> None:
        self.calls: list[tuple[str, JSON]] = []
        self.finished: list[Outcome] = []
        self.opened: list[CallContext] = []

    @contextmanager
    def open(
        self,
        context: CallContext,
        *,
        tool: str | None = None,
        prompt: str | None = None,
        uri: str | None = None,
    ) -> Iterator[Any]:
        self.opened.append(context)
        yield self.exchange(self)


class DenyAllGate(AllowAllGate):
    """Nothing goes through; lists come back empty."""

    exchange = _DenyExchange
