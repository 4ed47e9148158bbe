"""The attack suite: every case of `attack_cases.CASES` end to end through the proxy, checked on
the data that comes back (see `attack_cases` for what each expectation means).

After the cases: the database is unchanged, and the audit log holds exactly one record per call.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from attack_cases import ALLOW, CASES, DENY, REFUSED, Case, by_class
from security_harness import (
    HANG_LIMIT_S,
    PGWARDEN,
    PRINCIPALS,
    McpSession,
    Reply,
    Secrets,
    database_fingerprint,
    find_leaks,
    reply_rows,
    rows_of,
)
from security_sessions import PROXY_HELPERS, REFERENCE, ScratchDatabase, SessionPool

MIN_CASES = 200

# Grouped by principal so each proxy session serves its cases in one run; ids say the class.
ORDERED = sorted(CASES, key=lambda c: list(PRINCIPALS).index(c.principal))


def _params() -> list[Any]:
    return [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [])
        for c in ORDERED
    ]


def fill(value: Any, placeholders: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, replacement in placeholders.items():
            value = value.replace("{" + key + "}", replacement)
        return value
    if isinstance(value, dict):
        return {k: fill(v, placeholders) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, placeholders) for v in value]
    return value


def send(session: McpSession, case: Case, placeholders: dict[str, str]) -> Reply:
    arguments = fill(case.arguments, placeholders)
    if case.method == "resources/read":
        return session.read_resource(arguments["uri"])
    if case.method == "prompts/get":
        return session.get_prompt(case.tool, arguments)
    if arguments is None and case.sql is not None:
        arguments = {"sql": fill(case.sql, placeholders)}
    return session.call_tool(case.tool, arguments)


def check_own_ids(case: Case, reply: Reply, secrets: Secrets) -> None:
    tenants = PRINCIPALS[case.principal].tenants
    for column, table in case.own_ids:
        values = [v for v in reply.column(column) if v is not None]
        if table == "tenant":
            allowed = set(tenants)
        else:
            allowed = set().union(*(secrets.tenant_ids[t][table] for t in tenants))
        foreign = sorted({int(v) for v in values} - allowed)
        assert not foreign, f"LEAK: {len(foreign)} {table} ids of other tenants in column {column!r}"


@pytest.mark.parametrize("case", _params())
def test_attack(
    case: Case,
    proxy_pool: SessionPool,
    db_secrets: Secrets,
    scratch_db: ScratchDatabase,
    canary_file: tuple[Path, str],
    record_property: Any,
) -> None:
    session = proxy_pool.get(case.principal)
    reply = send(session, case, {"db": scratch_db.name, "canary": str(canary_file[0])})
    proxy_pool.calls[case.principal] = proxy_pool.calls.get(case.principal, 0) + 1
    record_property("attack_class", case.cls)

    leaks = find_leaks(reply, db_secrets.for_principal(PRINCIPALS[case.principal].secrets_profile))
    record_property("leaks", len(leaks))
    assert not leaks, f"LEAK of {len(leaks)} secret values: {leaks[:5]}"
    for text in case.absent:
        assert text not in reply.blob(), f"LEAK: {text!r} in the reply"
    assert reply.elapsed_s < HANG_LIMIT_S, f"the call took {reply.elapsed_s:.1f}s"

    if case.expect == DENY:
        assert reply.denied, f"expected pgwarden to deny; got {reply.summary()}"
    elif case.expect == REFUSED:
        assert reply.is_error, f"expected a refusal; got {reply.summary()}"
    elif case.expect == ALLOW:
        assert not reply.is_error, f"expected the call to go through; got {reply.summary()}"

    if reply.is_error:
        return
    if case.oracle is not None:
        assert reply_rows(reply) == rows_of(scratch_db.admin_dsn, case.oracle), (
            f"LEAK or wrong answer: the rows differ from what the principal may see; {reply.summary()}"
        )
    if case.max_rows is not None:
        assert len(reply.rows) <= case.max_rows, f"row cap evaded: {len(reply.rows)} rows"
    check_own_ids(case, reply, db_secrets)


REFERENCE_PRINCIPALS = ("analyst", "tenant", "support")


def _reference_params() -> list[Any]:
    return [
        pytest.param(c, id=c.id, marks=[pytest.mark.node])
        for c in ORDERED
        if c.principal in REFERENCE_PRINCIPALS and c.method == "tools/call" and c.tool == "query"
        and c.arguments is None and not c.xfail
        and c.cls != "resource"  # the reference server sets no statement timeout: those would run on
    ]


@pytest.mark.parametrize("case", _reference_params())
def test_attack_through_the_reference_server(
    case: Case,
    proxy_pool: SessionPool,
    db_secrets: Secrets,
    scratch_db: ScratchDatabase,
    canary_file: tuple[Path, str],
    record_property: Any,
) -> None:
    """The same cases in front of @modelcontextprotocol/server-postgres 0.6.2 (owner DSN; its only
    protection is a READ ONLY transaction that `COMMIT; …` escapes). Its results are JSON text,
    so the checks are the leak scan, the expectation and, afterwards, the database fingerprint."""
    if not PROXY_HELPERS.has_node():
        pytest.skip("node and tests/node/node_modules are needed (make test installs them)")
    key = REFERENCE + case.principal
    reply = send(proxy_pool.get(key), case, {"db": scratch_db.name, "canary": str(canary_file[0])})
    proxy_pool.calls[key] = proxy_pool.calls.get(key, 0) + 1
    record_property("attack_class", case.cls)
    leaks = find_leaks(reply, db_secrets.for_principal(PRINCIPALS[case.principal].secrets_profile))
    record_property("leaks", len(leaks))
    assert not leaks, f"LEAK of {len(leaks)} secret values: {leaks[:5]}"
    assert reply.elapsed_s < HANG_LIMIT_S, f"the call took {reply.elapsed_s:.1f}s"
    if case.expect == DENY:
        assert reply.denied, f"expected pgwarden to deny; got {reply.summary()}"
    elif case.expect == REFUSED:
        assert reply.is_error, f"expected a refusal; got {reply.summary()}"
    elif case.expect == ALLOW:
        assert not reply.is_error, f"expected the call to go through; got {reply.summary()}"


def test_database_unchanged_after_the_attacks(
    proxy_pool: SessionPool, scratch_db: ScratchDatabase, fingerprint_before: dict[str, object]
) -> None:
    assert proxy_pool.calls, "run with the attack cases"
    assert database_fingerprint(scratch_db.admin_dsn) == fingerprint_before


def test_every_call_left_exactly_one_audit_record(proxy_pool: SessionPool, db_secrets: Secrets) -> None:
    assert proxy_pool.calls, "run with the attack cases"
    for key, calls in proxy_pool.calls.items():
        path = proxy_pool.audit_path(key)
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        policed = ("tools/call", "resources/read", "prompts/get")
        tool_records = [r for r in records if r.get("method") in policed]
        assert len(tool_records) == calls, f"{key}: {calls} calls, {len(tool_records)} audit records"
        text = path.read_text()
        profile = PRINCIPALS[key.removeprefix(REFERENCE)].secrets_profile
        leaks = [kind for kind, values in db_secrets.for_principal(profile).items()
                 if any(v in text for v in values)]
        assert not leaks, f"secret values in the audit log of {key}: {leaks}"
        verify = subprocess.run([PGWARDEN, "audit", "verify", str(path)], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_the_corpus_is_large_and_covers_every_class() -> None:
    counts = by_class()
    assert len(CASES) >= MIN_CASES
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    for cls in ("stacked", "transaction_set", "writes", "locking", "file_network_lo", "sql_in_string",
                "catalog", "shadowing", "quoting", "masked_inference", "row_filter", "row_cap",
                "resource", "mcp_layer", "policy_errors"):
        assert counts.get(cls, 0) >= 5, cls
    assert all(c.expect in (DENY, REFUSED, ALLOW, "any") for c in CASES)


def test_no_case_carries_a_secret_itself(db_secrets: Secrets) -> None:
    """A secret in a case's own text would be echoed back and hide a real leak among false ones."""
    every = set().union(*(v for v in db_secrets.for_principal("default").values()))
    for case in CASES:
        text = json.dumps([case.sql, case.arguments])
        if len(text) > 10_000:  # the oversized-argument cases: padding only
            continue
        assert not any(secret in text for secret in every), case.id
