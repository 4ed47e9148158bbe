"""Resources: one schema document per readable table, a template for them, and an overview.

URIs: `postgres://<database>/<schema>/<table>/schema` (JSON from `catalog.describe_table`)
and `postgres://<database>/schemas` (every readable schema with its tables). Names in URIs
are percent-encoded.
"""

from __future__ import annotations

import json

import mcp_types as types
from mcp.shared.exceptions import MCPError

from pgwarden.server import catalog
from pgwarden.server.database import Database, QueryError

PAGE_SIZE = 500
JSON = "application/json"
RESOURCE_NOT_FOUND = -32002  # the MCP specification's code for an unknown resource


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise MCPError(code=types.INVALID_PARAMS, message="invalid cursor")
    return int(cursor)


async def list_resources(db: Database, cursor: str | None) -> types.ListResourcesResult:
    start = _offset(cursor)
    try:
        tables = await catalog.list_tables(db)
    except QueryError as exc:
        raise MCPError(code=types.INTERNAL_ERROR, message=f"cannot list tables: {exc.message}") from None
    resources = []
    if start == 0:
        resources.append(types.Resource(
            name="schemas", title=f"Schemas of {db.database}", uri=catalog.overview_uri(db.database),
            description="Every schema this connection can read, with its tables and their resource URIs.",
            mime_type=JSON,
        ))
    for table in tables[start:start + PAGE_SIZE]:
        qualified = f"{table['schema']}.{table['name']}"
        resources.append(types.Resource(
            name=qualified, title=f"Schema of {qualified}",
            uri=catalog.schema_uri(db.database, table["schema"], table["name"]),
            description=(f"Columns, keys, indexes and row estimate of the {table['kind']} {qualified}"
                         + (f": {table['comment']}" if table["comment"] else ".")),
            mime_type=JSON,
        ))
    more = start + PAGE_SIZE < len(tables)
    next_cursor = str(start + PAGE_SIZE) if more else None
    return types.ListResourcesResult(resources=resources, next_cursor=next_cursor)


def list_templates(db: Database) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(resource_templates=[
        types.ResourceTemplate(
            name="table-schema", title="Schema of a table",
            uri_template=catalog.template_uri(db.database),
            description="Columns, primary key, foreign keys, indexes and row estimate of one table (JSON).",
            mime_type=JSON,
        ),
    ])


async def read_resource(db: Database, uri: str) -> types.ReadResourceResult:
    try:
        if uri == catalog.overview_uri(db.database):
            document = await catalog.schemas_overview(db)
        else:
            table = catalog.parse_schema_uri(db.database, uri)
            if table is None:
                raise MCPError(code=RESOURCE_NOT_FOUND, message="resource not found", data={"uri": uri})
            document = await catalog.describe_table(db, table)
    except catalog.TableNotFound:
        raise MCPError(code=RESOURCE_NOT_FOUND, message="resource not found", data={"uri": uri}) from None
    except QueryError as exc:
        raise MCPError(code=types.INTERNAL_ERROR, message=f"cannot read resource: {exc.message}") from None
    text = json.dumps(document, indent=2, ensure_ascii=False)
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type=JSON, text=text)])
