"""The demo database is deterministic, complete, and its reader role cannot write."""

from __future__ import annotations

import psycopg
import pytest

from pgwarden.server import demo_data

TABLES = ["public.tenants", "public.customers", "public.products", "public.orders",
          "public.order_items", "public.payments", "public.support_tickets", "public.secrets",
          "hr.employees", "hr.salaries"]


@pytest.mark.parametrize("table", TABLES)
def test_every_demo_table_has_rows(admin_dsn: str, table: str) -> None:
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None and row[0] > 0


def test_small_size_matches_its_spec(admin_dsn: str) -> None:
    spec = demo_data.SIZES["small"]
    with psycopg.connect(admin_dsn) as conn:
        orders = conn.execute("SELECT count(*) FROM public.orders").fetchone()
        customers = conn.execute("SELECT count(*) FROM public.customers").fetchone()
    assert orders == (spec.orders,)
    assert customers == (spec.customers,)


def test_dimension_rows_are_deterministic_from_the_seed() -> None:
    import random

    size = demo_data.SIZES["tiny"]
    first = demo_data._dimension_rows(size, random.Random(7))
    again = demo_data._dimension_rows(size, random.Random(7))
    other = demo_data._dimension_rows(size, random.Random(8))
    assert first == again
    assert first["customers"] != other["customers"]


def test_reader_role_cannot_write(reader_dsn: str, admin_dsn: str) -> None:
    with psycopg.connect(reader_dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM public.secrets")
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM public.secrets").fetchone()
    assert row is not None and row[0] > 0


def test_large_size_is_big_enough_for_benchmarks() -> None:
    assert demo_data.SIZES["large"].orders >= 1_000_000


def test_each_demo_size_has_its_own_database() -> None:
    from pgwarden.server import embedded

    names = {size: embedded.demo_database_name(size) for size in demo_data.SIZES}
    assert names["small"] == embedded.DEMO_DATABASE == "pgwarden_demo"
    assert names["large"] == "pgwarden_demo_large"
    assert len(set(names.values())) == len(names)
    with pytest.raises(ValueError):
        embedded.demo_database_name("huge")


def test_unknown_size_is_refused_before_touching_the_database() -> None:
    with pytest.raises(ValueError):
        demo_data.seed_database("dbname=never_used", size="huge")


def test_payments_match_their_orders(admin_dsn: str) -> None:
    with psycopg.connect(admin_dsn) as conn:
        mismatched = conn.execute(
            "SELECT count(*) FROM public.payments p JOIN public.orders o ON o.id = p.order_id "
            "WHERE p.amount <> o.total OR p.tenant_id <> o.tenant_id").fetchone()
    assert mismatched == (0,)
