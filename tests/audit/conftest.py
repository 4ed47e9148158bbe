"""Fixtures for audit and telemetry tests: in-memory OpenTelemetry pipelines, audit logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_helpers import Pipeline, make_pipeline


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    p = make_pipeline()
    yield p
    p.telemetry.shutdown()


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"
