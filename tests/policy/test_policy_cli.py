"""The real `pgwarden policy` command in a subprocess, against the real demo database.

Security checks run the rewritten SQL on the database and look at the DATA that comes back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))   # the installed console script


def pgwarden(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("PGWARDEN_CATALOG_DSN", None)
    if env and "PGWARDEN_CATALOG_DSN" in env:
        full_env["PGWARDEN_CATALOG_DSN"] = env["PGWARDEN_CATALOG_DSN"]
    return subprocess.run([PGWARDEN, *args], capture_output=True, text=True, env=full_env, timeout=120,
                          cwd=ROOT)


def explain(reader_dsn: str, policy: str, principal: dict, sql: str) -> dict:
    done = pgwarden("policy", "explain", "--policy", str(POLICIES / policy), "--principal",
                    json.dumps(principal), "--tool", "query", "--sql", sql, "--catalog-dsn", reader_dsn,
                    "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def rows(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def test_shipped_policy_tests_pass(reader_dsn):
    done = pgwarden("policy", "test", str(POLICIES), "--catalog-dsn", reader_dsn)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 failed" in done.stdout
    for name in ("default", "analyst", "support", "tenant_isolated", "dba_breakglass"):
        assert f"{name}_test.yaml" in done.stdout


def test_policy_test_reports_a_failing_case(tmp_path, reader_dsn):
    (tmp_path / "p.yaml").write_text((POLICIES / "default.yaml").read_text())
    (tmp_path / "p_test.yaml").write_text("""version: 1
cases:
  - name: this expectation is wrong
    principal: {id: x}
    sql: SELECT * FROM customers
    expect: {effect: allow}
""")
    done = pgwarden("policy", "test", str(tmp_path / "p.yaml"), "--catalog-dsn", reader_dsn)
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "this expectation is wrong" in done.stdout
    assert "expected 'allow', got 'deny'" in done.stdout


def test_policy_check_exit_codes(tmp_path):
    good = pgwarden("policy", "check", str(POLICIES))
    assert good.returncode == 0 and good.stdout.startswith("ok:")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: x\n    effect: allow\n    when: 'nope()'\n")
    done = pgwarden("policy", "check", str(bad))
    assert done.returncode == 1
    assert f"{bad}:5: rule 'x': condition: unknown function nope" in done.stderr


def test_policy_check_against_a_catalog(tmp_path, reader_dsn):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: x\n    effect: allow\n    when: 'true'\n"
                   "    masks:\n      public.customers.ssn: 'null'\n")
    done = pgwarden("policy", "check", str(bad), "--catalog-dsn", reader_dsn)
    assert done.returncode == 1 and "has no column 'ssn'" in done.stderr
    assert pgwarden("policy", "check", str(bad)).returncode == 0


def test_explain_json_shape(reader_dsn):
    data = explain(reader_dsn, "analyst.yaml", {"id": "ann", "roles": ["analyst"]},
                   "SELECT country, count(*) FROM customers GROUP BY country")
    assert {"effect", "rules", "reason", "sql"} <= set(data)
    assert data["effect"] == "allow" and data["rules"] == ["analyst.sales"]
    assert data["relations"] == ["public.customers"]
    assert data["sql"].endswith("LIMIT 5000")
    denied = explain(reader_dsn, "analyst.yaml", {"id": "ann", "roles": ["analyst"]},
                     "SELECT * FROM hr.salaries")
    assert denied["effect"] == "deny" and denied["sql"] is None
    assert denied["reason_code"] == "policy.deny"


def test_explain_without_catalog_dsn_uses_the_entry_points_demo_database(reader_dsn):
    # pgwarden/cli.py provides the demo database's DSN; PGWARDEN_DSN points it at the test database
    done = pgwarden("policy", "explain", "--policy", str(POLICIES / "support.yaml"), "--principal",
                    '{"roles": ["support"], "tenant": 2}', "--tool", "query", "--sql",
                    "SELECT card_number FROM payments", "--json", env={"PGWARDEN_DSN": reader_dsn})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["masked_columns"] == ["public.payments.card_number"]


def test_explain_human_output(reader_dsn):
    done = pgwarden("policy", "explain", "--policy", str(POLICIES / "default.yaml"), "--principal", "{}",
                    "--tool", "query", "--sql", "SELECT * FROM secrets", "--catalog-dsn", reader_dsn)
    assert done.returncode == 0
    assert "DENY" in done.stdout and "policy.no_matching_allow" in done.stdout


@pytest.mark.parametrize("tenant", [1, 2])
def test_support_sees_one_tenant_and_masked_cards_in_the_data(reader_dsn, admin_dsn, tenant):
    data = explain(reader_dsn, "support.yaml", {"id": "sam", "roles": ["support"], "tenant": tenant},
                   "SELECT p.tenant_id, p.card_number FROM payments p WHERE p.tenant_id <> 0 OR true")
    result = rows(reader_dsn, data["sql"])
    assert result and len(result) <= 200
    assert {r[0] for r in result} == {tenant}
    full_numbers = {r[0] for r in rows(admin_dsn, "SELECT card_number FROM public.payments")}
    for _, card in result:
        assert card not in full_numbers
        assert card.endswith(card.lstrip("*")) and len(card.lstrip("*")) <= 4


def test_analyst_customer_pii_never_comes_back(reader_dsn, admin_dsn):
    data = explain(reader_dsn, "analyst.yaml", {"id": "ann", "roles": ["analyst"]},
                   "SELECT email, national_id, phone, count(*) FROM customers "
                   "GROUP BY email, national_id, phone")
    result = rows(reader_dsn, data["sql"])
    secrets = rows(admin_dsn, "SELECT email, national_id, phone FROM public.customers")
    emails = {r[0] for r in secrets}
    ids = {r[1] for r in secrets}
    phones = {r[2] for r in secrets}
    assert result
    for email, national_id, phone, _ in result:
        assert email not in emails and email.startswith("***@")
        assert national_id is None and national_id not in ids
        assert phone not in phones


def test_tenant_agent_cannot_widen_its_filter_in_the_data(reader_dsn):
    agent = {"id": "agent", "roles": ["tenant-agent"], "tenant": 3}
    data = explain(reader_dsn, "tenant_isolated.yaml", agent,
                   "SELECT DISTINCT tenant_id FROM orders WHERE tenant_id IN (1, 2, 3, 4, 5) OR 1 = 1")
    assert rows(reader_dsn, data["sql"]) == [(3,)]
