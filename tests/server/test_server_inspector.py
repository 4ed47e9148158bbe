"""The MCP Inspector CLI (a client we did not write) drives the server over stdio."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from server_helpers import server_env

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
INSPECTOR = NODE_DIR / "node_modules" / ".bin" / "mcp-inspector-cli"

pytestmark = pytest.mark.node


def _inspect(reader_dsn: str, *method_args: str) -> dict:
    if not INSPECTOR.exists() or shutil.which("node") is None:
        pytest.fail("MCP Inspector missing: run `make test` (npm ci in tests/node)")
    command = ["npx", "--offline", "@modelcontextprotocol/inspector", "--cli",
               "-e", f"PGWARDEN_DSN={reader_dsn}",
               sys.executable, "-m", "pgwarden.server", *method_args]
    done = subprocess.run(command, cwd=NODE_DIR, env=server_env(reader_dsn), capture_output=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def test_inspector_lists_tools(reader_dsn: str) -> None:
    out = _inspect(reader_dsn, "--method", "tools/list")
    assert {t["name"] for t in out["tools"]} == {"query", "list_tables", "describe_table", "explain_query"}
    assert all(t["annotations"]["readOnlyHint"] for t in out["tools"])


def test_inspector_calls_query(reader_dsn: str) -> None:
    out = _inspect(reader_dsn, "--method", "tools/call", "--tool-name", "query",
                   "--tool-arg", "sql=SELECT count(*) AS n FROM public.tenants")
    assert out.get("isError") is not True
    assert out["structuredContent"]["rows"] == [[5]]


def test_inspector_lists_resources_and_prompts(reader_dsn: str) -> None:
    resources = _inspect(reader_dsn, "--method", "resources/list")
    assert "postgres://pgwarden_demo/public/orders/schema" in {r["uri"] for r in resources["resources"]}
    prompts = _inspect(reader_dsn, "--method", "prompts/list")
    assert len(prompts["prompts"]) >= 4
