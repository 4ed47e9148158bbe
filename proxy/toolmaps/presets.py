"""Tool maps for pgwarden's server and the widely used Postgres MCP servers.

Each entry was checked against the server's published tool definitions (November 2026):

- `pgwarden`: `query.sql`, `explain_query.sql`; `describe_table.table` names a table;
  `list_tables` lists tables (filtered to those the principal may read);
  results in `structuredContent` (`columns`, `rows`, `row_count`, `truncated`).
- `server-postgres` (`@modelcontextprotocol/server-postgres` 0.6.2): `query.sql`; the result
  is one text item with `JSON.stringify(rows, null, 2)`.
- `postgres-mcp-pro` (crystaldba/postgres-mcp): `execute_sql.sql`, `explain_query.sql`,
  `analyze_query_indexes.queries` (a list of statements); results are Python reprs of rows
  (`str(list_of_dicts)`), which cannot be parsed reliably: result format `opaque`.
- `toolbox` (Google's MCP Toolbox, `postgres-execute-sql` tools, named `execute_sql` in its
  prebuilt Postgres configuration): `execute_sql.sql`; one JSON object per content item.
  Toolbox tool names are chosen by its operator: rename in the config if yours differ.
- `dbhub` (bytebase/dbhub): `execute_sql.sql` (it accepts several `;`-separated statements;
  the guard allows exactly one); result `{"success": true, "data": {"rows": [...], "count": n}}`
  in one text item.
- `supabase` (supabase-community/supabase-mcp): `execute_sql.query` (result: the JSON rows inside
  untrusted-data markers); `apply_migration` runs DDL and is always denied.
"""

from __future__ import annotations

from pgwarden.proxy.toolmaps.model import SqlArgument, ToolMap, ToolSpec

SQL = SqlArgument("sql")

PRESETS: dict[str, ToolMap] = {
    "pgwarden": ToolMap(
        "pgwarden",
        {
            "query": ToolSpec(sql=SQL, result="pgwarden"),
            "explain_query": ToolSpec(sql=SQL),
            "describe_table": ToolSpec(table="table"),
            "list_tables": ToolSpec(lists_tables=True),
        },
    ),
    "server-postgres": ToolMap("server-postgres", {"query": ToolSpec(sql=SQL, result="json_rows")}),
    "postgres-mcp-pro": ToolMap(
        "postgres-mcp-pro",
        {
            "execute_sql": ToolSpec(sql=SQL),
            "explain_query": ToolSpec(sql=SQL),
            "analyze_query_indexes": ToolSpec(sql=SqlArgument("queries", "list")),
            "list_schemas": ToolSpec(),
            "list_objects": ToolSpec(),
            "get_object_details": ToolSpec(),
            "analyze_workload_indexes": ToolSpec(),
            "analyze_db_health": ToolSpec(),
            "get_top_queries": ToolSpec(),
        },
    ),
    "toolbox": ToolMap("toolbox", {"execute_sql": ToolSpec(sql=SQL, result="json_items")}),
    "dbhub": ToolMap(
        "dbhub", {"execute_sql": ToolSpec(sql=SQL, result="json_rows", rows_path=("data", "rows"))}
    ),
    "supabase": ToolMap(
        "supabase",
        {
            "execute_sql": ToolSpec(sql=SqlArgument("query"), result="json_embedded"),
            "apply_migration": ToolSpec(deny="apply_migration runs DDL; pgwarden allows read-only SQL only"),
        },
    ),
}

SERVER_NAMES: dict[str, str] = {
    "pgwarden": "pgwarden",
    "example-servers/postgres": "server-postgres",
    "postgres-mcp": "postgres-mcp-pro",
    "toolbox": "toolbox",
    "dbhub": "dbhub",
    "supabase": "supabase",
}
"""`serverInfo.name` prefixes (lower case) that identify a preset."""
