"""What policy expressions see: the variables, declared in this one place.

* `principal` — who is calling: `id` (string), `roles` (list of strings), `tenant` (string,
  integer or null), `claims` (map: every other claim of the token or configuration). Keys the
  caller did not give are filled in (`id: ""`, `roles: []`, `tenant: null`, `claims: {}`), so
  `principal.roles` never fails; anything under `claims` may be missing: guard with `has()`.
* `request` — the MCP request: `method` (`tools/call`, `resources/read`, `resources/list`,
  `prompts/get`, `prompts/list`, `tools/list`), `tool` (the tool name; for `prompts/get` the
  prompt name, for `resources/read` the resource URI), `arguments` (map), `upstream` (name).
* `sql` — the guard's analysis of the statement (`Analysis.to_cel()`): `kind`, `relations`,
  `columns`, `star_relations`, `functions`, `limit` (-1 when not a literal), `has_limit`,
  `set_operations`, `has_aggregate`, `has_window`, `has_subquery`, `has_cte`,
  `has_recursive_cte`, `has_lateral`. For a call without SQL it is the same map with
  `kind: "none"` and empty lists, so rules can test `sql.kind` without failing.
* `now` — the decision time (a CEL timestamp, UTC).

Row-filter values see only `principal` and `now`: a value that ends up in a WHERE clause must
not come from the caller's arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from celpy.evaluation import Activation

from pgwarden.proxy.guard.model import Analysis
from pgwarden.proxy.policy.cel_runtime import CelValue, make_activation, to_cel

VARIABLES: frozenset[str] = frozenset({"principal", "request", "sql", "now"})
ROW_FILTER_VARIABLES: frozenset[str] = frozenset({"principal", "now"})

NO_SQL: dict[str, Any] = {
    "kind": "none", "relations": [], "columns": {}, "star_relations": [], "functions": [],
    "limit": -1, "has_limit": False, "set_operations": [], "has_aggregate": False,
    "has_window": False, "has_subquery": False, "has_cte": False, "has_recursive_cte": False,
    "has_lateral": False,
}


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The request being decided. `tool` is the tool, prompt name or resource URI."""

    method: str = "tools/call"
    tool: str = ""
    arguments: Mapping[str, Any] = field(default_factory=dict)
    upstream: str = ""

    def to_cel(self) -> dict[str, Any]:
        return {"method": self.method, "tool": self.tool, "arguments": dict(self.arguments),
                "upstream": self.upstream}


class Principal:
    """A principal converted once to CEL values; pass it to `decide` to skip the conversion.

    Build it once per session or token (`PolicySet.prepare_principal`), not per call.
    """

    __slots__ = ("cel", "id", "raw")

    def __init__(self, principal: Mapping[str, Any]) -> None:
        roles = principal.get("roles", [])
        if isinstance(roles, str):
            roles = [roles]
        normalized: dict[str, Any] = {
            "id": str(principal.get("id", "") or ""),
            "roles": [str(r) for r in roles],
            "tenant": principal.get("tenant"),
            "claims": dict(principal.get("claims", {}) or {}),
        }
        for key, value in principal.items():
            if key not in normalized:
                normalized[key] = value
        self.raw: Mapping[str, Any] = normalized
        self.id: str = normalized["id"]
        self.cel: CelValue = to_cel(normalized)


_NO_SQL_CEL: CelValue = to_cel(NO_SQL)


def sql_to_cel(analysis: Analysis | None) -> CelValue:
    return _NO_SQL_CEL if analysis is None else to_cel(analysis.to_cel())


def build(principal: Principal, request: RequestInfo, analysis: Analysis | None,
          now: datetime | None, variables: frozenset[str] = VARIABLES) -> Activation:
    """The activation of one decision: every program of the call evaluates against it.

    Only `variables` are converted (the engine passes those its candidate rules read);
    a program that reads another one fails, which fails closed.
    """
    values: dict[str, CelValue] = {}
    if "principal" in variables:
        values["principal"] = principal.cel
    if "request" in variables:
        values["request"] = to_cel(request.to_cel())
    if "sql" in variables:
        values["sql"] = sql_to_cel(analysis)
    if "now" in variables:
        values["now"] = to_cel(now if now is not None else datetime.now(UTC))
    return make_activation(values)


SAMPLE_PRINCIPAL = Principal({"id": "sample-user", "roles": ["sample-role"], "tenant": 1,
                              "claims": {}})
SAMPLE_REQUEST = RequestInfo(method="tools/call", tool="query", arguments={"sql": "SELECT 1"},
                             upstream="sample")
SAMPLE_ANALYSIS = Analysis(
    kind="select", relations=("public.sample",), columns={"public.sample": ("id",)},
    star_relations=(), functions=("count",), limit=10, has_limit=True, set_operations=(),
    has_aggregate=True, has_window=False, has_subquery=False, has_cte=False,
    has_recursive_cte=False, has_lateral=False,
)
SAMPLE_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def sample() -> Activation:
    """The activation used to evaluate every expression once at load time."""
    return build(SAMPLE_PRINCIPAL, SAMPLE_REQUEST, SAMPLE_ANALYSIS, SAMPLE_NOW)
