"""pgwarden's own relay with a gate that checks nothing: the hop without the policy.

    python -m bench.passthrough_relay [--listen http://127.0.0.1:PORT/mcp] -- COMMAND ARGS...

Same front, upstream supervision and message handling as `pgwarden proxy`, but every request
is allowed unchanged and nothing is analysed, decided, rewritten, filtered or audited. The
difference between this and `pgwarden proxy` is what the policy pipeline itself costs.
Benchmarks only: it enforces nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import anyio

from pgwarden.proxy.config import parse_listen
from pgwarden.proxy.pipeline.gate import JSON, Allowed, CallContext, ListKind, Outcome, Verdict
from pgwarden.proxy.relay.serve import serve_http, serve_stdio
from pgwarden.proxy.relay.upstream import UpstreamSpec


class _PassExchange:
    def check_tool_call(self, tool: str, arguments: Mapping[str, Any]) -> Verdict:
        return Allowed()

    def check_request(self, params: Mapping[str, Any]) -> Verdict:
        return Allowed()

    def visible(self, kind: ListKind, items: list[JSON]) -> list[JSON]:
        return items

    def upstream(self) -> AbstractContextManager[Any]:
        return nullcontext()

    async def finish(self, verdict: Verdict | None, outcome: Outcome) -> JSON | None:
        return None


class PassThroughGate:
    @contextmanager
    def open(
        self,
        context: CallContext,
        *,
        tool: str | None = None,
        prompt: str | None = None,
        uri: str | None = None,
    ) -> Iterator[_PassExchange]:
        yield _PassExchange()


def main(argv: list[str]) -> None:
    listen = None
    if "--listen" in argv:
        listen = argv[argv.index("--listen") + 1]
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    if not command:
        raise SystemExit("usage: python -m bench.passthrough_relay [--listen URL] -- COMMAND ARGS...")
    spec = UpstreamSpec(command=tuple(command))
    gate = PassThroughGate()
    where = parse_listen(listen) if listen else None
    if where is None:
        anyio.run(lambda: serve_stdio(spec, gate, {"id": "bench"}))
    else:
        host, port, path = where
        anyio.run(
            lambda: serve_http(spec, gate, lambda _ctx: {"id": "bench"}, host=host, port=port, path=path)
        )


if __name__ == "__main__":
    main(sys.argv[1:])
