"""End-to-end harness of the security and reliability suites.

A real MCP client session (the SDK's `Client`) is held open in a background event loop (an
anyio blocking portal), talking over real stdio pipes or real HTTP on loopback to a real
`pgwarden proxy` process, which talks to a real `pgwarden server` process, which talks to a
real PostgreSQL. Tests call it synchronously: `session.call_tool("query", {"sql": ...})`
returns a `Reply` holding exactly what came back on the wire (result or JSON-RPC error).

The principals are the example policies' intended users; `PRINCIPALS` names them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import mcp_types as types
import psycopg
from anyio.from_thread import BlockingPortal, start_blocking_portal
from listening_process import ListeningProcess
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from psycopg import sql as pgsql
from pydantic import TypeAdapter

from pgwarden.server import demo_data

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
PGWARDEN = str(Path(sys.executable).parent / "pgwarden")
DENIED_PREFIX = "pgwarden denied this call"
RAW = TypeAdapter(dict[str, Any])

# Every call made by the suites must come back within this many seconds (the proxy's call
# timeout is shorter): a call that takes longer is a hang.
HANG_LIMIT_S = 25.0
PROXY_CALL_TIMEOUT_S = 12.0
SERVER_STATEMENT_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class PrincipalSetup:
    """A principal and the example policy written for it."""

    key: str
    policies: tuple[str, ...]
    principal: dict[str, Any]
    tenants: tuple[int, ...] = ()  # the tenants its row filters keep (empty: not tenant-filtered)
    profile: str = ""  # whose secrets it must not see (default: its own key)

    @property
    def secrets_profile(self) -> str:
        return self.profile or self.key


BREAKGLASS_CLAIMS = {"breakglass": True, "ticket": "INC-4711", "breakglass_until": "2099-01-01T00:00:00Z"}

def _setup(key: str, policy: str, principal: dict[str, Any], tenants: tuple[int, ...] = (),
           profile: str = "") -> PrincipalSetup:
    return PrincipalSetup(key, (policy,), principal, tenants, profile)


PRINCIPALS: dict[str, PrincipalSetup] = {
    p.key: p
    for p in (
        _setup("analyst", "analyst.yaml", {"id": "ann", "roles": ["analyst"]}),
        _setup("support", "support.yaml", {"id": "sam", "roles": ["support"], "tenant": 1}, (1,)),
        _setup("tenant", "tenant_isolated.yaml", {"id": "agent-acme", "roles": ["tenant-agent"], "tenant": 1},
               (1,)),
        _setup("default", "default.yaml", {"id": "guest"}),
        _setup("dba", "dba_breakglass.yaml", {"id": "dana", "roles": ["dba"], "claims": BREAKGLASS_CLAIMS}),
        # Principals whose attributes make the policy fail: each must end in a refusal.
        _setup("support_no_tenant", "support.yaml", {"id": "sue", "roles": ["support"]}, profile="tenant"),
        _setup("tenant_injection", "tenant_isolated.yaml",
               {"id": "mallory", "roles": ["tenant-agent"], "tenant": "1 OR 1=1"}, (1,), "tenant"),
        _setup("tenant_claim_type", "tenant_isolated.yaml",
               {"id": "trent", "roles": ["tenant-agent"], "tenant": 1, "claims": {"tenants": "1,2,3"}},
               (1,), "tenant"),
        _setup("dba_bad_expiry", "dba_breakglass.yaml",
               {"id": "dana", "roles": ["dba"],
                "claims": {**BREAKGLASS_CLAIMS, "breakglass_until": "next tuesday"}},
               profile="default"),
        _setup("nobody", "analyst.yaml", {"id": "nobody"}, profile="default"),
    )
}


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment minus PGWARDEN_* and OTEL_* (so nothing leaks in from the caller)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGWARDEN_", "OTEL_"))}
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(dsn: str, *extra: str,
                   statement_timeout_ms: int = SERVER_STATEMENT_TIMEOUT_MS) -> list[str]:
    """`pgwarden server` on stdio for `dsn`."""
    return [
        sys.executable, "-m", "pgwarden.server", "--dsn", dsn,
        "--statement-timeout-ms", str(statement_timeout_ms), *extra,
    ]


def proxy_command(
    setup: PrincipalSetup,
    *,
    upstream: Sequence[str] = (),
    upstream_url: str | None = None,
    catalog_dsn: str,
    audit_log: Path,
    listen: str | None = None,
    call_timeout_s: float = PROXY_CALL_TIMEOUT_S,
    policy_paths: Sequence[Path] | None = None,
    config: Path | None = None,
) -> list[str]:
    """The `pgwarden proxy` command line for one principal and its policy."""
    paths = policy_paths if policy_paths is not None else [POLICIES / p for p in setup.policies]
    command = [PGWARDEN, "proxy"]
    if config is not None:
        command += ["--config", str(config)]
    for path in paths:
        command += ["--policy", str(path)]
    command += [
        "--principal", json.dumps(setup.principal),
        "--catalog-dsn", catalog_dsn,
        "--audit-log", str(audit_log),
        "--call-timeout", str(call_timeout_s),
    ]
    if listen is not None:
        command += ["--listen", listen]
    if upstream_url is not None:
        return [*command, "--upstream-url", upstream_url]
    return [*command, "--", *upstream]


@dataclass
class Reply:
    """What one request got back: a result (`raw`) or a JSON-RPC error (`error`), and how fast."""

    raw: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    elapsed_s: float = 0.0

    @property
    def is_error(self) -> bool:
        return self.error is not None or bool(self.raw and self.raw.get("isError"))

    @property
    def text(self) -> str:
        if self.raw is None:
            return str((self.error or {}).get("message", ""))
        return "\n".join(
            str(c.get("text", "")) for c in self.raw.get("content", []) if isinstance(c, dict)
        )

    @property
    def denied(self) -> bool:
        """Refused by pgwarden itself (before anything went upstream)."""
        return bool(self.raw and self.raw.get("isError") and self.text.startswith(DENIED_PREFIX))

    @property
    def structured(self) -> dict[str, Any] | None:
        sc = (self.raw or {}).get("structuredContent")
        return sc if isinstance(sc, dict) else None

    @property
    def columns(self) -> list[str]:
        sc = self.structured or {}
        return [str(c.get("name")) for c in sc.get("columns", []) if isinstance(c, dict)]

    @property
    def rows(self) -> list[list[Any]]:
        sc = self.structured or {}
        rows = sc.get("rows", [])
        return [list(r) for r in rows] if isinstance(rows, list) else []

    def column(self, name: str) -> list[Any]:
        if name not in self.columns:
            return []
        index = self.columns.index(name)
        return [row[index] for row in self.rows if index < len(row)]

    def blob(self) -> str:
        """Everything that came back, as the client could render it (for leak scanning)."""
        parts = [json.dumps(self.raw if self.raw is not None else self.error, ensure_ascii=False)]
        parts.append(self.text)
        return "\n".join(parts)

    def summary(self) -> str:
        kind = "error" if self.error else ("isError" if self.is_error else "ok")
        return f"{kind} after {self.elapsed_s:.2f}s: {self.text[:300]!r}"


class McpSession:
    """An MCP client session held open across many calls (see the module docstring)."""

    def __init__(self, target: StdioServerParameters | str, *, mode: str = "legacy",
                 read_timeout_s: float = HANG_LIMIT_S) -> None:
        self.target = target
        self.mode = mode
        self.read_timeout_s = read_timeout_s
        self._stack = contextlib.ExitStack()
        self.portal: BlockingPortal | None = None
        self.client: Client | None = None

    def __enter__(self) -> McpSession:
        try:
            self.portal = self._stack.enter_context(start_blocking_portal())
            client = Client(self.target, mode=self.mode,  # type: ignore[arg-type]
                            read_timeout_seconds=self.read_timeout_s)
            self.client = self._stack.enter_context(self.portal.wrap_async_context_manager(client))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()

    async def _send(self, request: Any, read_timeout: float | None) -> Reply:
        assert self.client is not None
        started = time.perf_counter()
        try:
            raw = await self.client.session.send_request(
                request, RAW, request_read_timeout_seconds=read_timeout
            )
            return Reply(raw=raw, elapsed_s=time.perf_counter() - started)
        except MCPError as exc:
            error = {"code": exc.error.code, "message": exc.error.message}
            return Reply(error=error, elapsed_s=time.perf_counter() - started)

    def call_tool(self, name: str, arguments: dict[str, Any] | None, *,
                  timeout: float | None = None) -> Reply:
        request = types.CallToolRequest(params=types.CallToolRequestParams(name=name, arguments=arguments))
        assert self.portal is not None
        return self.portal.call(self._send, request, timeout)

    def query(self, sql: str) -> Reply:
        return self.call_tool("query", {"sql": sql})

    def read_resource(self, uri: str) -> Reply:
        request = types.ReadResourceRequest(params=types.ReadResourceRequestParams(uri=uri))
        assert self.portal is not None
        return self.portal.call(self._send, request, None)

    def get_prompt(self, name: str, arguments: dict[str, str]) -> Reply:
        request = types.GetPromptRequest(params=types.GetPromptRequestParams(name=name, arguments=arguments))
        assert self.portal is not None
        return self.portal.call(self._send, request, None)

    def list_tools(self) -> list[str]:
        request = types.ListToolsRequest()
        assert self.portal is not None
        reply = self.portal.call(self._send, request, None)
        return [t["name"] for t in (reply.raw or {}).get("tools", [])]


def stdio_proxy_session(command: Sequence[str], *, stderr_path: Path | None = None) -> McpSession:
    """An `McpSession` over stdio to a proxy started with `command`."""
    del stderr_path  # the SDK's stdio client forwards the child's stderr to ours
    params = StdioServerParameters(command=command[0], args=list(command[1:]), env=clean_env())
    return McpSession(params)


class ProxyProcess(ListeningProcess):
    """A `pgwarden proxy --listen http://…` process on a free loopback port."""

    def __init__(self, command: Sequence[str], *, log_dir: Path, port: int) -> None:
        super().__init__(command, env=clean_env(), log_path=log_dir / f"proxy-{port}.log", port=port,
                         name="proxy", ready_timeout=60.0)


# -- the database side -------------------------------------------------------------------------


def create_scratch_database(admin_dsn: str, name: str) -> str:
    """A fresh database `name` on the same server, seeded exactly like the demo; its owner DSN."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    demo_data.seed_database(dsn, size="small")
    return dsn


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


