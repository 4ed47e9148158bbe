"""pgwarden: a security-hardened MCP proxy for PostgreSQL."""

__version__ = "0.1.0"
