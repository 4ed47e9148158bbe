"""The attack corpus: one row per adversarial request, grouped by class.

Every case is sent end to end (MCP client → `pgwarden proxy` → `pgwarden server` → PostgreSQL)
as the principal it names, under that principal's example policy. What a case expects:

- `DENY`: pgwarden itself refuses (an `isError` result starting "pgwarden denied this call").
- `REFUSED`: any refusal: pgwarden's, the upstream's (a Postgres error, a statement timeout),
  or a JSON-RPC error. Used where an upstream error is an acceptable outcome.
- `ALLOW`: the call must succeed (the attack is defused by rewriting, not refused).
- `ANY`: either; only the data checks apply.

Whatever the expectation, the reply must hold no secret of that principal (see
`security_harness.read_secrets`), must come back within the hang limit, and, when the call
succeeded: its rows must equal `oracle` (SQL run with the owner's DSN: what the principal is
entitled to see), ids in `own_ids` columns must belong to the principal's tenant, and there
must be at most `max_rows` rows. `absent` strings must not appear anywhere in the reply.

Placeholders in SQL and arguments: `{db}` (the database name), `{canary}` (a file holding a
canary secret, readable by the Postgres server).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DENY, REFUSED, ALLOW, ANY = "deny", "refused", "allow", "any"


@dataclass(frozen=True)
class Case:
    cls: str
    name: str
    principal: str
    sql: str | None = None
    expect: str = DENY
    tool: str = "query"
    arguments: dict[str, Any] | None = None  # instead of {"sql": sql}
    method: str = "tools/call"  # or resources/read (arguments: {"uri"}), prompts/get (name + arguments)
    oracle: str | None = None
    own_ids: tuple[tuple[str, str], ...] = ()  # (result column, table) pairs
    max_rows: int | None = None
    absent: tuple[str, ...] = ()
    xfail: str | None = None
    marks: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.cls}:{self.principal}:{self.name}"


CASES: list[Case] = []


def add(cls: str, principal: str, expect: str, *items: tuple[str, str], **extra: Any) -> None:
    """Add one case per (name, sql) item, all of the same class, principal and expectation."""
    for name, sql in items:
        CASES.append(Case(cls, name, principal, sql, expect, **extra))


def one(cls: str, principal: str, name: str, sql: str | None, expect: str = DENY, **extra: Any) -> None:
    CASES.append(Case(cls, name, principal, sql, expect, **extra))


# -- stacked statements ---------------------------------------------------------------------------
add("stacked", "analyst", DENY,
    ("select-then-delete", "SELECT 1; DELETE FROM orders"),
    ("select-then-secrets", "SELECT 1; SELECT api_key FROM secrets"),
    ("commit-insert (server-postgres bypass)", "COMMIT; INSERT INTO tenants VALUES (99, 'x', 'free', now())"),
    ("rollback-then-update", "ROLLBACK; UPDATE orders SET total = 0"),
    ("three-statements", "SELECT 1; SELECT 2; SELECT api_key FROM secrets"),
    ("newline-separated", "SELECT count(*) FROM orders\n;\nDROP TABLE orders"),
    ("semicolon-in-comment-then-real", "SELECT 1 /* ; */ ; DELETE FROM payments"),
    ("empty-statements-between", "SELECT 1;;; SELECT api_key FROM secrets"),
    ("after-string-literal", "SELECT 'a;b'; SELECT api_key FROM secrets"),
    ("after-dollar-quote", "SELECT $$;$$; DELETE FROM orders"),
    ("stacked-set", "SELECT 1; SET ROLE postgres"),
    ("begin-read-write", "BEGIN READ WRITE; DELETE FROM orders; COMMIT"),
)
add("stacked", "support", DENY,
    ("filtered-then-unfiltered", "SELECT count(*) FROM orders; SELECT count(*) FROM public.orders"),
    ("escaped-semicolon", "SELECT 1 \\; SELECT email FROM customers"),
)
add("stacked", "default", DENY,
    ("select-then-copy", "SELECT 1; COPY orders TO STDOUT"),
    ("select-then-truncate", "SELECT id FROM products LIMIT 1; TRUNCATE order_items"),
)

# -- transaction control and SET escapes ----------------------------------------------------------
add("transaction_set", "analyst", DENY,
    ("begin", "BEGIN"),
    ("commit", "COMMIT"),
    ("rollback", "ROLLBACK"),
    ("start-transaction-read-write", "START TRANSACTION READ WRITE"),
    ("set-transaction-read-write", "SET TRANSACTION READ WRITE"),
    ("set-session-characteristics", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"),
    ("set-default-read-only-off", "SET default_transaction_read_only = off"),
    ("set-role", "SET ROLE postgres"),
    ("set-session-authorization", "SET SESSION AUTHORIZATION postgres"),
    ("reset-all", "RESET ALL"),
    ("set-search-path", "SET search_path = hr, public"),
    ("set-local-timeout", "SET LOCAL statement_timeout = 0"),
    ("savepoint", "SAVEPOINT s1"),
    ("release-savepoint", "RELEASE SAVEPOINT s1"),
    ("discard-all", "DISCARD ALL"),
    ("set-config-search-path", "SELECT set_config('search_path', 'hr', false)"),
    ("set-config-read-only", "SELECT set_config('default_transaction_read_only', 'off', true)"),
    ("current-setting", "SELECT current_setting('data_directory')"),
    ("show-all", "SHOW ALL"),
    ("prepare", "PREPARE p AS SELECT api_key FROM secrets"),
    ("execute", "EXECUTE p"),
    ("deallocate", "DEALLOCATE ALL"),
    ("do-block", "DO $$ BEGIN DELETE FROM orders; END $$"),
    ("listen", "LISTEN pgwarden"),
    ("notify", "NOTIFY pgwarden, 'x'"),
    ("set-config-in-subquery",
     "SELECT count(*) FROM orders WHERE (SELECT set_config('role', 'postgres', true)) IS NOT NULL", ),
    ("declare-cursor", "DECLARE c CURSOR FOR SELECT api_key FROM secrets"),
    ("fetch", "FETCH ALL FROM c"),
)

# -- writes, writable CTEs ------------------------------------------------------------------------
add("writes", "analyst", DENY,
    ("insert", "INSERT INTO tenants VALUES (99, 'Evil', 'free', now())"),
    ("update", "UPDATE orders SET total = 0"),
    ("delete", "DELETE FROM orders WHERE id = 1"),
    ("truncate", "TRUNCATE payments"),
    ("drop", "DROP TABLE order_items"),
    ("alter", "ALTER TABLE orders ADD COLUMN pwn text"),
    ("create-table-as", "CREATE TABLE loot AS SELECT * FROM customers"),
    ("select-into", "SELECT * INTO loot FROM orders"),
    ("cte-delete", "WITH d AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM d"),
    ("cte-update", "WITH u AS (UPDATE products SET price = 0 RETURNING id) SELECT count(*) FROM u"),
    ("cte-insert",
     "WITH i AS (INSERT INTO tenants VALUES (98, 'x', 'free', now()) RETURNING id) SELECT * FROM i", ),
    ("nested-cte-delete", "WITH a AS (SELECT 1), b AS (DELETE FROM payments RETURNING 1) SELECT * FROM a"),
    ("cte-named-like-table-delete",
     "WITH orders AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM orders", ),
    ("merge", "MERGE INTO products p USING products q ON p.id = q.id WHEN MATCHED THEN UPDATE SET price = 0"),
    ("copy-to-stdout", "COPY orders TO STDOUT"),
    ("copy-query-to-file", "COPY (SELECT api_key FROM secrets) TO 'pgwarden-loot.txt'"),
    ("copy-from-program", "COPY tenants FROM PROGRAM 'id'"),
    ("grant", "GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC"),
    ("create-function", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
    ("vacuum", "VACUUM orders"),
    ("call", "CALL do_something()"),
    ("nextval", "SELECT nextval('orders_id_seq')"),
    ("pg-terminate-backend", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"),
    ("pg-advisory-lock", "SELECT pg_advisory_lock(42)"),
    ("txid-current", "SELECT txid_current()"),
    ("pg-reload-conf", "SELECT pg_reload_conf()"),
    ("explain-analyze-delete", "EXPLAIN ANALYZE DELETE FROM orders"),
    ("comment-on", "COMMENT ON TABLE orders IS 'pwned'"),
)
add("writes", "dba", DENY,
    ("breakglass-cannot-write", "DELETE FROM hr.salaries"),
    ("breakglass-cte-update",
     "WITH u AS (UPDATE hr.salaries SET salary = 1 RETURNING 1) SELECT count(*) FROM u", ),
    ("breakglass-alter-role", "ALTER ROLE pgwarden_reader SUPERUSER"),
)

# -- locking --------------------------------------------------------------------------------------
add("locking", "analyst", DENY,
    ("for-update", "SELECT id FROM orders FOR UPDATE"),
    ("for-share", "SELECT id FROM orders LIMIT 1 FOR SHARE"),
    ("for-no-key-update", "SELECT id FROM orders FOR NO KEY UPDATE NOWAIT"),
    ("for-key-share-skip-locked", "SELECT id FROM orders FOR KEY SHARE SKIP LOCKED"),
    ("in-subquery", "SELECT count(*) FROM (SELECT id FROM orders FOR UPDATE) s"),
    ("in-cte", "WITH s AS (SELECT id FROM payments FOR UPDATE) SELECT count(*) FROM s"),
    ("for-update-of", "SELECT o.id FROM orders o JOIN products p ON true LIMIT 1 FOR UPDATE OF o"),
    ("lock-table", "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"),
)

# -- file, network and large-object functions -----------------------------------------------------
add("file_network_lo", "analyst", DENY,
    ("pg-read-file-canary", "SELECT pg_read_file('{canary}')"),
    ("pg-read-file-qualified", "SELECT pg_catalog.pg_read_file('{canary}')"),
    ("pg-read-file-quoted", "SELECT \"pg_read_file\"('{canary}')"),
    ("pg-read-file-upper", "SELECT PG_READ_FILE('{canary}')"),
    ("pg-read-file-in-where", "SELECT count(*) FROM orders WHERE pg_read_file('{canary}') IS NOT NULL"),
    ("pg-read-file-in-from", "SELECT * FROM pg_read_file('{canary}') AS f(x)"),
    ("pg-read-binary-file", "SELECT encode(pg_read_binary_file('{canary}'), 'escape')"),
    ("pg-read-file-range", "SELECT pg_read_file('{canary}', 0, 100, true)"),
    ("pg-ls-dir", "SELECT pg_ls_dir('.')"),
    ("pg-stat-file", "SELECT pg_stat_file('{canary}')"),
    ("pg-ls-logdir", "SELECT * FROM pg_ls_logdir()"),
    ("pg-current-logfile", "SELECT pg_current_logfile()"),
    ("lo-import", "SELECT lo_import('{canary}')"),
    ("lo-export", "SELECT lo_export(1, 'pgwarden-lo.txt')"),
    ("lo-get", "SELECT lo_get(1)"),
    ("lo-from-bytea", "SELECT lo_from_bytea(0, 'x')"),
    ("lo-open", "SELECT lo_open(1, 262144)"),
    ("dblink", "SELECT * FROM dblink('dbname=postgres', 'SELECT api_key FROM secrets') AS t(k text)"),
    ("dblink-exec", "SELECT dblink_exec('dbname=postgres', 'DELETE FROM orders')"),
    ("inet-server-addr", "SELECT inet_server_addr()"),
    ("pg-file-write", "SELECT pg_file_write('pgwarden-x', 'x', false)"),
)
add("file_network_lo", "dba", DENY,
    ("breakglass-pg-read-file", "SELECT pg_read_file('{canary}')"),
    ("breakglass-lo-import", "SELECT lo_import('{canary}')"),
    ("breakglass-pg-ls-dir", "SELECT pg_ls_dir('.')"),
)

# -- SQL hidden in strings ------------------------------------------------------------------------
add("sql_in_string", "analyst", DENY,
    ("query-to-xml", "SELECT query_to_xml('SELECT api_key FROM secrets', true, false, '')"),
    ("query-to-xml-upper", "SELECT QUERY_TO_XML('select api_key from public.secrets', TRUE, FALSE, '')"),
    ("query-to-xml-and-schema",
     "SELECT query_to_xml_and_xmlschema('SELECT * FROM hr.salaries', true, false, '')", ),
    ("table-to-xml", "SELECT table_to_xml('public.secrets', true, false, '')"),
    ("table-to-xml-regclass", "SELECT table_to_xml('secrets'::regclass, true, false, '')"),
    ("schema-to-xml", "SELECT schema_to_xml('hr', true, false, '')"),
    ("database-to-xml", "SELECT database_to_xml(true, false, '')"),
    ("cursor-to-xml", "SELECT cursor_to_xml('c', 10, true, false, '')"),
    ("ts-stat", "SELECT * FROM ts_stat('SELECT to_tsvector(api_key) FROM secrets')"),
    ("xpath-of-query", "SELECT xpath('/row', query_to_xml('SELECT 1', true, false, ''))"),
    ("query-to-xml-in-subquery",
     "SELECT count(*) FROM orders WHERE EXISTS (SELECT query_to_xml('SELECT api_key FROM secrets', "
     "true, false, ''))", ),
    ("query-to-xml-in-cte",
     "WITH x AS (SELECT query_to_xml('SELECT national_id FROM customers', true, false, '') AS v) "
     "SELECT * FROM x", ),
    ("xmlelement", "SELECT xmlelement(name a, 'x')"),
    ("xmltable", "SELECT * FROM XMLTABLE('/r' PASSING '<r/>' COLUMNS a text PATH '.')"),
)

# -- catalog and pg_* relations -------------------------------------------------------------------
add("catalog", "analyst", DENY,
    ("pg-authid", "SELECT rolname, rolpassword FROM pg_catalog.pg_authid"),
    ("pg-shadow", "SELECT * FROM pg_catalog.pg_shadow"),
    ("pg-roles", "SELECT rolname FROM pg_catalog.pg_roles"),
    ("pg-settings", "SELECT name, setting FROM pg_catalog.pg_settings"),
    ("pg-stat-activity", "SELECT query FROM pg_catalog.pg_stat_activity"),
    ("pg-stats", "SELECT histogram_bounds::text FROM pg_catalog.pg_stats WHERE tablename = 'secrets'"),
    ("pg-statistic", "SELECT stavalues1::text FROM pg_catalog.pg_statistic"),
    ("pg-class", "SELECT relname FROM pg_catalog.pg_class"),
    ("pg-proc-source", "SELECT prosrc FROM pg_catalog.pg_proc"),
    ("pg-largeobject", "SELECT data FROM pg_catalog.pg_largeobject"),
    ("pg-hba-file-rules", "SELECT * FROM pg_catalog.pg_hba_file_rules"),
    ("pg-file-settings", "SELECT * FROM pg_catalog.pg_file_settings"),
    ("information-schema-columns", "SELECT table_name, column_name FROM information_schema.columns"),
    ("information-schema-tables", "SELECT table_name FROM information_schema.tables"),
    ("pg-toast", "SELECT * FROM pg_toast.pg_toast_2618"),
    ("regclass-cast", "SELECT 'public.secrets'::regclass::oid"),
    ("regproc-cast", "SELECT 'pg_read_file'::regproc"),
    ("regrole-cast", "SELECT 'postgres'::regrole"),
    ("to-regclass", "SELECT to_regclass('hr.salaries')"),
    ("pg-get-viewdef", "SELECT pg_get_viewdef('pg_catalog.pg_roles'::regclass)"),
    ("has-table-privilege", "SELECT has_table_privilege('hr.salaries', 'SELECT')"),
    ("obj-description", "SELECT obj_description(1259)"),
    ("version", "SELECT version()"),
    ("current-user", "SELECT current_user"),
    ("session-user", "SELECT session_user"),
    ("current-database", "SELECT current_database()"),
    ("catalog-in-join", "SELECT count(*) FROM orders o JOIN pg_catalog.pg_class c ON c.oid = o.id"),
    ("catalog-in-scalar-subquery",
     "SELECT (SELECT rolpassword FROM pg_catalog.pg_authid LIMIT 1) FROM orders LIMIT 1", ),
)
add("catalog", "analyst", REFUSED,
    ("unqualified-pg-stat-activity", "SELECT query FROM pg_stat_activity"),
    ("unqualified-pg-authid", "SELECT rolpassword FROM pg_authid"),
    ("unqualified-pg-stats", "SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'secrets'"),
)
add("catalog", "default", DENY,
    ("information-schema-views", "SELECT view_definition FROM information_schema.views"),
    ("pg-namespace", "SELECT nspname FROM pg_catalog.pg_namespace"),
)
add("catalog", "dba", DENY,
    ("breakglass-pg-authid", "SELECT rolname, rolpassword FROM pg_catalog.pg_authid"),
    ("breakglass-pg-shadow", "SELECT passwd FROM pg_catalog.pg_shadow"),
    ("breakglass-pg-user-mappings", "SELECT umoptions FROM pg_catalog.pg_user_mappings"),
)
# Planner statistics hold sampled values of every column: the break-glass policy's "API keys
# stay hashed" must hold there too.
add("catalog", "dba", DENY,
    ("breakglass-pg-stats-histogram-of-api-keys",
     "SELECT histogram_bounds::text FROM pg_catalog.pg_stats "
     "WHERE tablename = 'secrets' AND attname = 'api_key'"),
    ("breakglass-pg-statistic-values",
     "SELECT stavalues1::text, stavalues2::text FROM pg_catalog.pg_statistic WHERE stakind1 > 0"),
    ("breakglass-pg-stats-most-common",
     "SELECT most_common_vals::text, histogram_bounds::text FROM pg_catalog.pg_stats"),
    ("breakglass-pg-stats-ext", "SELECT * FROM pg_catalog.pg_stats_ext"),
)
one("catalog", "dba", "breakglass-pg-class-is-fine",
    "SELECT relname FROM pg_catalog.pg_class ORDER BY relname", ALLOW)

# -- search_path and temp-schema shadowing --------------------------------------------------------
add("shadowing", "analyst", DENY,
    ("pg-temp-orders", "SELECT * FROM pg_temp.orders"),
    ("quoted-pg-temp", "SELECT count(*) FROM \"pg_temp\".orders"),
    ("create-temp-table", "CREATE TEMP TABLE orders AS SELECT * FROM hr.salaries"),
    ("create-temp-view", "CREATE TEMP VIEW customers AS SELECT * FROM secrets"),
    ("set-search-path-to-hr", "SET search_path TO hr"),
    ("set-config-search-path",
     "SELECT set_config('search_path', 'pg_temp, hr', false), count(*) FROM orders", ),
    ("hr-qualified", "SELECT salary FROM hr.salaries"),
    ("pg-catalog-qualified-user-table", "SELECT count(*) FROM pg_catalog.orders"),
    ("other-database-qualified", "SELECT count(*) FROM postgres.public.orders"),
    ("cte-shadows-table", "WITH orders AS (SELECT api_key AS id FROM secrets) SELECT id FROM orders"),
    ("cte-shadows-with-hr", "WITH customers AS (SELECT * FROM hr.employees) SELECT count(*) FROM customers"),
)
add("shadowing", "analyst", REFUSED,
    ("unqualified-salaries", "SELECT avg(salary) FROM salaries"),
    ("unqualified-employees", "SELECT count(*) FROM employees"),
    ("dotted-identifier", "SELECT count(*) FROM \"hr.salaries\""),
)
# The CTE named like the masked table must not bypass the mask: masked or refused, never raw.
one("shadowing", "analyst", "cte-over-masked-table", "WITH customers AS (SELECT * FROM public.customers) "
    "SELECT national_id, count(*) FROM customers GROUP BY national_id", ANY)
one("shadowing", "tenant", "recursive-cte-named-like-table",
    "WITH RECURSIVE orders AS (SELECT * FROM public.orders UNION ALL SELECT * FROM orders WHERE false) "
    "SELECT count(*) FROM orders", ANY, oracle="SELECT count(*) FROM orders WHERE tenant_id = 1")

# -- identifier quoting, Unicode, comments, dollar quotes -----------------------------------------
add("quoting", "analyst", DENY,
    ("quoted-secrets", "SELECT api_key FROM \"secrets\""),
    ("quoted-schema-and-table", "SELECT api_key FROM \"public\".\"secrets\""),
    ("upper-case", "SELECT API_KEY FROM PUBLIC.SECRETS"),
    ("comments-as-spaces", "SELECT/**/api_key/**/FROM/**/secrets"),
    ("line-comment-tail", "SELECT api_key FROM secrets -- harmless"),
    ("nested-comment", "SELECT 1 /* outer /* inner */ still comment */, api_key FROM secrets"),
    ("unicode-escape-identifier", "SELECT * FROM U&\"\\0073ecrets\""),
    ("unicode-escape-uescape", "SELECT * FROM U&\"!0073ecrets\" UESCAPE '!'"),
    ("unicode-escape-string", "SELECT U&'\\0041' FROM orders LIMIT 1"),
    ("dollar-quote-hides-stacked", "SELECT $$ $$; SELECT api_key FROM secrets; SELECT $$ $$"),
    ("tagged-dollar-quote", "SELECT $a$ $b$ $a$, api_key FROM secrets"),
    ("escape-string-quote", "SELECT E'\\''; SELECT api_key FROM secrets; SELECT E'\\''"),
    ("standard-conforming-backslash", "SELECT '\\'; SELECT api_key FROM secrets; --'"),
    ("whitespace-variants", "SELECT\tapi_key\fFROM\vsecrets"),
    ("zero-width-space", "SELECT api_key FROM secr\u200bets"),
    ("cyrillic-homoglyph", "SELECT api_key FROM \"\u0455ecrets\""),
    ("fullwidth-semicolon", "SELECT 1\uff1b SELECT api_key FROM secrets"),
    ("nul-byte", "SELECT 1\x00; SELECT api_key FROM secrets"),
    ("quoted-function-name", "SELECT \"query_to_xml\"('SELECT api_key FROM secrets', true, false, '')"),
    ("schema-qualified-function-in-public", "SELECT public.pg_read_file('{canary}')"),
    ("operator-schema-trick", "SELECT 1 OPERATOR(pg_catalog.+) 1 FROM secrets"),
    ("custom-operator-schema", "SELECT count(*) FROM orders WHERE 1 OPERATOR(public.=) 1"),
)
one("quoting", "analyst", "alias-named-secrets", "SELECT api_key FROM orders AS secrets", REFUSED)
# Postgres nests comments: everything before the last `*/` is a comment, what runs is SELECT 1.
one("quoting", "analyst", "nested-comment-hides-statement",
    "/* /* */ SELECT api_key FROM secrets; /* */ */ SELECT 1", ANY, oracle="SELECT 1")
one("quoting", "analyst", "quoted-column-of-masked-table",
    "SELECT \"national_id\", count(*) FROM \"customers\" "
    "GROUP BY \"national_id\"", ANY)
one("quoting", "analyst", "mixed-case-masked-column", "SELECT NATIONAL_ID, Email, count(*) FROM CUSTOMERS "
    "GROUP BY NATIONAL_ID, Email", ANY)
one("quoting", "tenant", "dollar-quoted-tenant-literal",
    "SELECT count(*) FROM orders WHERE tenant_id::text <> $$1$$",
    ANY, oracle="SELECT 0")

# -- masked-value inference (analyst: customers in aggregate only, PII masked) -------------------
MASKED = "analyst"
add("masked_inference", MASKED, ANY,
    ("group-by-national-id", "SELECT national_id, count(*) FROM customers GROUP BY national_id"),
    ("group-by-phone", "SELECT phone, count(*) FROM customers GROUP BY phone"),
    ("group-by-email", "SELECT email, count(*) FROM customers GROUP BY email"),
    ("min-max-masked", "SELECT min(national_id), max(national_id), min(email), max(phone) FROM customers"),
    ("string-agg-email", "SELECT string_agg(email, ',') FROM customers"),
    ("string-agg-phone-ordered", "SELECT string_agg(phone, ',' ORDER BY phone) FROM customers"),
    ("array-agg-national-id", "SELECT array_agg(national_id)::text FROM customers"),
    ("json-agg-whole-row", "SELECT json_agg(c) FROM customers c"),
    ("jsonb-agg-row-to-json", "SELECT jsonb_agg(row_to_json(c)) FROM customers c"),
    ("whole-row-text", "SELECT max(c::text) FROM customers c"),
    ("whole-row-to-jsonb-field",
     "SELECT max(to_jsonb(c) ->> 'national_id'), max(to_jsonb(c) ->> 'email') FROM customers c", ),
    ("row-constructor", "SELECT max(ROW(c.email, c.national_id)::text) FROM customers c"),
    ("cast-to-varchar", "SELECT max(CAST(email AS varchar)), max(national_id::varchar(20)) FROM customers"),
    ("cast-to-bytea", "SELECT max(encode(convert_to(email, 'UTF8'), 'hex')) FROM customers"),
    ("md5-of-masked", "SELECT string_agg(md5(email), ',') FROM customers"),
    ("order-by-masked", "SELECT country, count(*) FROM customers GROUP BY country ORDER BY max(email)"),
    ("window-over-masked",
     "SELECT count(*), max(m) FROM (SELECT first_value(email) OVER (ORDER BY email) AS m FROM "
     "customers) s", ),
    ("lateral-masked",
     "SELECT count(*), max(x.e) FROM orders o, LATERAL (SELECT email AS e FROM customers c WHERE c.id "
     "= o.customer_id) x", ),
    ("cte-masked",
     "WITH c AS (SELECT email, national_id FROM customers) SELECT string_agg(email || national_id, "
     "',') FROM c", ),
    ("union-masked",
     "SELECT max(v) FROM (SELECT email AS v FROM customers UNION ALL SELECT national_id FROM "
     "customers) s", ),
    ("subquery-in-select", "SELECT (SELECT max(phone) FROM customers), count(*) FROM orders"),
    ("regexp-on-masked", "SELECT string_agg(regexp_replace(phone, '[^0-9]', '', 'g'), ',') FROM customers"),
    ("card-numbers-rows", "SELECT id, card_number FROM payments ORDER BY id LIMIT 100"),
    ("card-number-aggregate", "SELECT string_agg(card_number, ',') FROM payments"),
    ("card-number-group", "SELECT card_number, count(*) FROM payments GROUP BY card_number LIMIT 50"),
    ("card-number-whole-row", "SELECT row_to_json(p) FROM payments p ORDER BY id LIMIT 20"),
    ("card-number-substring", "SELECT substr(card_number, 1, 12) FROM payments ORDER BY id LIMIT 20"),
    ("card-number-join-customers",
     "SELECT max(p.card_number), max(c.email) FROM payments p JOIN orders o ON o.id = p.order_id JOIN "
     "customers c ON c.id = o.customer_id", ),
    ("card-number-lateral-unnest", "SELECT max(x) FROM payments p, LATERAL unnest(ARRAY[p.card_number]) x"),
)
# Predicates, joins and grouping see only masked values: their answers equal the masked oracle.
for _name, _sql, _oracle in (
    ("predicate-national-id-prefix", "SELECT count(*) FROM customers WHERE national_id LIKE '1%'",
     "SELECT 0"),
    ("predicate-national-id-not-null", "SELECT count(*) FROM customers WHERE national_id IS NOT NULL",
     "SELECT 0"),
    ("predicate-national-id-range", "SELECT count(*) FROM customers WHERE national_id > '500'",
     "SELECT 0"),
    ("predicate-length-national-id", "SELECT count(*) FROM customers WHERE length(national_id) = 11",
     "SELECT 0"),
    ("join-on-national-id",
     "SELECT count(*) FROM customers a JOIN customers b ON a.national_id = b.national_id",
     "SELECT 0"),
    ("exists-national-id",
     "SELECT count(*) FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id "
     "AND c.national_id LIKE '2%')",
     "SELECT 0"),
    ("having-national-id",
     "SELECT count(*) FROM (SELECT country FROM customers GROUP BY country HAVING max(national_id) IS "
     "NOT NULL) s",
     "SELECT 0"),
    ("case-on-national-id", "SELECT sum(CASE WHEN national_id LIKE '3%' THEN 1 ELSE 0 END) FROM customers",
     "SELECT 0"),
    ("in-subquery-national-id",
     "SELECT count(*) FROM customers WHERE national_id IN (SELECT national_id FROM customers)",
     "SELECT 0"),
    ("coalesce-national-id", "SELECT count(*) FROM customers WHERE coalesce(national_id, 'none') <> 'none'",
     "SELECT 0"),
    ("distinct-national-id", "SELECT count(DISTINCT national_id) FROM customers",
     "SELECT 0"),
    ("distinct-emails", "SELECT count(DISTINCT email) FROM customers",
     "SELECT count(DISTINCT split_part(email, '@', 2)) FROM customers"),
    ("email-local-part-predicate", "SELECT count(*) FROM customers WHERE email LIKE 'ada%'",
     "SELECT 0"),
    ("email-local-part-split", "SELECT count(*) FROM customers WHERE split_part(email, '@', 1) <> '***'",
     "SELECT 0"),
    ("phone-prefix-predicate", "SELECT count(*) FROM customers WHERE phone LIKE '+1-555-1%'",
     "SELECT 0"),
    ("card-prefix-predicate", "SELECT count(*) FROM payments WHERE card_number LIKE '40%'",
     "SELECT 0"),
    ("card-digit-predicate", "SELECT count(*) FROM payments WHERE substr(card_number, 2, 1) = '0'",
     "SELECT 0"),
    ("card-join-predicate",
     "SELECT count(*) FROM payments a JOIN payments b ON a.card_number = b.card_number AND a.id <> "
     "b.id AND left(a.card_number, 6) = left(b.card_number, 6)",
     "SELECT count(*) FROM payments a JOIN payments b ON right(a.card_number, 4) = right(b.card_number, 4) "
     "AND a.id <> b.id"),
):
    one("masked_inference", MASKED, _name, _sql, ANY, oracle=_oracle)
add("masked_inference", "analyst", DENY,
    ("listing-customers-row-by-row", "SELECT id, name, email FROM customers"),
    ("whole-row-listing", "SELECT c FROM customers c"),
)
add("masked_inference", "tenant", ANY,
    ("tenant-email-rows", "SELECT id, email, national_id FROM customers ORDER BY id"),
    ("tenant-whole-row-json", "SELECT row_to_json(c)::text FROM customers c ORDER BY id"),
    ("tenant-email-predicate", "SELECT count(*) FROM customers WHERE email NOT LIKE '***@%'"),
    ("tenant-national-id-predicate", "SELECT count(*) FROM customers WHERE national_id IS NOT NULL"),
)
add("masked_inference", "dba", ANY,
    ("breakglass-api-keys-hashed", "SELECT service, api_key FROM secrets"),
    ("breakglass-api-key-prefix", "SELECT count(*) FROM secrets WHERE api_key LIKE 'sk_live_%'"),
    ("breakglass-api-key-whole-row", "SELECT row_to_json(s)::text FROM secrets s"),
    ("breakglass-api-key-agg", "SELECT string_agg(api_key, ',') FROM secrets"),
)
add("masked_inference", "analyst", ANY,
    ("column-alias-list", "SELECT count(*), max(e), max(nid) FROM customers AS c(i, t, n, e, p, nid)"),
    ("three-part-column-reference", "SELECT max(public.customers.national_id) FROM public.customers"),
    ("tablesample", "SELECT count(*), max(email) FROM customers TABLESAMPLE SYSTEM (100)"),
)
# The analyst policy means "customers in aggregate only", but GROUP BY the primary key is an
# aggregate: the name mask (a pseudonym) is what must hold, checked on the data.
one("masked_inference", "analyst", "group-by-primary-key-lists-customers",
    "SELECT id, name, country, count(*) FROM customers GROUP BY id, name, country", ANY)

# -- row-filter evasion (support and tenant agent act for tenant 1) -------------------------------
T1_ORDERS = "SELECT count(*) FROM orders WHERE tenant_id = 1"
for who in ("support", "tenant"):
    add("row_filter", who, ALLOW,
        ("plain-count", "SELECT count(*) FROM orders"),
        ("or-true", "SELECT count(*) FROM orders WHERE tenant_id = 2 OR true"),
        ("schema-qualified", "SELECT count(*) FROM public.orders"),
        ("quoted-names", "SELECT count(*) FROM \"public\".\"orders\""),
        ("only-keyword", "SELECT count(*) FROM ONLY orders"),
        ("derived-table", "SELECT count(*) FROM (SELECT * FROM orders) s"),
        ("scalar-subquery", "SELECT (SELECT count(*) FROM orders)"),
        ("cte", "WITH o AS (SELECT * FROM orders) SELECT count(*) FROM o"),
        ("cte-named-like-table", "WITH orders AS (SELECT * FROM public.orders) SELECT count(*) FROM orders"),
        ("window-count", "SELECT max(n) FROM (SELECT count(*) OVER () AS n FROM orders) s"),
        ("alias-named-tenant-id", "SELECT count(*) FROM orders AS tenant_id"),
        ("right-join-tenants", "SELECT count(*) FROM tenants t RIGHT JOIN orders o ON o.tenant_id = t.id"),
        ("full-join-on-false", "SELECT count(o.id) FROM tenants t FULL JOIN orders o ON false"),
        ("union-all-of-halves", "SELECT count(*) FROM (SELECT id FROM orders WHERE id % 2 = 0 UNION ALL "
                                "SELECT id FROM orders WHERE id % 2 = 1) s"),
        ("table-statement", "SELECT count(*) FROM (TABLE orders) s"),
        ("recursive-cte", "WITH RECURSIVE r AS (SELECT id FROM orders UNION SELECT id FROM r WHERE false) "
                          "SELECT count(*) FROM r"),
        # A derived table is not a security barrier: a predicate that raises an error on other
        # tenants' rows would reveal them if Postgres evaluated it before the row filter.
        ("error-probe-division", "SELECT count(*) FROM orders WHERE 1 / (tenant_id - 2) > -5"),
        ("error-probe-case", "SELECT count(*) FROM orders "
                             "WHERE 1 / (CASE WHEN tenant_id = 2 AND total > 500 THEN 0 ELSE 1 END) = 1"),
        ("error-probe-cast", "SELECT count(*) FROM orders "
                             "WHERE (CASE WHEN tenant_id = 3 THEN 'x' ELSE '1' END)::int = 1"),
        ("error-probe-join", "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id "
                             "WHERE 1 / (c.tenant_id - 2) > -5"),
        ("inheritance-star", "SELECT count(*) FROM orders*"),
        oracle=T1_ORDERS)
    add("row_filter", who, ALLOW,
        ("other-tenant-predicate", "SELECT count(*) FROM orders WHERE tenant_id = 2"),
        ("not-own-tenant", "SELECT count(*) FROM orders WHERE tenant_id <> 1"),
        ("in-subquery-other-tenant",
         "SELECT count(*) FROM orders WHERE id IN (SELECT id FROM orders WHERE tenant_id = 3)", ),
        ("except-own",
         "SELECT count(*) FROM (SELECT id FROM orders EXCEPT SELECT id FROM orders WHERE tenant_id = "
         "1) s", ),
        ("lateral-other-tenants",
         "SELECT count(*) FROM tenants t, LATERAL (SELECT id FROM orders o WHERE o.tenant_id = t.id + "
         "1) x", ),
        ("payments-other-tenant", "SELECT count(*) FROM payments WHERE tenant_id IN (2, 3, 4, 5)"),
        ("tickets-other-tenant", "SELECT count(*) FROM support_tickets WHERE tenant_id > 1"),
        ("customers-other-tenant", "SELECT count(*) FROM customers WHERE tenant_id = 4"),
        oracle="SELECT 0")
    add("row_filter", who, ALLOW,
        ("left-join-customers", "SELECT o.id AS order_id, c.id AS customer_id, o.tenant_id FROM orders o "
                                "LEFT JOIN customers c ON c.id = o.customer_id ORDER BY o.id"),
        ("right-join-orders", "SELECT o.id AS order_id, o.tenant_id FROM customers c RIGHT JOIN orders o "
                              "ON o.customer_id = c.id ORDER BY o.id DESC"),
        ("full-join-payments", "SELECT p.id AS payment_id, o.id AS order_id, p.tenant_id FROM orders o "
                               "FULL JOIN payments p ON p.order_id = o.id ORDER BY 1"),
        ("union-with-other-tenant", "SELECT id AS order_id, tenant_id FROM orders UNION "
                                    "SELECT id, tenant_id FROM orders WHERE tenant_id = 2 ORDER BY 1"),
        ("intersect", "SELECT id AS customer_id, tenant_id FROM customers INTERSECT "
                      "SELECT id, tenant_id FROM customers WHERE tenant_id = 3"),
        ("tickets-of-customers",
         "SELECT s.id AS ticket_id, s.tenant_id, c.id AS customer_id FROM support_tickets s "
         "JOIN customers c ON c.id = s.customer_id ORDER BY s.id"),
        ("ticket-bodies", "SELECT id AS ticket_id, body FROM support_tickets ORDER BY id"),
        ("customer-emails", "SELECT id AS customer_id, email, phone FROM customers ORDER BY id"),
        ("tenant-names", "SELECT id AS tenant_id, name FROM tenants"),
        ("cross-join-tenants", "SELECT DISTINCT t.id AS tenant_id, t.name FROM tenants t CROSS JOIN orders"),
        ("payments-rows", "SELECT id AS payment_id, tenant_id, card_number FROM payments ORDER BY id"),
        own_ids=(("order_id", "orders"), ("customer_id", "customers"), ("payment_id", "payments"),
                 ("ticket_id", "support_tickets"), ("tenant_id", "tenant")))
add("row_filter", "tenant", DENY,
    ("order-items-not-granted", "SELECT count(*) FROM order_items"),
    ("order-items-join", "SELECT count(*) FROM orders o JOIN order_items i ON i.order_id = o.id"),
)
add("row_filter", "support", DENY,
    ("secrets-of-own-tenant", "SELECT api_key FROM secrets WHERE tenant_id = 1"),
    ("order-items-not-granted", "SELECT count(*) FROM order_items"),
)

# -- row-cap evasion ------------------------------------------------------------------------------
add("row_cap", "support", ANY,
    ("no-limit", "SELECT id FROM orders"),
    ("huge-limit", "SELECT id FROM orders LIMIT 100000"),
    ("limit-all", "SELECT id FROM orders LIMIT ALL"),
    ("limit-null", "SELECT id FROM orders LIMIT NULL"),
    ("offset-then-limit", "SELECT id FROM orders OFFSET 0 LIMIT 9999"),
    ("fetch-first", "SELECT id FROM orders FETCH FIRST 100000 ROWS ONLY"),
    ("fetch-with-ties", "SELECT id FROM orders ORDER BY tenant_id FETCH FIRST 1 ROWS WITH TIES"),
    ("limit-subquery", "SELECT id FROM orders LIMIT (SELECT 100000)"),
    ("limit-expression", "SELECT id FROM orders LIMIT 100 * 1000"),
    ("union-all-two-capped", "(SELECT id FROM orders LIMIT 200) UNION ALL (SELECT id FROM orders LIMIT 200)"),
    ("generate-series", "SELECT g FROM generate_series(1, 100000) g"),
    ("unnest-array", "SELECT unnest(ARRAY(SELECT id FROM orders))"),
    ("values-rows", "SELECT * FROM (VALUES (1), (2)) v(x), generate_series(1, 1000) g"),
    max_rows=200)
add("row_cap", "tenant", ANY,
    ("cross-join", "SELECT o.id FROM orders o CROSS JOIN tenants"),
    ("limit-cast", "SELECT id FROM orders LIMIT '100000'::int"),
    max_rows=500)
add("row_cap", "default", ANY,
    ("order-items", "SELECT * FROM order_items"),
    ("order-items-limit-all", "SELECT * FROM order_items LIMIT ALL"),
    ("generate-series", "SELECT * FROM generate_series(1, 50000)"),
    max_rows=1000)
one("row_cap", "support", "limit-parameter", "SELECT id FROM orders LIMIT $1", REFUSED)

# -- resource exhaustion: a deny or a timeout error, never a hang --------------------------------
add("resource", "analyst", REFUSED,
    ("huge-generate-series", "SELECT count(*) FROM generate_series(1, 10000000000)"),
    ("cartesian-orders", "SELECT count(*) FROM orders a, orders b, orders c"),
    ("cartesian-series",
     "SELECT count(*) FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b", ),
    ("infinite-recursion",
     "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", ),
    ("pg-sleep", "SELECT pg_sleep(3600)"),
    ("pg-sleep-for", "SELECT pg_sleep_for('1 hour')"),
    ("pg-sleep-until", "SELECT pg_sleep_until(now() + interval '1 hour')"),
    ("pg-sleep-in-where", "SELECT count(*) FROM orders WHERE pg_sleep(1) IS NOT NULL"),
    ("cpu-bound-md5", "SELECT sum(length(md5(g::text))) FROM generate_series(1, 1000000000) g"),
    ("deep-nesting", "SELECT " + "(" * 3000 + "1" + ")" * 3000),
    ("deep-subqueries", "SELECT " + "(SELECT " * 400 + "1" + ")" * 400),
    ("oversized-statement", "SELECT 1 " + "+ 1 " * 60000),
)
add("resource", "analyst", ANY,
    ("huge-repeat", "SELECT length(repeat('x', 2000000000))"),
    ("regex-backtracking",
     "SELECT count(*) FROM generate_series(1, 1000) g WHERE repeat('a', 40) || '!' ~ '^(a+)+$'", ),
    ("string-agg-large", "SELECT length(string_agg(repeat('x', 1000), '')) FROM generate_series(1, 10000)"),
)
add("resource", "tenant", REFUSED,
    ("cartesian-filtered", "SELECT count(*) FROM orders a, orders b, orders c, orders d"),
)

# -- MCP layer: tools, arguments ------------------------------------------------------------------
def mcp(name: str, principal: str, expect: str, tool: str, arguments: dict[str, Any] | None,
        **extra: Any) -> None:
    CASES.append(Case("mcp_layer", name, principal, None, expect, tool=tool, arguments=arguments, **extra))


mcp("unknown-tool-with-sql", "analyst", DENY, "execute_sql", {"sql": "SELECT api_key FROM secrets"})
mcp("unknown-tool-with-query", "analyst", DENY, "run", {"query": "SELECT api_key FROM secrets"})
mcp("unknown-tool-no-args", "analyst", REFUSED, "drop_database", {})
mcp("homoglyph-tool-name", "analyst", DENY, "qu\u0435ry", {"sql": "SELECT api_key FROM secrets"})
mcp("tool-name-trailing-space", "analyst", DENY, "query ", {"sql": "SELECT api_key FROM secrets"})
mcp("tool-name-upper", "analyst", DENY, "QUERY", {"sql": "SELECT api_key FROM secrets"})
mcp("sql-in-second-argument", "analyst", REFUSED, "query",
    {"sql": "SELECT 1", "query": "SELECT api_key FROM secrets"})
mcp("sql-in-upper-case-key", "analyst", DENY, "query", {"SQL": "SELECT api_key FROM secrets"})
mcp("list-of-queries", "analyst", DENY, "query", {"sql": ["SELECT 1", "SELECT api_key FROM secrets"]})
mcp("object-instead-of-string", "analyst", DENY, "query", {"sql": {"text": "SELECT api_key FROM secrets"}})
mcp("null-sql", "analyst", DENY, "query", {"sql": None})
mcp("missing-sql", "analyst", DENY, "query", {})
mcp("no-arguments", "analyst", DENY, "query", None)
mcp("number-sql", "analyst", DENY, "query", {"sql": 42})
mcp("oversized-sql", "analyst", DENY, "query", {"sql": "SELECT 1 -- " + "x" * 2_000_000})
mcp("oversized-extra-argument", "analyst", REFUSED, "query",
    {"sql": "SELECT count(*) FROM orders", "padding": "x" * 1_000_000})
mcp("max-rows-huge", "support", ANY, "query", {"sql": "SELECT id FROM orders", "max_rows": 100000},
    max_rows=200)
mcp("max-rows-negative", "support", REFUSED, "query", {"sql": "SELECT id FROM orders", "max_rows": -1})
mcp("explain-secrets", "analyst", DENY, "explain_query", {"sql": "SELECT api_key FROM secrets"})
mcp("explain-analyze-via-tool", "analyst", DENY, "explain_query", {"sql": "DELETE FROM orders"})
mcp("describe-secrets", "analyst", DENY, "describe_table", {"table": "public.secrets"})
mcp("describe-hr", "analyst", DENY, "describe_table", {"table": "hr.salaries"})
mcp("describe-upper-case", "analyst", DENY, "describe_table", {"table": "PUBLIC.SECRETS"})
mcp("describe-quoted", "analyst", DENY, "describe_table", {"table": "\"hr\".\"salaries\""})
mcp("describe-injection", "analyst", DENY, "describe_table", {"table": "orders; SELECT api_key FROM secrets"})
mcp("list-tables-hr", "analyst", DENY, "list_tables", {"schema": "hr"})
mcp("list-tables-public-hides-secrets", "analyst", ANY, "list_tables", {"schema": "public"},
    absent=('"name": "secrets"', '"name":"secrets"'))
mcp("list-tables-default-hides-others", "default", ANY, "list_tables", {},
    absent=('"name": "secrets"', '"name": "customers"', '"name": "salaries"'))


def resource(name: str, principal: str, uri: str, expect: str = REFUSED) -> None:
    CASES.append(Case("mcp_layer", name, principal, None, expect, method="resources/read",
                      arguments={"uri": uri}))


resource("resource-hr-salaries", "analyst", "postgres://{db}/hr/salaries/schema")
resource("resource-secrets", "analyst", "postgres://{db}/public/secrets/schema")
resource("resource-percent-encoded", "analyst", "postgres://{db}/public/%73ecrets/schema")
resource("resource-mixed-case", "analyst", "postgres://{db}/PUBLIC/Secrets/schema")
resource("resource-overview", "default", "postgres://{db}/schemas")
resource("resource-traversal", "analyst", "postgres://{db}/public/orders/../../hr/salaries/schema")
CASES.append(Case("mcp_layer", "prompt-on-hr-table", "analyst", None, REFUSED, method="prompts/get",
                  tool="summarize_table", arguments={"table": "hr.salaries"}))
CASES.append(Case("mcp_layer", "prompt-on-secrets", "support", None, REFUSED, method="prompts/get",
                  tool="data_quality_report", arguments={"table": "public.secrets"}))

# -- policy-engine errors fail closed -------------------------------------------------------------
add("policy_errors", "support_no_tenant", DENY,
    ("row-filter-without-tenant", "SELECT count(*) FROM orders"),
    ("row-filter-without-tenant-join", "SELECT count(*) FROM tenants t JOIN orders o ON o.tenant_id = t.id"),
    ("products-only-still-checked", "SELECT email FROM customers"),
)
add("policy_errors", "tenant_injection", REFUSED,
    ("tenant-claim-with-sql", "SELECT count(*) FROM orders"),
    ("tenant-claim-with-sql-customers", "SELECT id AS customer_id, email FROM customers"),
)
add("policy_errors", "tenant_claim_type", REFUSED,
    ("tenants-claim-not-a-list", "SELECT count(*) FROM orders"),
    ("tenants-claim-not-a-list-payments", "SELECT card_number FROM payments"),
)
add("policy_errors", "dba_bad_expiry", DENY,
    ("unreadable-expiry", "SELECT count(*) FROM orders"),
    ("unreadable-expiry-hr", "SELECT salary FROM hr.salaries"),
    ("unreadable-expiry-secrets", "SELECT api_key FROM secrets"),
)
add("policy_errors", "nobody", DENY,
    ("no-roles-no-access", "SELECT count(*) FROM orders"),
    ("no-roles-products", "SELECT * FROM products"),
)


def by_class() -> dict[str, int]:
    counts: dict[str, int] = {}
    for case in CASES:
        counts[case.cls] = counts.get(case.cls, 0) + 1
    return counts
