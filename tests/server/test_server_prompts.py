"""Data-analysis prompts, grounded in the real schema."""

from __future__ import annotations

import json

import pytest
from mcp import MCPError
from server_helpers import MODERN, run, session

PROMPT_ARGS = {
    "summarize_table": {"table": "public.orders", "focus": "revenue per tenant"},
    "data_quality_report": {"table": "customers"},
    "trend_over_time": {"table": "orders", "time_column": "ordered_at", "measure": "sum(total)",
                        "bucket": "week"},
    "find_anomalies": {"table": "public.payments", "column": "amount"},
    "question_to_sql": {"question": "Which tenant had the most revenue last year?"},
}


def _get(url: str, name: str, arguments: dict[str, str], mode: str = "legacy"):
    async def go():
        async with session(url, mode) as client:
            try:
                return await client.get_prompt(name, arguments)
            except MCPError as exc:  # raised out of the session it would come in an ExceptionGroup
                return exc
    return run(go)


def test_prompts_are_listed_with_arguments(reader_http) -> None:
    async def go():
        async with session(reader_http.url) as client:
            return (await client.list_prompts()).prompts

    prompts = {p.name: p for p in run(go)}
    assert set(prompts) == set(PROMPT_ARGS)
    for prompt in prompts.values():
        assert prompt.description and prompt.arguments
        assert any(a.required for a in prompt.arguments)
        assert all(a.description for a in prompt.arguments)


@pytest.mark.parametrize("name", ["summarize_table", "data_quality_report", "trend_over_time",
                                  "find_anomalies"])
def test_table_prompts_embed_the_table_schema(reader_http, name: str) -> None:
    result = _get(reader_http.url, name, PROMPT_ARGS[name], MODERN)
    task, schema = result.messages
    assert task.role == "user" and "query" in task.content.text
    resource = schema.content.resource
    assert str(resource.uri).startswith("postgres://pgwarden_demo/public/")
    document = json.loads(resource.text)
    assert document["columns"] and document["table"] in task.content.text


def test_trend_prompt_builds_the_bucketed_query(reader_http) -> None:
    text = _get(reader_http.url, "trend_over_time", PROMPT_ARGS["trend_over_time"]).messages[0].content.text
    assert "date_trunc('week', ordered_at)" in text and "sum(total)" in text and "public.orders" in text


def test_question_prompt_lists_every_table_with_columns(reader_http) -> None:
    [message] = _get(reader_http.url, "question_to_sql", PROMPT_ARGS["question_to_sql"]).messages
    text = message.content.text
    assert "Which tenant had the most revenue last year?" in text
    for table in ["public.orders(", "hr.salaries(", "public.customers("]:
        assert table in text
    assert "national_id text" in text


@pytest.mark.parametrize(("name", "arguments", "message"), [
    ("summarize_table", {}, "missing required argument 'table'"),
    ("summarize_table", {"table": "public.nope"}, "no readable table"),
    ("trend_over_time", {"table": "orders", "time_column": "nope"}, "has no column 'nope'"),
    ("trend_over_time", {"table": "orders", "time_column": "ordered_at", "bucket": "fortnight"}, "bucket"),
    ("find_anomalies", {"table": "orders", "column": "nope"}, "has no column"),
    ("question_to_sql", {"question": "x", "schema": "nope"}, "no readable tables"),
    ("no_such_prompt", {}, "unknown prompt"),
])
def test_bad_prompt_arguments_are_invalid_params(reader_http, name: str, arguments, message: str) -> None:
    error = _get(reader_http.url, name, arguments)
    assert isinstance(error, MCPError)
    assert error.code == -32602
    assert message in error.message
