"""Inputs that must be rejected, by attack class, each with its expected reason code.

Each `fixtures/reject_<class>.sql` block is `-- expect: <reason code>` followed by the SQL.
The policy is `guard_support.ANALYST` (no secrets, no salaries, PII masked, one tenant, cap 100).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from guard_support import ANALYST, DEMO_CATALOG, FIXTURES, blocks

from pgwarden.proxy.guard import GuardDenied, Reason, enforce, parse_statement


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for path in sorted(FIXTURES.glob("reject_*.sql")):
        for block in blocks(path):
            if not block[0].startswith("-- expect: "):
                continue
            code = block[0].removeprefix("-- expect: ").strip()
            sql = "\n".join(block[1:])
            cases.append((Path(path).stem.removeprefix("reject_"), code, sql))
    return cases


CASES = _cases()


def test_reject_corpus_is_large() -> None:
    assert len(CASES) >= 150
    assert {code for _, code, _ in CASES} <= {str(r) for r in Reason}


@pytest.mark.parametrize(("attack", "code", "sql"), CASES,
                         ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(CASES)])
def test_rejected_with_reason(attack: str, code: str, sql: str) -> None:
    with pytest.raises(GuardDenied) as denied:
        enforce(parse_statement(sql), ANALYST, DEMO_CATALOG)
    assert str(denied.value.code) == code, denied.value.message
    # Messages are safe to show the model: no literal from the SQL, only identifier names.
    for literal in ("/etc/passwd", "sk_live", "select * from secrets", "curl"):
        assert literal not in denied.value.message
