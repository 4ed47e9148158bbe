"""The relay tests' gates (tests/proxy/gates.py), importable from here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "proxy" / "gates.py"
_spec = importlib.util.spec_from_file_location("pgwarden_test_relay_gates", _PATH)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module
_spec.loader.exec_module(_module)

AllowAllGate = _module.AllowAllGate
