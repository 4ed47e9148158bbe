"""Row and byte caps hold with bounded memory; the result never loads the rest."""

from __future__ import annotations

import anyio
import pytest
from server_helpers import HttpServer, query, text_of

from pgwarden.server.config import ServerSettings
from pgwarden.server.database import Database


@pytest.fixture(scope="module")
def capped_http(reader_dsn: str, server_logs):
    server = HttpServer(reader_dsn, log_dir=server_logs)
    yield server
    server.stop()


def test_five_million_rows_return_the_cap_in_bounded_memory(capped_http) -> None:
    query(capped_http.url, "SELECT 1")  # warm up: imports, pool, first session
    baseline_kb = capped_http.peak_rss_kb()
    # ~1 GB of rows if anything loaded them all.
    sql = "SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 5000000) AS g"
    result = query(capped_http.url, sql)
    assert not result.is_error, text_of(result)
    content = result.structured_content
    assert content["row_count"] == 1000 and content["truncated"] is True
    assert content["rows"][0] == [1, "x" * 200] and content["rows"][-1][0] == 1000
    growth_mb = (capped_http.peak_rss_kb() - baseline_kb) / 1024
    assert growth_mb < 64, f"peak memory grew by {growth_mb:.0f} MB"


def test_row_cap_on_a_real_table(capped_http) -> None:
    result = query(capped_http.url, "SELECT * FROM public.order_items")
    assert result.structured_content["row_count"] == 1000
    assert result.structured_content["truncated"] is True


def _run_query(dsn: str, settings: ServerSettings, sql: str, max_rows: int | None = None):
    async def go():
        async with Database(dsn, settings) as db:
            return await db.query(sql, max_rows)
    return anyio.run(go)


def test_byte_cap_truncates_before_the_row_cap(reader_dsn: str) -> None:
    settings = ServerSettings(max_rows=1000, max_result_bytes=10_000, pool_max_size=1)
    result = _run_query(reader_dsn, settings, "SELECT g, repeat('y', 100) FROM generate_series(1, 500) g")
    assert result.truncated and result.truncated_by == "max_result_bytes"
    assert 50 < result.row_count < 100  # each row is ~110 bytes of JSON
    assert result.rows == [[i, "y" * 100] for i in range(1, result.row_count + 1)]


def test_a_single_row_over_the_byte_cap_returns_no_rows(reader_dsn: str) -> None:
    settings = ServerSettings(max_result_bytes=1_000, pool_max_size=1)
    result = _run_query(reader_dsn, settings, "SELECT repeat('z', 5000)")
    assert result.row_count == 0 and result.truncated


def test_server_cap_bounds_client_max_rows(reader_dsn: str) -> None:
    settings = ServerSettings(max_rows=3, pool_max_size=1)
    result = _run_query(reader_dsn, settings, "SELECT g FROM generate_series(1, 10) g", max_rows=500)
    assert result.rows == [[1], [2], [3]] and result.truncated_by == "max_rows"
