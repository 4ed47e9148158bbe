"""The product's gate with learned shapes: the same SQL, rows and audit records as without them.

Two gates over the shipped tenant-isolation policy, the demo catalog and a real audit log:
one learns shapes (the default), one has them turned off. The same calls go through both, for
two tenants interleaved; what each sends upstream must be identical, run on the real database
it must return only the caller's tenant with masked e-mails, and no constant of any call may
appear in either audit log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from guard_support import DEMO_CATALOG

from pgwarden.proxy.audit.log import AuditLog
from pgwarden.proxy.auth import principal_from_mapping
from pgwarden.proxy.pipeline.gate import Allowed, CallContext
from pgwarden.proxy.pipeline.guarded import SHAPE_CACHE_ENV, GuardedGate
from pgwarden.proxy.policy import load_policy
from pgwarden.proxy.telemetry import Telemetry
from pgwarden.proxy.telemetry.config import TelemetryConfig
from pgwarden.proxy.toolmaps.presets import PRESETS

POLICY = Path(__file__).resolve().parents[2] / "policies" / "tenant_isolated.yaml"
SQL = ("SELECT id, tenant_id, email FROM customers WHERE id > {k} AND email <> 'probe-{k}@example.org' "
       "ORDER BY id LIMIT 20")


def make_gate(audit: Path, monkeypatch: pytest.MonkeyPatch, *, shapes: bool) -> GuardedGate:
    monkeypatch.setenv(SHAPE_CACHE_ENV, "on" if shapes else "off")
    policy = load_policy([POLICY], catalog=DEMO_CATALOG)
    return GuardedGate(lambda: policy, tool_map=PRESETS["pgwarden"], catalog=DEMO_CATALOG,
                       telemetry=Telemetry.from_config(TelemetryConfig()), audit=AuditLog(audit, strict=True))


def call(gate: GuardedGate, principal: Any, sql: str, request_id: int) -> str:
    context = CallContext(principal=principal, upstream="upstream", method="tools/call",
                          request_id=request_id)
    with gate.open(context, tool="query") as exchange:
        verdict = exchange.check_tool_call("query", {"sql": sql})
        assert isinstance(verdict, Allowed) and verdict.arguments is not None
        exchange.finished = True
        exchange.record(is_error=False)
        exchange.write_audit()
    sent: str = verdict.arguments["sql"]
    return sent


@pytest.fixture(scope="module")
def reader(reader_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(reader_dsn, autocommit=True) as conn:
        yield conn


def test_learned_shapes_send_what_the_full_guard_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: psycopg.Connection, admin_dsn: str
) -> None:
    learning = make_gate(tmp_path / "learning.jsonl", monkeypatch, shapes=True)
    plain = make_gate(tmp_path / "plain.jsonl", monkeypatch, shapes=False)
    assert learning.shapes is not None and plain.shapes is None
    tenants = {n: principal_from_mapping({"id": f"agent-{n}", "roles": ["tenant-agent"], "tenant": n})
               for n in (1, 2)}
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        real_emails = {r[0] for r in admin.execute("SELECT email FROM customers").fetchall()}
    request = 0
    for k in range(1, 9):
        for n, principal in tenants.items():
            request += 1
            sql = SQL.format(k=k)
            sent = call(learning, principal, sql, request)
            assert sent == call(plain, principal, sql, request)
            found = reader.execute(sent).fetchall()
            assert found and {row[1] for row in found} == {n}
            assert not {row[2] for row in found} & real_emails
    assert learning.shapes.learned == 2  # one template per tenant, learned at each one's second call
    for log in ("learning.jsonl", "plain.jsonl"):
        text = (tmp_path / log).read_text()
        assert "probe-" not in text and "example.org" not in text
        records = [json.loads(line) for line in text.splitlines()]
        assert len(records) == request
        expected = SQL.format(k="?").replace("'probe-?@example.org'", "?").replace("LIMIT 20", "LIMIT ?")
        assert {r["sql"]["text"] for r in records} == {expected}
