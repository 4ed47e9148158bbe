"""Fixtures of the reliability suite. It shares the security suite's harness (real proxy
processes, real MCP sessions); `PGWARDEN_SOAK=1` (`make soak`) scales duration and concurrency
up from the short CI version."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "security"))

SOAK = os.environ.get("PGWARDEN_SOAK") == "1"


@dataclass(frozen=True)
class LoadProfile:
    sessions: int
    seconds: float


LOAD = LoadProfile(sessions=200, seconds=60.0) if SOAK else LoadProfile(sessions=50, seconds=10.0)
FAULT_LOAD = LoadProfile(sessions=40, seconds=30.0) if SOAK else LoadProfile(sessions=8, seconds=6.0)
