"""OAuth 2.0 Protected Resource Metadata (RFC 9728) for the proxy's MCP endpoint.

The document is served at `/.well-known/oauth-protected-resource` followed by the resource's
path (RFC 9728 §3.1: `https://host/mcp` → `https://host/.well-known/oauth-protected-resource/mcp`)
and, for clients that only try the root form, at the bare well-known path too. Every 401 points
to it with `WWW-Authenticate: Bearer resource_metadata="…"` (MCP authorization, RFC 9728 §5.1).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pgwarden.proxy.auth.config import AuthConfig

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def resource_path(resource: str) -> str:
    path = urlsplit(resource).path
    return "" if path in ("", "/") else path.rstrip("/")


def metadata_url(resource: str) -> str:
    """Where the metadata document lives, as an absolute URL."""
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{resource_path(resource)}"


def metadata_paths(resource: str) -> frozenset[str]:
    return frozenset({WELL_KNOWN, WELL_KNOWN + resource_path(resource)})


def metadata_document(config: AuthConfig) -> dict[str, Any]:
    """The RFC 9728 document: resource, authorization servers, scopes, bearer methods."""
    doc: dict[str, Any] = {
        "resource": config.resource,
        "bearer_methods_supported": ["header"],
    }
    if config.authorization_servers:
        doc["authorization_servers"] = list(config.authorization_servers)
    scopes = config.scopes_supported if config.scopes_supported is not None else config.required_scopes
    if scopes:
        doc["scopes_supported"] = list(scopes)
    if config.resource_name:
        doc["resource_name"] = config.resource_name
    if config.resource_documentation:
        doc["resource_documentation"] = config.resource_documentation
    return doc
