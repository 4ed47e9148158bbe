"""The reliability suite shares the security suite's harness (real proxy processes, real MCP
sessions): its folder goes on the import path here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "security"))
