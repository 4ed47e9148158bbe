"""Fixtures for the proxy tests (shared values live in proxy_helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
