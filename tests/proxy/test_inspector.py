"""The MCP Inspector CLI works through the proxy (tools/list, tools/call, resources/list)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from proxy_helpers import ANALYST, NODE_DIR, PGWARDEN, POLICY, child_env, db_values, pgwarden_server_command

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(
        shutil.which("npx") is None
        or not (NODE_DIR / "node_modules" / "@modelcontextprotocol" / "inspector").exists(),
        reason="needs npx and tests/node",
    ),
]


def inspector(config: Path, *method: str) -> dict[str, object]:
    # The proxy's own options go through PGWARDEN_PROXY_CONFIG: the Inspector parses `--` and
    # `--config` itself.
    args = [
        "npx",
        "--offline",
        "@modelcontextprotocol/inspector",
        "--cli",
        "-e",
        f"PGWARDEN_PROXY_CONFIG={config}",
        PGWARDEN,
        "proxy",
        *method,
    ]
    done = subprocess.run(
        args, cwd=NODE_DIR, env=child_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_inspector_cli_through_the_proxy(reader_dsn: str, admin_dsn: str, tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "upstream": {"command": pgwarden_server_command(reader_dsn)},
                "policy": [str(POLICY)],
                "principal": ANALYST,
                "catalog_dsn": reader_dsn,
                "audit": {"path": str(tmp_path / "audit.jsonl")},
            }
        )
    )
    tools = inspector(config, "--method", "tools/list")
    assert "query" in [t["name"] for t in tools["tools"]]  # type: ignore[index, union-attr]
    resources = inspector(config, "--method", "resources/list")
    uris = [r["uri"] for r in resources["resources"]]  # type: ignore[index, union-attr]
    assert uris and not [u for u in uris if "secrets" in u]
    called = inspector(
        config,
        "--method",
        "tools/call",
        "--tool-name",
        "query",
        "--tool-arg",
        "sql=SELECT id, email FROM customers ORDER BY id LIMIT 5",
    )
    text = json.dumps(called)
    assert "***@" in text
    assert not [
        e for e in db_values(admin_dsn, "SELECT email FROM customers ORDER BY id LIMIT 5") if e in text
    ]
