"""Golden files: input SQL -> the SQL sent upstream, per transform.

`fixtures/<transform>.sql` starts with `-- policy: <name>` (see `guard_support.POLICIES`); every
other block is optional `-- ` comment lines, the input on one line, the expected output on the next.
To regenerate after an intended change, run this module with PGWARDEN_REGEN_GOLDEN=1 and review
the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from guard_support import DEMO_CATALOG, FIXTURES, POLICIES, blocks

from pgwarden.proxy.guard import enforce, parse_statement

TRANSFORMS = ("secure_views", "row_filters", "row_cap", "schema_pinning")


def _policy(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("-- policy: "), path
    return first.removeprefix("-- policy: ").strip()


def rewrite(policy: str, sql: str) -> str:
    return enforce(parse_statement(sql), POLICIES[policy], DEMO_CATALOG).sql


def _regenerate(name: str) -> None:
    source = FIXTURES / f"{name}.sql.in"
    policy = _policy(source)
    out: list[str] = []
    for block in blocks(source):
        comments = [line for line in block if line.startswith("-- ")]
        sql = [line for line in block if not line.startswith("-- ")]
        out.extend(comments)
        if sql:
            assert len(sql) == 1, sql
            out.extend([sql[0], rewrite(policy, sql[0])])
        out.append("")
    (FIXTURES / f"{name}.sql").write_text("\n".join(out))


def _cases() -> list[tuple[str, str, str, str]]:
    cases = []
    for name in TRANSFORMS:
        path = FIXTURES / f"{name}.sql"
        policy = _policy(path)
        for block in blocks(path):
            sql = [line for line in block if not line.startswith("-- ")]
            if sql:
                cases.append((name, policy, sql[0], sql[1]))
    return cases


if os.environ.get("PGWARDEN_REGEN_GOLDEN"):
    for _name in TRANSFORMS:
        _regenerate(_name)

CASES = _cases()


@pytest.mark.parametrize(("transform", "policy", "sql", "expected"), CASES,
                         ids=[f"{t}-{i}" for i, (t, _, _, _) in enumerate(CASES)])
def test_golden_rewrite(transform: str, policy: str, sql: str, expected: str) -> None:
    assert rewrite(policy, sql) == expected
