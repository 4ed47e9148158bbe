"""`pgwarden audit verify | show | report` through the real command line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_helpers import SECRET_EMAIL, entry, write_log
from click.testing import CliRunner

from pgwarden.cli import main
from pgwarden.proxy.audit import AuditLog, chain_files

XSS = "<script>alert('pwned')</script>"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_audit_help_lists_the_subcommands() -> None:
    code, out = run("audit", "--help")
    assert code == 0
    for sub in ("verify", "show", "report"):
        assert sub in out
    code, out = run("audit", "verify", "--help")
    assert code == 0 and "prev mismatch" in out


def test_verify_accepts_a_valid_rotated_chain_given_in_any_order(audit_path: Path) -> None:
    write_log(audit_path, 12, max_bytes=2500)
    files = [str(f) for f in reversed(chain_files(audit_path))]
    code, out = run("audit", "verify", *files)
    assert code == 0, out
    assert "12 records, seq 1..12" in out
    code, out = run("audit", "verify", "--log", str(audit_path))
    assert code == 0 and "12 records" in out


def test_verify_reports_the_first_broken_record_and_fails(audit_path: Path) -> None:
    write_log(audit_path, 5)
    lines = audit_path.read_text().splitlines(keepends=True)
    record = json.loads(lines[3])
    record["rows"] = 10_000
    lines[3] = json.dumps(record) + "\n"
    audit_path.write_text("".join(lines))
    code, out = run("audit", "verify", str(audit_path))
    assert code == 1
    assert f"{audit_path}:4: seq 4: hash mismatch" in out


def test_show_filters_by_principal_decision_rule_and_table(audit_path: Path) -> None:
    write_log(audit_path, 9)
    code, out = run("audit", "show", str(audit_path), "--principal", "alice", "--decision", "deny", "--json")
    assert code == 0
    shown = [json.loads(line) for line in out.splitlines()]
    assert shown and all(r["principal"] == "alice" and r["decision"] == "deny" for r in shown)
    assert [r["seq"] for r in shown] == [4]
    code, out = run("audit", "show", str(audit_path), "--rule", "deny-secrets", "--json")
    assert len(out.splitlines()) == 3
    code, out = run("audit", "show", str(audit_path), "--table", "customers", "--json")
    assert len(out.splitlines()) == 9
    code, out = run("audit", "show", str(audit_path), "--table", "hr.salaries", "--json")
    assert out == ""
    code, out = run("audit", "show", str(audit_path), "--since", "2000-01-01", "--until", "1h", "--json")
    assert out == ""
    code, out = run("audit", "show", str(audit_path), "--since", "1h")
    assert code == 0 and "9 decision(s)" in out and "deny-secrets" in out


def test_show_does_not_pass_markup_or_terminal_escapes_through(audit_path: Path) -> None:
    log = AuditLog(audit_path, instance_id="test-1")
    log.append(entry(principal="[bold red]mallory\x1b[2J"))
    log.close()
    code, out = run("audit", "show", str(audit_path))
    assert code == 0
    assert "[bold red]mallory" in out
    assert "\x1b[2J" not in out


def test_report_escapes_attacker_controlled_text(audit_path: Path, tmp_path: Path) -> None:
    log = AuditLog(audit_path, instance_id="test-1")
    log.append(entry(principal=XSS, sql=f"SELECT \"{XSS}\" FROM customers WHERE email = '{SECRET_EMAIL}'"))
    log.close()
    out_file = tmp_path / "report.html"
    code, out = run("audit", "report", str(audit_path), "-o", str(out_file))
    assert code == 0, out
    html = out_file.read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html
    assert SECRET_EMAIL not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_commands_without_files_say_what_they_need(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGWARDEN_AUDIT_LOG", raising=False)
    code, out = run("audit", "verify")
    assert code == 2 and "--log" in out
