"""`pgwarden demo` runs by itself to the end and exits 0."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from proxy_helpers import PGWARDEN, child_env

from pgwarden.server import embedded


@pytest.mark.slow
def test_demo_finishes_by_itself(tmp_path: Path) -> None:
    env = child_env() | {"PGWARDEN_DATA_DIR": str(tmp_path / "pg"), "COLUMNS": "120"}
    try:
        done = subprocess.run(
            [PGWARDEN, "demo"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
    finally:
        embedded.stop(tmp_path / "pg")  # the demo leaves its Postgres running for the next start
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for expected in ("DENY", "ALLOW", "masked", "filtered", "row cap", "hash chain intact"):
        assert expected in out
    assert "sk_live_" not in out
