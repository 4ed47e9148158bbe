"""pgwarden's own PostgreSQL MCP server: read-only tools, table-schema resources, analysis prompts.

Pieces: `cli` (the `pgwarden server` command), `app` (the MCP server object), `tools`,
`resources`, `prompts`, `database` (hardened execution), `statement_check` (pglast check),
`catalog` (what the role can read), `values` (JSON conversion), `privileges` (start-up role
check), `telemetry` (OpenTelemetry spans), `transports`, `embedded` and `demo_data`
(the embedded PostgreSQL and its demo database). Never imports `pgwarden.proxy`.
"""
