"""The front server: the SDK's low-level `Server`, with the relay as its only middleware.

It advertises only what the upstream has: the upstream's capabilities (minus experimental
features and extensions the proxy cannot police), its instructions, and the proxy's own
name. The SDK's handshake code reads them from here for both protocol generations.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from pgwarden import __version__
from pgwarden.proxy.relay.core import Relay


class RelayServer(Server[Any]):
    """An MCP server whose every request is answered by `relay`."""

    def __init__(self, relay: Relay) -> None:
        super().__init__(
            "pgwarden-proxy",
            version=__version__,
            title="pgwarden",
            description="Policy-enforcing proxy in front of a PostgreSQL MCP server",
            get_tool_input_schema=lambda _name: None,
        )
        self.relay = relay
        # The relay replaces the SDK's own OpenTelemetry middleware: pgwarden emits one span
        # per request itself (with the decision on it), and a second one would double count.
        self.middleware = [relay]

    @property  # type: ignore[override]
    def instructions(self) -> str | None:
        return self.relay.upstream.instructions

    @instructions.setter
    def instructions(self, value: str | None) -> None:
        pass  # always the upstream's

    def get_capabilities(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
        *,
        protocol_version: str | None = None,
    ) -> types.ServerCapabilities:
        """The upstream's capabilities, restricted to what the relay relays."""
        up = self.relay.upstream.capabilities or types.ServerCapabilities()
        modern = protocol_version in MODERN_PROTOCOL_VERSIONS
        # 2026-07-28 delivers change notifications only on subscriptions/listen streams,
        # which the relay does not serve: do not promise them to a modern client.
        tools = (
            types.ToolsCapability(list_changed=bool(up.tools.list_changed) and not modern)
            if up.tools
            else None
        )
        prompts = (
            types.PromptsCapability(list_changed=bool(up.prompts.list_changed) and not modern)
            if up.prompts
            else None
        )
        resources = (
            types.ResourcesCapability(
                subscribe=bool(up.resources.subscribe) and not modern,
                list_changed=bool(up.resources.list_changed) and not modern,
            )
            if up.resources
            else None
        )
        return types.ServerCapabilities(
            tools=tools,
            prompts=prompts,
            resources=resources,
            logging=up.logging if not modern else None,
            completions=up.completions,
        )

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return InitializationOptions(
            server_name=self.name,
            server_version=self.version,
            title=self.title,
            description=self.description,
            capabilities=self.get_capabilities(),
            instructions=self.instructions,
        )
