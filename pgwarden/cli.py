"""The `pgwarden` command: one entry point, one subcommand per product piece.

Each piece registers its own click group or command here; this module is the only place
that imports both `pgwarden.server` and `pgwarden.proxy`.
"""

from __future__ import annotations

import importlib

import click

from pgwarden import __version__

# (module, attribute) of each subcommand, imported lazily so `pgwarden --help` stays fast
# and a broken optional piece cannot take the others down.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "audit": ("pgwarden.proxy.audit.cli", "audit"),
    "demo": ("pgwarden.demo", "demo"),
    "auth": ("pgwarden.proxy.auth.cli", "auth"),
    "policy": ("pgwarden.proxy.policy.cli", "policy"),
    "proxy": ("pgwarden.proxy.cli", "proxy"),
    "server": ("pgwarden.server.cli", "server"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module = importlib.import_module(target[0])
        command: click.Command = getattr(module, target[1])
        return command


def demo_dsn() -> str:
    """The embedded demo database's DSN (or PGWARDEN_DSN): the default catalog of commands
    that need one (`policy explain`, `policy test`); the proxy package cannot import the server."""
    from pgwarden.server import embedded

    return embedded.resolve_dsn()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pgwarden")
@click.pass_context
def main(ctx: click.Context) -> None:
    """pgwarden: a security-hardened MCP proxy for PostgreSQL.

    Put it between AI agents and a Postgres MCP server: every tool call is checked against
    CEL policies, its SQL rewritten (masks, row filters, row caps, schema pinning), and every
    decision audited.
    """
    ctx.meta["pgwarden.demo_dsn"] = demo_dsn