def reader_of(dsn: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, user=demo_data.READER_ROLE)


def database_fingerprint(admin_dsn: str) -> dict[str, Any]:
    """Row count and checksum of every table, plus relations, roles, large objects, settings."""
    out: dict[str, Any] = {}
    with psycopg.connect(admin_dsn) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
        for (table,) in tables:
            out[table] = conn.execute(
                "SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) "
                f"FROM {table} t"
            ).fetchone()
        out["relations"] = conn.execute(
            "SELECT string_agg(c.oid::regclass::text, ',' ORDER BY c.oid::regclass::text) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
            "AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'"
        ).fetchone()
        out["functions"] = conn.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
        out["large_objects"] = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
        out["roles"] = conn.execute(
            "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles"
        ).fetchone()
        out["db_settings"] = conn.execute(
            "SELECT count(*) FROM pg_db_role_setting"
        ).fetchone()
    return out


@dataclass
class Secrets:
    """Values a principal must never see, read with the owner's DSN before any attack."""

    common: dict[str, set[str]] = field(default_factory=dict)  # kind -> values hidden from everyone
    per_principal: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    tenant_ids: dict[int, dict[str, set[int]]] = field(default_factory=dict)  # tenant -> table -> ids

    def for_principal(self, key: str) -> dict[str, set[str]]:
        found = {kind: set(values) for kind, values in self.common.items()}
        for kind, values in self.per_principal.get(key, {}).items():
            found.setdefault(kind, set()).update(values)
        return found

    def count(self, key: str) -> int:
        return sum(len(v) for v in self.for_principal(key).values())


