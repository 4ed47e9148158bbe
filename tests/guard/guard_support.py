"""Shared data for the guard tests: the demo catalog, named policies, fixture file readers."""

from __future__ import annotations

from pathlib import Path

from pgwarden.proxy.guard import Catalog, Mask, Obligations, RowFilter

FIXTURES = Path(__file__).parent / "fixtures"

DEMO_COLUMNS: dict[str, dict[str, str]] = {
    "public.tenants": {
        "id": "integer", "name": "text", "plan": "text", "created_at": "timestamp with time zone",
    },
    "public.customers": {
        "id": "integer", "tenant_id": "integer", "name": "text", "email": "text", "phone": "text",
        "national_id": "text", "country": "text", "created_at": "timestamp with time zone",
    },
    "public.products": {
        "id": "integer", "sku": "text", "name": "text", "category": "text", "price": "numeric(10,2)",
        "attributes": "jsonb",
    },
    "public.orders": {
        "id": "bigint", "tenant_id": "integer", "customer_id": "integer", "status": "text",
        "ordered_at": "timestamp with time zone", "total": "numeric(12,2)",
    },
    "public.order_items": {
        "id": "bigint", "order_id": "bigint", "product_id": "integer", "quantity": "integer",
        "unit_price": "numeric(10,2)",
    },
    "public.payments": {
        "id": "bigint", "order_id": "bigint", "tenant_id": "integer", "card_brand": "text",
        "card_number": "text", "amount": "numeric(12,2)", "paid_at": "timestamp with time zone",
        "status": "text",
    },
    "public.support_tickets": {
        "id": "integer", "tenant_id": "integer", "customer_id": "integer", "subject": "text", "body": "text",
        "status": "text", "priority": "text", "opened_at": "timestamp with time zone",
        "closed_at": "timestamp with time zone",
    },
    "public.secrets": {
        "id": "integer", "tenant_id": "integer", "service": "text", "api_key": "text",
        "created_at": "timestamp with time zone",
    },
    "hr.employees": {
        "id": "integer", "name": "text", "email": "text", "department": "text", "title": "text",
        "hired_at": "date",
    },
    "hr.salaries": {
        "employee_id": "integer", "salary": "numeric(12,2)", "currency": "text", "effective_from": "date",
    },
}

DEMO_CATALOG = Catalog.from_mapping(DEMO_COLUMNS)

ALL_RELATIONS = frozenset(DEMO_COLUMNS)

# Everything readable, nothing masked: the analytics corpus must behave exactly as without the guard.
PERMISSIVE = Obligations(allowed_relations=ALL_RELATIONS, row_cap=1_000_000)

TENANT = 1

# The analyst policy of the golden files and the leak tests: no secrets or salaries, PII masked,
# one tenant's rows, at most 100 rows.
ANALYST = Obligations(
    allowed_relations=ALL_RELATIONS - {"public.secrets", "hr.salaries"},
    masks={
        "public.customers": {
            "email": Mask("email"),
            "national_id": Mask("partial", (("keep_last", 2),)),
            "phone": Mask("null"),
        },
        "public.payments": {"card_number": Mask("partial", (("keep_last", 4),))},
        "public.support_tickets": {"body": Mask("fixed", (("text", "[redacted]"),))},
        "hr.employees": {"email": Mask("hash", (("salt", "demo-salt"),))},
    },
    row_filters={
        "public.customers": (RowFilter("tenant_id", (TENANT,)),),
        "public.orders": (RowFilter("tenant_id", (TENANT,)),),
        "public.payments": (RowFilter("tenant_id", (TENANT,)),),
        "public.support_tickets": (RowFilter("tenant_id", (TENANT,)),),
    },
    row_cap=100,
)

# Row filters with several values, an empty list and several filters on one table.
FILTERS = Obligations(
    allowed_relations=ALL_RELATIONS,
    row_filters={
        "public.orders": (RowFilter("tenant_id", (1, 2, 3)), RowFilter("status", ("paid", "shipped"))),
        "public.customers": (RowFilter("tenant_id", ()),),
        "public.tenants": (RowFilter("plan", ("it's", "enterprise")),),
    },
)

POLICIES = {"analyst": ANALYST, "permissive": PERMISSIVE, "filters": FILTERS,
            "cap10": Obligations(allowed_relations=ALL_RELATIONS, row_cap=10),
            "pinning": Obligations(allowed_relations=ALL_RELATIONS)}


def blocks(path: Path) -> list[list[str]]:
    """Blank-line separated blocks of non-empty lines (comment lines start with `--`)."""
    out: list[list[str]] = []
    current: list[str] = []
    for line in path.read_text().splitlines():
        if line.strip():
            current.append(line)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def queries(path: Path) -> list[str]:
    """The SQL of each block, comment lines dropped (blocks that are only comments skipped)."""
    found = []
    for block in blocks(path):
        lines = [line for line in block if not line.startswith("-- ")]
        if lines:
            found.append("\n".join(lines))
    return found
