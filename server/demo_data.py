"""The demo database: a small company whose data a policy will want to hide or mask.

Deterministic from a seed. Dimension tables (tenants, customers, products, employees, tickets,
secrets) are generated in Python with `random.Random(seed)`; the fact tables (orders, order items,
payments) are generated inside Postgres with `generate_series` and a hash of (seed, row number),
so the large size (1.2 million orders) seeds in minutes (about four measured on 2 busy cores).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS hr;

CREATE TABLE public.tenants (
    id          integer PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    plan        text NOT NULL CHECK (plan IN ('free', 'team', 'enterprise')),
    created_at  timestamptz NOT NULL
);
COMMENT ON TABLE public.tenants IS 'Customer organisations of the SaaS (one row per tenant).';

CREATE TABLE public.customers (
    id          integer PRIMARY KEY,
    tenant_id   integer NOT NULL REFERENCES public.tenants(id),
    name        text NOT NULL,
    email       text NOT NULL,
    phone       text,
    national_id text,
    country     text NOT NULL,
    created_at  timestamptz NOT NULL
);
COMMENT ON COLUMN public.customers.national_id IS 'SSN-like national identifier (PII).';
COMMENT ON COLUMN public.customers.email IS 'Contact e-mail (PII).';
CREATE INDEX customers_tenant_idx ON public.customers(tenant_id);

CREATE TABLE public.products (
    id          integer PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    category    text NOT NULL,
    price       numeric(10, 2) NOT NULL,
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE public.orders (
    id          bigint PRIMARY KEY,
    tenant_id   integer NOT NULL REFERENCES public.tenants(id),
    customer_id integer NOT NULL REFERENCES public.customers(id),
    status      text NOT NULL,
    ordered_at  timestamptz NOT NULL,
    total       numeric(12, 2) NOT NULL
);
CREATE INDEX orders_customer_idx ON public.orders(customer_id);
CREATE INDEX orders_ordered_at_idx ON public.orders(ordered_at);

CREATE TABLE public.order_items (
    id          bigint PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES public.orders(id),
    product_id  integer NOT NULL REFERENCES public.products(id),
    quantity    integer NOT NULL CHECK (quantity > 0),
    unit_price  numeric(10, 2) NOT NULL
);
CREATE INDEX order_items_order_idx ON public.order_items(order_id);

CREATE TABLE public.payments (
    id          bigint PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES public.orders(id),
    tenant_id   integer NOT NULL REFERENCES public.tenants(id),
    card_brand  text NOT NULL,
    card_number text NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    paid_at     timestamptz NOT NULL,
    status      text NOT NULL
);
COMMENT ON COLUMN public.payments.card_number IS 'Primary account number (fake).';

CREATE TABLE public.support_tickets (
    id          integer PRIMARY KEY,
    tenant_id   integer NOT NULL REFERENCES public.tenants(id),
    customer_id integer NOT NULL REFERENCES public.customers(id),
    subject     text NOT NULL,
    body        text NOT NULL,
    status      text NOT NULL,
    priority    text NOT NULL,
    opened_at   timestamptz NOT NULL,
    closed_at   timestamptz
);

CREATE TABLE public.secrets (
    id          integer PRIMARY KEY,
    tenant_id   integer NOT NULL REFERENCES public.tenants(id),
    service     text NOT NULL,
    api_key     text NOT NULL,
    created_at  timestamptz NOT NULL
);
COMMENT ON TABLE public.secrets IS 'Third-party API keys per tenant. Never expose.';

CREATE TABLE hr.employees (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    department  text NOT NULL,
    title       text NOT NULL,
    hired_at    date NOT NULL
);

CREATE TABLE hr.salaries (
    employee_id    integer NOT NULL REFERENCES hr.employees(id),
    salary         numeric(12, 2) NOT NULL,
    currency       text NOT NULL,
    effective_from date NOT NULL,
    PRIMARY KEY (employee_id, effective_from)
);
"""

