"""`pgwarden auth …`: helpers for the HTTP front's credentials.

Keys are read from standard input or a hidden prompt, never from the command line (where
process listings and shell history would keep them).
"""

from __future__ import annotations

import sys

import click

from pgwarden.proxy.auth.api_keys import MIN_KEY_LENGTH, hash_api_key, new_api_key


@click.group()
def auth() -> None:
    """API keys and other credentials for the proxy's HTTP front."""


def _read_key() -> str:
    if sys.stdin.isatty():
        key: str = click.prompt("API key", hide_input=True)
    else:
        key = sys.stdin.readline().rstrip("\r\n")
    return key


@auth.command("hash-key")
def hash_key() -> None:
    """Print the `sha256:…` hash of an API key read from stdin (or a hidden prompt).

    Put the hash, never the key, in `auth.api_keys[].hash`.
    """
    key = _read_key()
    if len(key) < MIN_KEY_LENGTH:
        raise click.ClickException(
            f"refusing a key shorter than {MIN_KEY_LENGTH} characters (use `pgwarden auth new-key`)"
        )
    click.echo(hash_api_key(key))


@auth.command("new-key")
@click.option("--name", default="my-client", show_default=True, help="Label of the key in the config.")
@click.option("--principal-id", default=None, help="Principal id for the snippet (default: the name).")
def new_key(name: str, principal_id: str | None) -> None:
    """Make a random API key; print it once (to stderr) and a config snippet with its hash."""
    key = new_api_key()
    click.echo(f"API key (shown once, give it to the client): {key}", err=True)
    click.echo(
        "auth:\n"
        "  api_keys:\n"
        f"    - name: {name}\n"
        f"      hash: {hash_api_key(key)}\n"
        f"      principal: {{id: {principal_id or name}, roles: [], tenant: null}}"
    )
