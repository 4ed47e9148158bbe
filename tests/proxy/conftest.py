"""Fixtures for the proxy tests: how to run the proxy, its upstreams and a few principals."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import psycopg
import pytest

HERE = Path(__file__).parent
REPO = HERE.parent.parent
NODE_DIR = REPO / "tests" / "node"
REFERENCE_SERVER = (
    NODE_DIR / "node_modules" / "@modelcontextprotocol" / "server-postgres" / "dist" / "index.js"
)
POLICY = HERE / "policies" / "relay.yaml"
PGWARDEN = str(Path(sys.executable).parent / "pgwarden")

ANALYST = {"id": "ann", "roles": ["analyst"]}
SUPPORT = {"id": "sam", "roles": ["support"], "tenant": 2}
NOBODY = {"id": "ivy", "roles": []}


def node_url(dsn: str) -> str:
    """A libpq conninfo (Unix socket) as a URL node-postgres accepts."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user, db, host = info.get("user", "postgres"), info.get("dbname", "postgres"), info.get("host", "")
    if str(host).startswith("/"):
        return f"postgresql://{user}@localhost/{db}?host={host}"
    return f"postgresql://{user}@{host}:{info.get('port', 5432)}/{db}"


def has_node() -> bool:
    return shutil.which("node") is not None and REFERENCE_SERVER.exists()


def reference_command(dsn: str) -> list[str]:
    return ["node", str(REFERENCE_SERVER), node_url(dsn)]


def pgwarden_server_command(dsn: str) -> list[str]:
    return [PGWARDEN, "server", "--dsn", dsn]


def proxy_args(
    upstream: list[str],
    principal: dict[str, object],
    *,
    audit: Path,
    catalog_dsn: str,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """`pgwarden proxy …` arguments for a stdio proxy in front of `upstream`."""
    return [
        "proxy",
        "--policy",
        str(POLICY),
        "--principal",
        json.dumps(principal),
        "--catalog-dsn",
        catalog_dsn,
        "--audit-log",
        str(audit),
        *extra,
        "--",
        *upstream,
    ]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