# A login role that can only read: what a hardened deployment gives its MCP server.
READER_ROLE = "pgwarden_reader"
READER_SQL = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
    CREATE ROLE {READER_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
  END IF;
END $$;
GRANT USAGE ON SCHEMA public, hr TO {READER_ROLE};
GRANT SELECT ON ALL TABLES IN SCHEMA public, hr TO {READER_ROLE};
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
"""

FIRST_NAMES = [
    "Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis",
    "Radia", "Linus", "Hedy", "Tim", "Katherine", "Guido", "Sophie", "Bjarne", "Shafi", "Leslie",
    "Yukihiro", "Anita", "Niklaus", "Joan", "Whitfield", "Mary", "John", "Lynn", "Vint", "Jean",
]
LAST_NAMES = [
    "Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
    "Ritchie", "Perlman", "Torvalds", "Lamarr", "Berners-Lee", "Johnson", "van Rossum", "Wilson",
    "Stroustrup", "Goldwasser", "Lamport", "Matsumoto", "Borg", "Wirth", "Clarke", "Diffie", "Shaw",
]
TENANT_NAMES = ["Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries",
                "Wayne Enterprises", "Tyrell", "Cyberdyne", "Soylent"]
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "SE", "ES", "IT", "CA", "JP"]
CATEGORIES = ["books", "electronics", "garden", "toys", "kitchen", "sports", "office"]
PRODUCT_WORDS = ["Widget", "Gadget", "Gizmo", "Sprocket", "Doohickey", "Thingamajig", "Contraption"]
ADJECTIVES = ["Deluxe", "Compact", "Eco", "Pro", "Mini", "Ultra", "Classic", "Smart"]
TICKET_SUBJECTS = [
    "Cannot log in", "Refund request", "Package never arrived", "Wrong item shipped",
    "Invoice question", "Change billing address", "Card declined", "Account locked",
]
DEPARTMENTS = ["Engineering", "Sales", "Support", "Finance", "People", "Marketing"]
TITLES = ["Associate", "Specialist", "Senior", "Lead", "Manager", "Director"]
SERVICES = ["stripe", "sendgrid", "twilio", "aws", "github", "slack"]


@dataclass(frozen=True)
class Size:
    tenants: int
    customers: int
    products: int
    orders: int
    tickets: int
    employees: int


SIZES: dict[str, Size] = {
    "tiny": Size(tenants=3, customers=60, products=20, orders=500, tickets=60, employees=12),
    "small": Size(tenants=5, customers=500, products=60, orders=5_000, tickets=400, employees=40),
    "large": Size(tenants=10, customers=50_000, products=500, orders=1_200_000, tickets=20_000,
                  employees=400),
}

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def _email(first: str, last: str, n: int, domain: str) -> str:
    local = f"{first}.{last}".lower().replace(" ", "").replace("-", "")
    return f"{local}{n}@{domain}"


def _dimension_rows(size: Size, rng: random.Random) -> dict[str, list[tuple[object, ...]]]:
    rows: dict[str, list[tuple[object, ...]]] = {}
    plans = ["free", "team", "enterprise"]
    rows["tenants"] = [
        (i, TENANT_NAMES[(i - 1) % len(TENANT_NAMES)] + ("" if i <= len(TENANT_NAMES) else f" {i}"),
         plans[i % 3], EPOCH - timedelta(days=400 - i * 7))
        for i in range(1, size.tenants + 1)
    ]
    customers: list[tuple[object, ...]] = []
    for i in range(1, size.customers + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        tenant = rng.randint(1, size.tenants)
        domain = rng.choice(["example.com", "example.org", "mail.test", "corp.example"])
        phone = f"+1-555-{rng.randint(100, 999):03d}-{rng.randint(0, 9999):04d}"
        national_id = f"{rng.randint(100, 899):03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"
        created = EPOCH + timedelta(minutes=rng.randint(0, 525_600))
        customers.append((i, tenant, f"{first} {last}", _email(first, last, i, domain), phone,
                          national_id, rng.choice(COUNTRIES), created))
    rows["customers"] = customers
    products: list[tuple[object, ...]] = []
    for i in range(1, size.products + 1):
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(PRODUCT_WORDS)}"
        price = f"{rng.randint(199, 49_999) / 100:.2f}"
        color = rng.choice(["red", "blue", "green", "black"])
        attrs = f'{{"color": "{color}", "weight_g": {rng.randint(50, 5000)}}}'
        products.append((i, f"SKU-{i:05d}", name, rng.choice(CATEGORIES), price, attrs))
    rows["products"] = products
    tickets: list[tuple[object, ...]] = []
    for i in range(1, size.tickets + 1):
        cust = rng.randint(1, size.customers)
        ticket_tenant = customers[cust - 1][1]
        subject = rng.choice(TICKET_SUBJECTS)
        body = (f"Hello, this is {customers[cust - 1][2]}. {subject}. My card ending "
                f"{rng.randint(1000, 9999)} was charged twice. Call me at {customers[cust - 1][4]}.")
        opened = EPOCH + timedelta(minutes=rng.randint(0, 600_000))
        closed = opened + timedelta(hours=rng.randint(1, 200)) if rng.random() < 0.7 else None
        tickets.append((i, ticket_tenant, cust, subject, body, "closed" if closed else "open",
                        rng.choice(["low", "normal", "high", "urgent"]), opened, closed))
    rows["support_tickets"] = tickets
    rows["secrets"] = [
        (i, (i - 1) % size.tenants + 1, SERVICES[(i - 1) % len(SERVICES)],
         f"sk_live_{rng.getrandbits(128):032x}", EPOCH + timedelta(days=i))
        for i in range(1, size.tenants * 3 + 1)
    ]
    employees: list[tuple[object, ...]] = []
    salaries: list[tuple[object, ...]] = []
    for i in range(1, size.employees + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        hired = (EPOCH - timedelta(days=rng.randint(30, 3000))).date()
        employees.append((i, f"{first} {last}", _email(first, last, i, "pgwarden-demo.example"),
                          rng.choice(DEPARTMENTS), rng.choice(TITLES), hired))
        base = rng.randint(45_000, 180_000)
        salaries.append((i, f"{base:.2f}", "USD", hired))
        salaries.append((i, f"{base * 1.05:.2f}", "USD", hired + timedelta(days=365)))
    rows["hr.employees"] = employees
    rows["hr.salaries"] = salaries
    return rows


def _fact_sql(size: Size, seed: int) -> list[str]:
    """Orders, items and payments generated in Postgres, deterministic from (seed, row number)."""
    # h(k, i): a deterministic pseudo-random non-negative integer from a key and a row number.
    h = "abs(hashtextextended({key} || ':' || ({i})::text, " + str(seed) + "))"

    def rnd(key: str, i: str, modulo: int) -> str:
        return f"({h.format(key=repr(key), i=i)} % {modulo})"

    return [
        f"""
        INSERT INTO public.orders (id, tenant_id, customer_id, status, ordered_at, total)
        SELECT g, c.tenant_id, c.id,
               (ARRAY['placed','paid','shipped','delivered','cancelled','refunded'])[1 + {rnd('st', 'g', 6)}],
               timestamptz '2024-01-01 00:00:00+00' + make_interval(mins => {rnd('t', 'g', 1_051_200)}::int),
               0
        FROM generate_series(1, {size.orders}) AS g
        JOIN public.customers c ON c.id = 1 + {rnd('c', 'g', size.customers)}
        """,
        f"""
        INSERT INTO public.order_items (id, order_id, product_id, quantity, unit_price)
        SELECT o.id * 4 + k, o.id, p.id, 1 + {rnd('q', 'o.id * 4 + k', 5)}, p.price
        FROM public.orders o
        CROSS JOIN LATERAL generate_series(1, 1 + {rnd('n', 'o.id', 3)}) AS k
        JOIN public.products p ON p.id = 1 + {rnd('p', 'o.id * 4 + k', size.products)}
        """,
        """
        UPDATE public.orders o SET total = s.total
        FROM (SELECT order_id, sum(quantity * unit_price) AS total
              FROM public.order_items GROUP BY order_id) s
        WHERE s.order_id = o.id
        """,
        f"""
        INSERT INTO public.payments
               (id, order_id, tenant_id, card_brand, card_number, amount, paid_at, status)
        SELECT o.id, o.id, o.tenant_id,
               (ARRAY['visa','mastercard','amex'])[1 + {rnd('b', 'o.id', 3)}],
               '4' || lpad(({rnd('pan', 'o.id', 1_000_000_000_000_000)})::text, 15, '0'),
               o.total, o.ordered_at + interval '5 minutes',
               CASE WHEN o.status IN ('cancelled') THEN 'voided'
                    WHEN o.status = 'refunded' THEN 'refunded' ELSE 'captured' END
        FROM public.orders o WHERE o.status <> 'placed'
        """,
    ]


COPY_TARGETS = {
    "tenants": "public.tenants (id, name, plan, created_at)",
    "customers": "public.customers (id, tenant_id, name, email, phone, national_id, country, created_at)",
    "products": "public.products (id, sku, name, category, price, attributes)",
    "support_tickets": ("public.support_tickets (id, tenant_id, customer_id, subject, body, status, "
                        "priority, opened_at, closed_at)"),
    "secrets": "public.secrets (id, tenant_id, service, api_key, created_at)",
    "hr.employees": "hr.employees (id, name, email, department, title, hired_at)",
    "hr.salaries": "hr.salaries (employee_id, salary, currency, effective_from)",
}


def seed_database(dsn: str, *, size: str = "small", seed: int = 42) -> None:
    """Create the demo schema in an empty database and fill it."""
    if size not in SIZES:
        raise ValueError(f"unknown demo size {size!r}; choose one of {', '.join(SIZES)}")
    spec = SIZES[size]
    rows = _dimension_rows(spec, random.Random(seed))
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(SCHEMA_SQL)
        for key, target in COPY_TARGETS.items():
            with cur.copy(f"COPY {target} FROM STDIN") as copy:
                for row in rows[key]:
                    copy.write_row(row)
        for statement in _fact_sql(spec, seed):
            cur.execute(statement)
        cur.execute(READER_SQL)
        cur.execute("CREATE TABLE public._pgwarden_demo (size text NOT NULL, seed integer NOT NULL)")
        cur.execute("INSERT INTO public._pgwarden_demo VALUES (%s, %s)", (size, seed))
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")


def is_seeded(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT to_regclass('public._pgwarden_demo') IS NOT NULL").fetchone()
        return bool(row and row[0])


def seed_if_empty(dsn: str, *, size: str = "small", seed: int = 42) -> bool:
    """Seed the demo database unless it already is; return True when it seeded."""
    if is_seeded(dsn):
        return False
    seed_database(dsn, size=size, seed=seed)
    return True
