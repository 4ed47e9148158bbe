"""Run the security and reliability suites and rewrite the results table in SECURITY.md.

    python tests/security/security_report.py [--json results.json] [--no-write] [pytest args...]
    python tests/security/security_report.py --from-json results.json   # re-render only

(`make security-report`; `PGWARDEN_SOAK=1 make security-report` for the long budgets.) The table
goes between the `security-results:begin` and `security-results:end` markers; the raw results
(every test's outcome and recorded properties) go to the JSON file when asked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECURITY_MD = ROOT / "SECURITY.md"
BEGIN, END = "<!-- security-results:begin -->", "<!-- security-results:end -->"
SUITES = ["tests/security", "tests/reliability"]


class Collector:
    """A pytest plugin keeping each test's outcome and `record_property` values."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.results.setdefault(report.nodeid, {"outcome": "passed", "properties": {}})
        entry["properties"].update(dict(report.user_properties))
        if hasattr(report, "wasxfail"):
            entry["outcome"] = "xfailed" if report.skipped else "xpassed"
        elif report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["message"] = str(report.longrepr)[-600:]
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"


def _select(results: dict[str, dict[str, Any]], fragment: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in results.items() if fragment in k}


def _count(results: dict[str, dict[str, Any]], outcome: str) -> int:
    return sum(1 for r in results.values() if r["outcome"] == outcome)


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    attacks = _select(results, "test_attacks.py::test_attack[")
    by_class: Counter[str] = Counter()
    for nodeid in attacks:
        by_class[nodeid.split("[", 1)[1].split(":", 1)[0]] += 1
    leaks = sum(int(r["properties"].get("leaks", 0)) for r in attacks.values())
    leak_failures = [k for k, r in attacks.items() if "LEAK" in r.get("message", "")]
    reference = _select(results, "test_attacks.py::test_attack_through_the_reference_server[")
    leaks += sum(int(r["properties"].get("leaks", 0)) for r in reference.values())
    benign = _select(results, "test_benign.py")
    load = next((json.loads(r["properties"]["load"]) for r in _select(results, "test_load.py").values()
                 if "load" in r["properties"]), None)
    faults = _select(results, "test_faults.py")
    return {
        "attacks": {"cases": len(attacks), "passed": _count(attacks, "passed"),
                    "failed": _count(attacks, "failed") + _count(attacks, "error"),
                    "xfailed": _count(attacks, "xfailed"), "by_class": dict(sorted(by_class.items())),
                    "leaked_values": leaks, "leak_failures": leak_failures},
        "reference_server": {"cases": len(reference), "passed": _count(reference, "passed"),
                             "failed": _count(reference, "failed") + _count(reference, "error"),
                             "skipped": _count(reference, "skipped")},
        "post_attack_checks": {
            k.split("::")[-1]: r["outcome"] for k, r in _select(results, "test_attacks.py::test_").items()
            if "test_attack[" not in k
        },
        "benign": {"total": sum(int(r["properties"].get("benign_total", 0)) for r in benign.values()),
                   "ok": sum(int(r["properties"].get("benign_ok", 0)) for r in benign.values())},
        "differential_fuzz": {"tests": len(_select(results, "test_differential_fuzz.py")),
                              "failed": _count(_select(results, "test_differential_fuzz.py"), "failed")},
        "frame_fuzz": {"tests": len(_select(results, "test_frame_fuzz.py")),
                       "failed": _count(_select(results, "test_frame_fuzz.py"), "failed")},
        "load": load,
        "load_passed": all(r["outcome"] == "passed" for r in _select(results, "test_load.py").values()),
        "faults": {k.split("::")[-1]: r["outcome"] for k, r in faults.items()},
        "totals": dict(Counter(r["outcome"] for r in results.values())),
    }


