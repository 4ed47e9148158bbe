"""How long and how wide the reliability suite runs: short in CI, long under `PGWARDEN_SOAK=1`
(`make soak`). (Named uniquely: test modules import this, never `conftest`.)"""

from __future__ import annotations

import os
from dataclasses import dataclass

SOAK = os.environ.get("PGWARDEN_SOAK") == "1"


@dataclass(frozen=True)
class LoadProfile:
    sessions: int
    seconds: float


LOAD = LoadProfile(sessions=200, seconds=60.0) if SOAK else LoadProfile(sessions=50, seconds=10.0)
FAULT_LOAD = LoadProfile(sessions=40, seconds=30.0) if SOAK else LoadProfile(sessions=8, seconds=6.0)
