"""Prompts for common data-analysis tasks, each grounded in the real schema of the database.

Table prompts embed the table's schema document (the same JSON as its resource) so the model
starts from real column names and types; `question_to_sql` embeds a compact schema of every
readable table. Prompts only produce messages; the model then runs SQL through the tools.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError

from pgwarden.server import catalog
from pgwarden.server.database import Database, QueryError

BUCKETS = ("hour", "day", "week", "month", "quarter", "year")

_TABLE_ARG = types.PromptArgument(
    name="table", description="Table to analyse, optionally schema-qualified (e.g. public.orders).",
    required=True,
)

PROMPTS: list[types.Prompt] = [
    types.Prompt(
        name="summarize_table", title="Summarise a table",
        description="Describe what a table holds: size, key columns, value distributions, relationships.",
        arguments=[_TABLE_ARG, types.PromptArgument(
            name="focus", description="Optional aspect to focus on (e.g. 'revenue', 'customers by country').",
            required=False)],
    ),
    types.Prompt(
        name="data_quality_report", title="Data-quality report",
        description="Check a table for NULLs, duplicates, orphaned foreign keys, outliers and odd values.",
        arguments=[_TABLE_ARG],
    ),
    types.Prompt(
        name="trend_over_time", title="Trend over time",
        description="Aggregate a measure per time bucket and describe the trend.",
        arguments=[
            _TABLE_ARG,
            types.PromptArgument(name="time_column", description="Date or timestamp column to bucket by.",
                                 required=True),
            types.PromptArgument(name="measure",
                                 description="What to aggregate, e.g. 'count(*)' or 'sum(total)' "
                                             "(default: count(*)).", required=False),
            types.PromptArgument(name="bucket", description=f"Time bucket: {', '.join(BUCKETS)} "
                                                            "(default: month).", required=False),
        ],
    ),
    types.Prompt(
        name="find_anomalies", title="Find anomalies",
        description="Look for outliers, spikes and rare values in a table, optionally in one column.",
        arguments=[_TABLE_ARG, types.PromptArgument(
            name="column", description="Optional column to concentrate on.", required=False)],
    ),
    types.Prompt(
        name="question_to_sql", title="Question to SQL",
        description="Turn a question in plain language into one read-only SQL query using the real schema.",
        arguments=[
            types.PromptArgument(name="question", description="The question to answer from the data.",
                                 required=True),
            types.PromptArgument(name="schema", description="Optional schema to restrict the tables to.",
                                 required=False),
        ],
    ),
]

_RULES = ("Use the `query` tool (one read-only SELECT per call; results are capped, so aggregate in SQL "
          "rather than fetching raw rows) and `explain_query` before anything that may be expensive. "
          "Schema-qualify every table.")


def _text(text: str) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=types.TextContent(type="text", text=text))


def _embedded(uri: str, document: dict[str, Any]) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=types.EmbeddedResource(
        type="resource",
        resource=types.TextResourceContents(uri=uri, mime_type="application/json",
                                            text=json.dumps(document, indent=2, ensure_ascii=False)),
    ))


def _required(args: Mapping[str, str], name: str) -> str:
    value = args.get(name)
    if not value or not value.strip():
        raise MCPError(code=types.INVALID_PARAMS, message=f"missing required argument {name!r}")
    return value.strip()


async def _table(db: Database, args: Mapping[str, str]) -> tuple[catalog.TableRef, dict[str, Any], str]:
    try:
        ref = await catalog.resolve_table(db, _required(args, "table"))
        document = await catalog.describe_table(db, ref)
    except catalog.TableNotFound as exc:
        raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from None
    return ref, document, catalog.schema_uri(db.database, ref.schema, ref.name)


async def _summarize(db: Database, args: Mapping[str, str]) -> types.GetPromptResult:
    ref, doc, uri = await _table(db, args)
    focus = (args.get("focus") or "").strip()
    task = (f"Summarise the table {ref.qualified} for an analyst: what one row represents, how many rows "
            "it has, its key columns and relationships to other tables, the distribution of its most "
            "informative columns (ranges, top values, share of NULLs) and anything surprising."
            + (f" Focus on: {focus}." if focus else "") + f"\n\n{_RULES}\n\nIts schema follows.")
    return types.GetPromptResult(description=f"Summarise {ref.qualified}",
                                 messages=[_text(task), _embedded(uri, doc)])


async def _quality(db: Database, args: Mapping[str, str]) -> types.GetPromptResult:
    ref, doc, uri = await _table(db, args)
    task = (f"Write a data-quality report for {ref.qualified}. For each column check the share of NULLs "
            "(flag NULLs in columns that look mandatory), distinct counts, duplicates of what should be "
            "unique, values outside plausible ranges, malformed text (e-mails, codes), and dates in the "
            "future or far past. For each foreign key, count rows whose reference has no match. End with "
            "a table of findings ordered by severity, each with the SQL that shows it."
            f"\n\n{_RULES}\n\nIts schema follows.")
    return types.GetPromptResult(description=f"Data-quality report for {ref.qualified}",
                                 messages=[_text(task), _embedded(uri, doc)])


async def _trend(db: Database, args: Mapping[str, str]) -> types.GetPromptResult:
    ref, doc, uri = await _table(db, args)
    column = _required(args, "time_column")
    names = {c["name"]: c["type"] for c in doc["columns"]}
    if column not in names:
        raise MCPError(code=types.INVALID_PARAMS, message=f"{ref.qualified} has no column {column!r}")
    bucket = (args.get("bucket") or "month").strip().lower()
    if bucket not in BUCKETS:
        raise MCPError(code=types.INVALID_PARAMS, message=f"bucket must be one of {', '.join(BUCKETS)}")
    measure = (args.get("measure") or "count(*)").strip()
    col = catalog.quote_ident(column)
    sql = (f"SELECT date_trunc('{bucket}', {col}) AS {bucket}, {measure} AS value\n"
           f"FROM {ref.qualified}\nGROUP BY 1 ORDER BY 1")
    task = (f"Show how {measure} over {ref.qualified} evolves per {bucket} of {col} ({names[column]}). "
            f"Start from a query like:\n\n{sql}\n\nThen describe the overall trend, seasonality, the "
            "largest increases and drops, and incomplete first/last buckets."
            f"\n\n{_RULES}\n\nThe table's schema follows.")
    return types.GetPromptResult(description=f"Trend of {measure} per {bucket} in {ref.qualified}",
                                 messages=[_text(task), _embedded(uri, doc)])


async def _anomalies(db: Database, args: Mapping[str, str]) -> types.GetPromptResult:
    ref, doc, uri = await _table(db, args)
    column = (args.get("column") or "").strip()
    if column and column not in {c["name"] for c in doc["columns"]}:
        raise MCPError(code=types.INVALID_PARAMS, message=f"{ref.qualified} has no column {column!r}")
    target = f"the column {catalog.quote_ident(column)} of {ref.qualified}" if column else ref.qualified
    task = (f"Find anomalies in {target}: numeric outliers (beyond 3 standard deviations or the IQR "
            "fences), sudden spikes or gaps over time, rare categories, and rows that break the "
            "relationships implied by the schema. Compute statistics in SQL (avg, stddev, "
            "percentile_cont, count per value) instead of fetching raw rows, then list each anomaly "
            f"with the evidence and a query that reproduces it.\n\n{_RULES}\n\nThe table's schema follows.")
    return types.GetPromptResult(description=f"Anomalies in {target}",
                                 messages=[_text(task), _embedded(uri, doc)])


async def _question(db: Database, args: Mapping[str, str]) -> types.GetPromptResult:
    question = _required(args, "question")
    schema = (args.get("schema") or "").strip() or None
    summary = await catalog.compact_schema(db, schema)
    if not summary:
        where = f" in schema {schema!r}" if schema else ""
        raise MCPError(code=types.INVALID_PARAMS, message=f"no readable tables{where}")
    task = (f"Answer this question with one read-only PostgreSQL SELECT:\n\n{question}\n\n"
            f"Tables you can use in database {db.database} (columns with types):\n{summary}\n\n"
            "Use only these tables and columns; join along the foreign keys (describe_table shows them). "
            f"Show the SQL, run it with `query`, and answer from the result.\n\n{_RULES}")
    return types.GetPromptResult(description="Question to SQL", messages=[_text(task)])


HANDLERS: dict[str, Callable[[Database, Mapping[str, str]], Awaitable[types.GetPromptResult]]] = {
    "summarize_table": _summarize,
    "data_quality_report": _quality,
    "trend_over_time": _trend,
    "find_anomalies": _anomalies,
    "question_to_sql": _question,
}


async def get_prompt(db: Database, name: str, arguments: Mapping[str, str] | None) -> types.GetPromptResult:
    handler = HANDLERS.get(name)
    if handler is None:
        raise MCPError(code=types.INVALID_PARAMS, message=f"unknown prompt {name!r}")
    try:
        return await handler(db, arguments or {})
    except QueryError as exc:
        raise MCPError(code=types.INTERNAL_ERROR, message=f"cannot build prompt: {exc.message}") from None
