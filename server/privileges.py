"""What the server's role could do beyond reading, checked once at start.

The server never writes (see `database`), but a role that can write turns any hole in those
layers into a write; a hardened deployment gives the server a role with SELECT only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pgwarden.server.database import Database

_ROLE_SQL = """
SELECT current_user::text AS role, r.rolsuper AS superuser, r.rolcreaterole AS createrole,
       r.rolbypassrls AS bypassrls,
       has_database_privilege(current_database(), 'CREATE') AS create_in_database
FROM pg_roles r WHERE r.rolname = current_user
"""

_WRITABLE_TABLES_SQL = """
SELECT n.nspname::text || '.' || c.relname::text AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')  -- e.g. UPDATE pg_settings is SET
  AND n.nspname !~ '^pg_(toast|temp_)'
  AND (has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE')
       OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE')
       OR has_any_column_privilege(c.oid, 'INSERT') OR has_any_column_privilege(c.oid, 'UPDATE'))
ORDER BY 1
"""

_CREATE_SCHEMAS_SQL = """
SELECT n.nspname::text AS name FROM pg_namespace n
WHERE n.nspname !~ '^pg_(toast|temp_)' AND has_schema_privilege(n.oid, 'CREATE')
ORDER BY 1
"""


@dataclass(frozen=True)
class RoleReport:
    """The role's powers beyond SELECT; `problems` is empty for a read-only role."""

    role: str
    superuser: bool
    createrole: bool = False
    bypassrls: bool = False
    create_in_database: bool = False
    writable_tables: list[str] = field(default_factory=list)
    creatable_schemas: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.superuser:
            found.append(f"role {self.role!r} is a superuser")
        if self.createrole:
            found.append(f"role {self.role!r} can create roles")
        if self.bypassrls:
            found.append(f"role {self.role!r} bypasses row-level security")
        if self.create_in_database:
            found.append(f"role {self.role!r} can create schemas in this database")
        if self.writable_tables:
            shown = ", ".join(self.writable_tables[:5])
            more = len(self.writable_tables) - 5
            found.append(f"role {self.role!r} can write to {len(self.writable_tables)} table(s): {shown}"
                         + (f" and {more} more" if more > 0 else ""))
        if self.creatable_schemas:
            found.append(f"role {self.role!r} can create objects in schema(s): "
                         + ", ".join(self.creatable_schemas))
        return found


async def check_role(db: Database) -> RoleReport:
    """Inspect the connected role's superuser status, write and CREATE privileges."""
    role = (await db.catalog(_ROLE_SQL))[0]
    if role["superuser"]:
        # A superuser passes every privilege check; listing every table says nothing more.
        return RoleReport(role=role["role"], superuser=True)
    tables = [r["name"] for r in await db.catalog(_WRITABLE_TABLES_SQL)]
    schemas = [r["name"] for r in await db.catalog(_CREATE_SCHEMAS_SQL)]
    return RoleReport(
        role=role["role"], superuser=False, createrole=role["createrole"], bypassrls=role["bypassrls"],
        create_in_database=role["create_in_database"], writable_tables=tables, creatable_schemas=schemas,
    )
