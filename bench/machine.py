"""What the numbers were measured on: CPU, cores, memory, versions, load at start."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _node_version() -> str:
    try:
        return subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not installed"


def _busiest_processes(limit: int = 5) -> list[str]:
    """Other processes using CPU right now (name and %), to say honestly what else ran."""
    try:
        import psutil
    except ImportError:
        return []
    procs = list(psutil.process_iter(["pid", "name", "cmdline"]))
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    import time

    time.sleep(1.0)
    me = os.getpid()
    busy: list[tuple[float, str]] = []
    for p in procs:
        try:
            pct = p.cpu_percent(None)
            if p.pid != me and pct >= 5:
                argv = p.info.get("cmdline") or [p.info.get("name") or "?"]
                cmd = " ".join(os.path.basename(a) if a.startswith("/") else a for a in argv[:4])
                busy.append((pct, f"{cmd[:60]} ({pct:.0f}%)"))
        except psutil.Error:
            continue
    return [text for _, text in sorted(busy, reverse=True)[:limit]]


def describe(postgres_version: str | None = None) -> dict[str, Any]:
    """A JSON-able description of this machine and the software under test."""
    load = os.getloadavg()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "postgres": postgres_version or "unknown",
        "node": _node_version(),
        "packages": {
            d: _version(d) for d in ("mcp", "sqlglot", "sqlglotc", "cel-python", "pglast", "psycopg")
        },
        "load_at_start": [round(x, 2) for x in load],
        "busy_at_start": _busiest_processes(),
    }
