"""The policy file format, version 1, as pydantic models (see policies/README.md).

Shape checks live here (types, required keys, allowed values, no unknown keys); checks that
need more context — CEL compilation, globs, the catalog, duplicate ids — live in `loader`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

METHODS = ("tools/call", "tools/list", "resources/read", "resources/list", "prompts/get",
           "prompts/list")
Method = Literal["tools/call", "tools/list", "resources/read", "resources/list", "prompts/get",
                 "prompts/list"]
MASK_PARAMS: dict[str, frozenset[str]] = {
    "null": frozenset(),
    "fixed": frozenset({"text"}),
    "partial": frozenset({"keep_last", "fill"}),
    "email": frozenset(),
    "hash": frozenset({"salt"}),
    "sql": frozenset({"expression"}),
}
RULE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class MaskSpec(_Strict):
    """A column mask: `kind` plus that kind's parameters."""

    kind: Literal["null", "fixed", "partial", "email", "hash", "sql"]
    text: str | None = None
    keep_last: int | None = Field(default=None, ge=0, le=1000)
    fill: str | None = Field(default=None, min_length=1, max_length=8)
    salt: str | None = None
    expression: str | None = Field(default=None, min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _params_fit_kind(self) -> MaskSpec:
        given = {name for name in ("text", "keep_last", "fill", "salt", "expression")
                 if getattr(self, name) is not None}
        extra = given - MASK_PARAMS[self.kind]
        if extra:
            raise ValueError(f"mask kind {self.kind!r} takes no parameter {', '.join(sorted(extra))}")
        if self.kind == "sql" and self.expression is None:
            raise ValueError("mask kind 'sql' needs an 'expression'")
        return self

    def params(self) -> tuple[tuple[str, Any], ...]:
        return tuple(sorted((name, getattr(self, name)) for name in MASK_PARAMS[self.kind]
                            if getattr(self, name) is not None))


def _mask_shorthand(value: Any) -> Any:
    """`email` / `"null"` / YAML null mean `{kind: ...}`; a bare null is the (strictest) null mask."""
    if value is None:
        return {"kind": "null"}
    if isinstance(value, str):
        return {"kind": value}
    return value


class RuleSpec(_Strict):
    """One rule as written in a policy file."""

    id: str = Field(pattern=RULE_ID_PATTERN)
    description: str = ""
    effect: Literal["allow", "deny"]
    when: str = Field(min_length=1, max_length=4000)
    reason: str | None = Field(default=None, max_length=500)
    methods: list[Method] = Field(default_factory=lambda: list[Method](["tools/call"]), min_length=1)
    tools: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    tables: list[str] = Field(default_factory=list)
    masks: dict[str, MaskSpec] = Field(default_factory=dict)
    row_filters: dict[str, str] = Field(default_factory=dict)
    row_cap: int | None = Field(default=None, ge=0)
    functions: list[str] = Field(default_factory=list)

    @field_validator("masks", mode="before")
    @classmethod
    def _masks_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _mask_shorthand(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _deny_has_no_obligations(self) -> RuleSpec:
        if self.effect == "deny":
            carried = [name for name in ("masks", "row_filters", "functions") if getattr(self, name)]
            if self.row_cap is not None:
                carried.append("row_cap")
            if carried:
                raise ValueError(f"a deny rule carries no obligations (remove {', '.join(carried)}); "
                                 "obligations belong to allow rules")
        return self


class PolicyFileSpec(_Strict):
    """A whole policy file; its rules are validated one by one so each reports its own problems."""

    version: Literal[1]
    description: str = ""
    search_path: list[str] | None = Field(default=None, min_length=1)
    rules: list[dict[str, Any]] = Field(min_length=1)   # each validated as a `RuleSpec`