def _strings(rows: Iterable[tuple[Any, ...]]) -> set[str]:
    return {str(r[0]) for r in rows if r[0] is not None and len(str(r[0])) >= 6}


def read_secrets(admin_dsn: str, tenants: tuple[int, ...] = (1,)) -> Secrets:
    """Read every secret of the demo data (see `Secrets`)."""
    s = Secrets()
    with psycopg.connect(admin_dsn) as conn:
        q = conn.execute

        def values(sql: str, *args: Any) -> set[str]:
            return _strings(q(sql, args).fetchall())

        api_keys = values("SELECT api_key FROM public.secrets")
        national_ids = values("SELECT national_id FROM public.customers")
        cards = values("SELECT card_number FROM public.payments")
        salaries = values("SELECT salary::text FROM hr.salaries")
        employee_emails = values("SELECT email FROM hr.employees")
        customer_emails = values("SELECT email FROM public.customers")
        customer_names = values("SELECT name FROM public.customers")
        phones = values("SELECT phone FROM public.customers")
        others = tuple(t for t in range(1, 100) if t not in tenants)
        other_emails = values("SELECT email FROM public.customers WHERE tenant_id = ANY(%s)", list(others))
        other_phones = values("SELECT phone FROM public.customers WHERE tenant_id = ANY(%s)", list(others))
        other_names = {str(r[0]) for r in q("SELECT name FROM public.tenants WHERE id <> ALL(%s)",
                                             (list(tenants),)).fetchall()}
        for tenant in tenants:
            s.tenant_ids[tenant] = {
                table: {int(r[0]) for r in q(f"SELECT id FROM public.{table} WHERE tenant_id = %s",
                                             (tenant,)).fetchall()}
                for table in ("customers", "orders", "payments", "support_tickets", "secrets")
            }
    # API keys are never readable in clear; the rest per principal and its policy.
    s.common = {"api_key": api_keys}
    hidden = {"national_id": national_ids, "card_number": cards, "salary": salaries,
              "employee_email": employee_emails}
    s.per_principal = {
        "analyst": {**hidden, "customer_email": customer_emails, "phone": phones,
                    "customer_name": customer_names},
        "support": {**hidden, "other_tenant_email": other_emails, "other_tenant_phone": other_phones,
                    "other_tenant_name": other_names},
        "tenant": {**hidden, "customer_email": customer_emails, "other_tenant_phone": other_phones,
                   "other_tenant_name": other_names},
        "default": {**hidden, "customer_email": customer_emails, "phone": phones},
        # A break-glass DBA reads HR, cards and national ids by design; API keys stay hashed.
        "dba": {},
    }
    return s


def find_leaks(reply: Reply, secrets: dict[str, set[str]]) -> list[str]:
    """`kind: value` for every secret value found anywhere in a reply."""
    blob = reply.blob()
    found = []
    for kind, values in secrets.items():
        for value in values:
            if value in blob:
                found.append(f"{kind}: {value[:4]}…")
    return found


_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d")


def normalise(value: Any) -> Any:
    """A value as it compares across psycopg rows and JSON rows (numeric as exact strings,
    timestamps as ISO 8601 in UTC, json as sorted JSON)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Decimal | float | int):
        return str(Decimal(str(value)).normalize())
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    text = str(value)
    if _NUMBER.match(text):
        return str(Decimal(text).normalize())
    if _TIMESTAMP.match(text):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(text)
            return parsed.astimezone(UTC).isoformat() if parsed.tzinfo else parsed.isoformat()
    return text


def rows_of(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return [tuple(normalise(v) for v in row) for row in conn.execute(sql).fetchall()]


def reply_rows(reply: Reply) -> list[tuple[Any, ...]]:
    return [tuple(normalise(v) for v in row) for row in reply.rows]