def table(summary: dict[str, Any], *, soak: bool, commit: str) -> str:
    a, b, load = summary["attacks"], summary["benign"], summary["load"]
    classes = ", ".join(f"{k} {v}" for k, v in a["by_class"].items())
    lines = [
        f"Last run: {datetime.now(UTC):%Y-%m-%d}, commit `{commit}`, "
        f"budget: {'soak (PGWARDEN_SOAK=1)' if soak else 'CI'}. Regenerate with `make security-report`.",
        "",
        "| check | result |",
        "| --- | --- |",
        f"| attack cases tried (end to end through the proxy) | {a['cases']} ({classes}) |",
        f"| attack cases held | {a['passed']} passed, {a['failed']} failed, "
        f"{a['xfailed']} known gap(s) (strict xfail) |",
        f"| the same cases in front of the reference server-postgres 0.6.2 | "
        f"{summary['reference_server']['passed']}/{summary['reference_server']['cases']} held, "
        f"{summary['reference_server']['failed']} failed, {summary['reference_server']['skipped']} skipped |",
        f"| secret values leaked | {a['leaked_values']} "
        f"(cases failing on a leak: {len(a['leak_failures'])}) |",
        f"| database unchanged after the attacks | "
        f"{summary['post_attack_checks'].get('test_database_unchanged_after_the_attacks', 'not run')} |",
        f"| exactly one verifiable audit record per call | "
        f"{summary['post_attack_checks'].get('test_every_call_left_exactly_one_audit_record', 'not run')} |",
        f"| benign queries allowed and correct | {b['ok']}/{b['total']} |",
        f"| differential fuzzing (sqlglot vs pglast) | {summary['differential_fuzz']['tests']} tests, "
        f"{summary['differential_fuzz']['failed']} failed |",
        f"| JSON-RPC frame fuzzing (stdio and HTTP) | {summary['frame_fuzz']['tests']} tests, "
        f"{summary['frame_fuzz']['failed']} failed |",
    ]
    if load:
        lost = load["attempts"] - load["ok"]
        lines.append(
            f"| load held | {'yes' if summary['load_passed'] else 'NO'}: "
            f"{load['sessions']} HTTP sessions for "
            f"{load['seconds']:.0f} s, {load['attempts']} calls, {lost} lost, {load['mixed']} mixed up, "
            f"slowest {load['slowest_s']:.2f} s |"
        )
    faults = summary["faults"]
    survived = sum(1 for v in faults.values() if v == "passed")
    known = [k for k, v in faults.items() if v == "xfailed"]
    lines.append(f"| faults survived | {survived}/{len(faults) - len(known)}"
                 + (f" (+{len(known)} known gap, strict xfail)" if known else "") + " |")
    for name, outcome in faults.items():
        lines.append(f"| &nbsp;&nbsp;`{name}` | {outcome} |")
    return "\n".join(lines)


def rewrite(markdown: str, body: str) -> str:
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in markdown and END in markdown:
        return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: block, markdown, flags=re.S)
    return markdown.rstrip("\n") + "\n\n## Results\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--no-write", action="store_true", help="do not touch SECURITY.md")
    parser.add_argument("--from-json", type=Path, help="render the table from an earlier --json file")
    args, extra = parser.parse_known_args(argv)
    os.chdir(ROOT)
    collector = Collector()
    if args.from_json:
        collector.results = json.loads(args.from_json.read_text())["results"]
        code: int | pytest.ExitCode = pytest.ExitCode.OK
    else:
        code = pytest.main(["-q", "-p", "no:cacheprovider", *SUITES, *extra], plugins=[collector])
    summary = summarise(collector.results)
    if code in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR) \
            or summary["attacks"]["cases"] == 0:
        print("the suites did not run to the end: SECURITY.md left unchanged", file=sys.stderr)
        return int(code) or 1
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip() or "unknown"
    body = table(summary, soak=os.environ.get("PGWARDEN_SOAK") == "1", commit=commit)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "results": collector.results}, indent=2))
    if not args.no_write:
        SECURITY_MD.write_text(rewrite(SECURITY_MD.read_text(), body))
    print(body)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
