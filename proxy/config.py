"""The proxy's configuration file (YAML, validated with pydantic).

    upstream:                      # exactly one of command / url
      command: [npx, -y, "@modelcontextprotocol/server-postgres", "postgresql://..."]
      # url: http://127.0.0.1:8000/mcp
      protocol: auto               # auto | legacy | 2026-07-28
      call_timeout_s: 30
    policy: [policies/analyst.yaml]  # files or directories; required (no policy: no start)
    tool_map:
      preset: auto                 # auto (detect) | pgwarden | server-postgres | postgres-mcp-pro | ...
      tools:                       # confirmations and overrides
        run_sql: {sql: {name: statement}, result: json_rows}
    catalog_dsn: postgresql://reader@db/app   # column lists for masks (read-only introspection)
    principal: {id: ann, roles: [analyst]}    # the stdio caller
    listen: stdio                  # or http://127.0.0.1:8808/mcp
    http_responses: sse            # HTTP only: sse (default) or json (see below)
    auth: {...}                    # HTTP only: see pgwarden.proxy.auth.AuthConfig
    audit: {path: pgwarden-audit.jsonl, strict: true}
    telemetry: {traces: otlp}

`http_responses: json` answers each request POST with one JSON body instead of an SSE stream:
much cheaper per call (clients keep their connection), but nothing tied to a call in flight
reaches the client (upstream progress is dropped; upstream sampling, elicitation and roots
requests during a call fail). Use it when the upstream sends none of these, as Postgres MCP
servers typically do not. Unset, `$PGWARDEN_HTTP_RESPONSES` decides, else `sse`.

Command-line options override the file. Errors name the field path (`upstream.url: ...`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pgwarden.proxy.auth.config import AuthConfig
from pgwarden.proxy.results.formats import ResultFormat
from pgwarden.proxy.telemetry.config import TelemetryConfig
from pgwarden.proxy.toolmaps.model import SqlArgument, ToolSpec
from pgwarden.proxy.toolmaps.presets import PRESETS


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpstreamConfig(_Strict):
    name: str = "upstream"
    command: list[str] | None = None
    url: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    protocol: Literal["auto", "legacy", "2026-07-28"] = "auto"
    call_timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=20.0, gt=0)
    restart_max_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> UpstreamConfig:
        if bool(self.command) == bool(self.url):
            raise ValueError("give exactly one of command (stdio) or url (Streamable HTTP)")
        if self.url is not None and urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError("url must be http(s)://…")
        return self


class SqlArgumentConfig(_Strict):
    name: str
    kind: Literal["string", "list"] = "string"


class ToolConfig(_Strict):
    sql: SqlArgumentConfig | None = None
    table: str | None = None
    lists_tables: bool = False
    deny: str | None = None
    result: ResultFormat = "opaque"
    rows_path: list[str] = Field(default_factory=list)

    def spec(self) -> ToolSpec:
        sql = SqlArgument(self.sql.name, self.sql.kind) if self.sql is not None else None
        return ToolSpec(
            sql=sql,
            table=self.table,
            lists_tables=self.lists_tables,
            deny=self.deny,
            result=self.result,
            rows_path=tuple(self.rows_path),
        )


class ToolMapConfig(_Strict):
    preset: str = "auto"
    tools: dict[str, ToolConfig] = Field(default_factory=dict)

    @field_validator("preset")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ("auto", "none", *PRESETS):
            raise ValueError(f"unknown preset {value!r}; choose auto, none or one of {', '.join(PRESETS)}")
        return value


def default_audit_path() -> str:
    """Where the audit log goes when the configuration does not say (per-user data directory)."""
    import platformdirs

    return str(Path(platformdirs.user_data_dir("pgwarden")) / "audit" / "proxy-audit.jsonl")


class AuditConfig(_Strict):
    """Every call is audited: there is no switch to turn the audit log off."""

    path: str = Field(default_factory=default_audit_path)
    strict: bool = True  # a call whose record cannot be written is denied


class ProxyConfig(_Strict):
    upstream: UpstreamConfig
    policy: list[str] = Field(default_factory=list)
    tool_map: ToolMapConfig = ToolMapConfig()
    catalog_dsn: str | None = None
    catalog: dict[str, list[str]] = Field(default_factory=dict)  # declared columns: {"public.t": [cols]}
    principal: dict[str, Any] | None = None
    listen: str = "stdio"
    http_responses: Literal["sse", "json"] | None = None  # None: $PGWARDEN_HTTP_RESPONSES, else sse
    auth: AuthConfig | None = None
    audit: AuditConfig = AuditConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    forward_upstream_logs: bool = True

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _complete(self) -> ProxyConfig:
        if not self.policy:
            raise ValueError("no policy configured: pgwarden never runs without one (policy: [files])")
        if parse_listen(self.listen) is None and self.principal is None:
            raise ValueError("a stdio proxy needs a principal (principal: {id: ..., roles: [...]})")
        return self


def parse_listen(value: str) -> tuple[str, int, str] | None:
    """None for stdio, else (host, port, path) of an `http://HOST:PORT/path` listen address."""
    if value == "stdio":
        return None
    parts = urlsplit(value)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError("listen is stdio or http://HOST:PORT/path")
    return parts.hostname, parts.port, parts.path or "/mcp"


def _location(error: Any) -> str:
    return ".".join(str(p) for p in error["loc"]) or "(top level)"


def load_config(data: dict[str, Any], *, source: str = "configuration") -> ProxyConfig:
    """Validate a configuration mapping; `ConfigError` lists every problem with its field path."""
    try:
        return ProxyConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {_location(e)}: {e['msg']}" for e in exc.errors(include_url=False)]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file (relative paths inside stay relative to the caller)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data
