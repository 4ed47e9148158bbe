"""Building the product's pipeline from a configuration: policy, catalog, audit, telemetry,
the tool map, and the `GuardedGate` over them. No allow-all path exists here: without a
valid policy `build_pipeline` raises, and the proxy does not start."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import psycopg

from pgwarden.proxy.audit.log import AuditLog
from pgwarden.proxy.config import ConfigError, ProxyConfig
from pgwarden.proxy.guard.catalog import Catalog
from pgwarden.proxy.pipeline.guarded import GuardedGate
from pgwarden.proxy.policy.watcher import PolicyWatcher
from pgwarden.proxy.relay.upstream import Upstream, UpstreamSpec, UpstreamUnavailable
from pgwarden.proxy.telemetry import Telemetry
from pgwarden.proxy.toolmaps.detect import preset_for, suggest
from pgwarden.proxy.toolmaps.model import ToolMap
from pgwarden.proxy.toolmaps.presets import PRESETS

logger = logging.getLogger(__name__)


@dataclass
class Pipeline:
    gate: GuardedGate
    watcher: PolicyWatcher
    telemetry: Telemetry
    audit: AuditLog
    catalog: Catalog | None

    def close(self) -> None:
        self.watcher.stop()
        self.audit.close()
        self.telemetry.shutdown()


def upstream_spec(config: ProxyConfig) -> UpstreamSpec:
    up = config.upstream
    return UpstreamSpec(
        name=up.name,
        command=tuple(up.command or ()),
        url=up.url,
        env=dict(up.env),
        cwd=up.cwd,
        headers=dict(up.headers),
        protocol=up.protocol,
        call_timeout_s=up.call_timeout_s,
        connect_timeout_s=up.connect_timeout_s,
        restart_max_s=up.restart_max_s,
    )


def build_pipeline(
    config: ProxyConfig, *, telemetry: Telemetry | None = None, watch: bool = True
) -> Pipeline:
    """Load everything the gate needs; raises (PolicyError, ConfigError, OSError) when it cannot."""
    catalog: Catalog | None = None
    if config.catalog_dsn:
        catalog = Catalog.from_dsn(config.catalog_dsn)
        try:
            catalog.refresh()  # introspect now, not on the first call (no I/O on the guard path)
        except psycopg.Error as exc:
            raise ConfigError(f"catalog_dsn: cannot read the catalog ({type(exc).__name__})") from exc
    elif config.catalog:
        catalog = Catalog.from_mapping({k: tuple(v) for k, v in config.catalog.items()})
    try:
        Path(config.audit.path).parent.mkdir(parents=True, exist_ok=True)
        audit = AuditLog(config.audit.path, strict=config.audit.strict)
    except OSError as exc:
        raise ConfigError(
            f"audit.path {config.audit.path}: cannot open the audit log ({exc.strerror})"
        ) from exc
    watcher = PolicyWatcher([Path(p) for p in config.policy], catalog=catalog)
    if watch:
        watcher.start()
    telemetry = telemetry or Telemetry.from_config(config.telemetry)
    tools = {name: tool.spec() for name, tool in config.tool_map.tools.items()}
    preset = config.tool_map.preset
    base = PRESETS[preset] if preset in PRESETS else ToolMap(preset)
    gate = GuardedGate(
        lambda: watcher.current,
        tool_map=base.merged(tools),
        catalog=catalog,
        telemetry=telemetry,
        audit=audit,
    )
    return Pipeline(gate, watcher, telemetry, audit, catalog)


def tool_map_resolver(
    config: ProxyConfig, gate: GuardedGate, *, report: TextIO | None = None
) -> Callable[[Upstream], Awaitable[None]]:
    """The on-connected hook: detect the preset (`auto`) and report unconfirmed SQL tools."""
    out = report if report is not None else sys.stderr
    overrides = {name: tool.spec() for name, tool in config.tool_map.tools.items()}

    async def resolve(upstream: Upstream) -> None:
        tools: list[dict[str, Any]] = []
        try:
            listed = await upstream.request("tools/list", {})
            tools = [t for t in listed.get("tools", []) if isinstance(t, dict)]
        except (UpstreamUnavailable, TimeoutError, Exception) as exc:  # detection is advisory
            logger.warning("could not list the upstream's tools for detection: %s", exc)
        if config.tool_map.preset == "auto":
            info = upstream.server_info
            found = preset_for(info.name if info else None, [t.get("name", "") for t in tools])
            base = PRESETS[found] if found else ToolMap("none")
            gate.tool_map = base.merged(overrides)
            print(f"pgwarden: tool map: {found or 'none detected'}", file=out)
        for suggestion in suggest(tools, gate.tool_map):
            gate.sql_looking_tools.add(suggestion.tool)
            print(
                f"pgwarden: tool {suggestion.tool!r} takes SQL in {suggestion.argument!r} but is not in the "
                f"tool map; calls to it are denied until you confirm it under tool_map.tools, e.g.\n"
                f"    {suggestion.as_config()}",
                file=out,
            )

    return resolve
