"""SECURITY.md's threat table points at tests that exist, and its threat ids are unique."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "SECURITY.md").read_text()
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
THREAT_ROW = re.compile(r"^\| (T-[A-Z0-9-]+|AUTH-\d+|AUD-\d+) \|", re.M)


def test_every_referenced_test_exists() -> None:
    references = REFERENCE.findall(DOC)
    assert len(references) >= 20
    for path, name in references:
        source = ROOT / path
        assert source.exists(), path
        assert re.search(rf"^(async )?def {name}\(", source.read_text(), re.M), f"{path}::{name}"


def test_threat_ids_are_unique_and_each_sql_threat_names_its_tests() -> None:
    ids = THREAT_ROW.findall(DOC)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for line in DOC.splitlines():
        if line.startswith("| T-"):
            assert REFERENCE.search(line), line[:60]


def test_the_results_table_has_its_markers() -> None:
    assert DOC.count("<!-- security-results:begin -->") == 1
    assert DOC.count("<!-- security-results:end -->") == 1
