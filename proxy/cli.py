"""`pgwarden proxy`: put pgwarden between an MCP client and a Postgres MCP server.

    pgwarden proxy --policy policies/analyst.yaml --principal '{"id":"ann","roles":["analyst"]}' \\
        -- npx -y @modelcontextprotocol/server-postgres postgresql://reader@db/app

wraps a stdio server (a one-line change in a client's configuration);
`--upstream-url http://…/mcp` reaches a Streamable HTTP server instead, and
`--listen http://127.0.0.1:8808/mcp` serves many clients over Streamable HTTP.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import click

from pgwarden.proxy.config import ConfigError, ProxyConfig, load_config, parse_listen, read_config_file

EXIT_CONFIG = 2
EXIT_UPSTREAM = 3


def merge_options(
    base: dict[str, Any],
    *,
    policy: tuple[str, ...],
    principal: str | None,
    listen: str | None,
    upstream_url: str | None,
    command: tuple[str, ...],
    tool_map: str | None,
    catalog_dsn: str | None,
    audit_log: str | None,
    call_timeout: float | None,
    http_responses: str | None = None,
) -> dict[str, Any]:
    """The configuration mapping with command-line options applied over the file's."""
    data = dict(base)
    upstream = dict(data.get("upstream") or {})
    if upstream_url or command:
        upstream.pop("command", None)
        upstream.pop("url", None)
        if upstream_url:
            upstream["url"] = upstream_url
        if command:
            upstream["command"] = list(command)
    if call_timeout is not None:
        upstream["call_timeout_s"] = call_timeout
    if upstream:
        data["upstream"] = upstream
    if policy:
        data["policy"] = list(policy)
    if principal is not None:
        from pgwarden.proxy.auth.principal import PrincipalError, parse_principal_option

        try:
            parsed = parse_principal_option(principal)
        except PrincipalError as exc:
            raise ConfigError(f"--principal: {exc}") from None
        data["principal"] = _principal_dict(parsed)
    if listen is not None:
        data["listen"] = listen
    if http_responses is not None:
        data["http_responses"] = http_responses
    if tool_map is not None:
        data["tool_map"] = {**(data.get("tool_map") or {}), "preset": tool_map}
    if catalog_dsn is not None:
        data["catalog_dsn"] = catalog_dsn
    if audit_log is not None:
        data["audit"] = {**(data.get("audit") or {}), "path": audit_log}
    return data


def _principal_dict(principal: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": principal.id}
    if principal.roles:
        out["roles"] = list(principal.roles)
    if principal.tenant is not None:
        out["tenant"] = principal.tenant
    if principal.claims:
        out["claims"] = dict(principal.claims)
    if principal.scopes:
        out["scopes"] = list(principal.scopes)
    return out


async def run_proxy(config: ProxyConfig) -> None:
    """Build the pipeline and serve until the client (stdio) or a signal (HTTP) ends it."""
    from pgwarden.proxy.auth import AuthMiddleware, principal_from_mapping, require_principal
    from pgwarden.proxy.pipeline.build import build_pipeline, tool_map_resolver, upstream_spec
    from pgwarden.proxy.relay.serve import serve_http, serve_stdio

    pipeline = build_pipeline(config)
    try:
        spec = upstream_spec(config)
        hook = tool_map_resolver(config, pipeline.gate)
        where = parse_listen(config.listen)
        fixed = principal_from_mapping(config.principal) if config.principal is not None else None
        if where is None:
            await serve_stdio(
                spec,
                pipeline.gate,
                fixed,
                on_connected=hook,
                forward_upstream_logs=config.forward_upstream_logs,
            )
            return
        host, port, path = where
        if config.auth is not None:
            auth = config.auth
            # Authentication (pgwarden.proxy.auth): refuse an unsafe bind, audit every refusal.
            from pgwarden.proxy.auth.audit_hook import RefusalAuditor

            try:
                auth.check_bind(host)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            on_refusal = RefusalAuditor(pipeline.audit) if pipeline.audit is not None else None
            await serve_http(
                spec,
                pipeline.gate,
                require_principal,
                host=host,
                port=port,
                path=path,
                wrap=lambda app: AuthMiddleware(app, auth, on_refusal=on_refusal),
                on_connected=hook,
                forward_upstream_logs=config.forward_upstream_logs,
                responses=config.http_responses,
            )
            return
        if fixed is None:
            raise ConfigError("an HTTP proxy needs auth: (tokens or API keys) or a fixed principal")
        from pgwarden.proxy.auth.config import is_loopback_host

        if not is_loopback_host(host):  # no credentials checked: never reachable from other machines
            raise ConfigError(f"an HTTP proxy without auth: listens on loopback only, not {host!r}")
        click.echo(f"pgwarden proxy: no auth configured; every HTTP client is {fixed.id!r}", err=True)
        await serve_http(
            spec,
            pipeline.gate,
            lambda _ctx: fixed,
            host=host,
            port=port,
            path=path,
            on_connected=hook,
            forward_upstream_logs=config.forward_upstream_logs,
            responses=config.http_responses,
        )
    finally:
        pipeline.close()


@click.command(context_settings={"ignore_unknown_options": False, "help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="PGWARDEN_PROXY_CONFIG",
    help="YAML configuration file (upstream, tool map, catalog, principal, audit, ...); "
    "also PGWARDEN_PROXY_CONFIG.",
)
@click.option("--policy", multiple=True, help="Policy file or directory (repeatable). Required.")
@click.option(
    "--principal", help='The stdio caller: JSON ({"id": "ann", "roles": ["analyst"]}) or id,key=value.'
)
@click.option("--listen", help="stdio (default) or http://HOST:PORT/mcp.")
@click.option(
    "--http-responses",
    type=click.Choice(["sse", "json"]),
    help="HTTP: answer each call as an SSE stream (default) or one JSON body (faster; drops "
    "upstream progress and sampling during a call). Also PGWARDEN_HTTP_RESPONSES.",
)
@click.option("--upstream-url", help="A Streamable HTTP upstream server instead of a command.")
@click.option("--tool-map", help="Tool-map preset: auto (default), pgwarden, server-postgres, ...")
@click.option("--catalog-dsn", help="Read-only DSN to introspect table columns (needed for masks).")
@click.option("--audit-log", help="Append the hash-chained audit log to this file.")
@click.option("--call-timeout", type=float, help="Seconds an upstream call may take (default 30).")
@click.option("-v", "--verbose", is_flag=True, help="Log to stderr.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def proxy(
    config_file: Path | None,
    policy: tuple[str, ...],
    principal: str | None,
    listen: str | None,
    http_responses: str | None,
    upstream_url: str | None,
    tool_map: str | None,
    catalog_dsn: str | None,
    audit_log: str | None,
    call_timeout: float | None,
    verbose: bool,
    command: tuple[str, ...],
) -> None:
    """Run the policy-enforcing proxy in front of a Postgres MCP server.

    Give the upstream server as a command after `--` (stdio) or with --upstream-url.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        base = read_config_file(config_file) if config_file else {}
        data = merge_options(
            base,
            policy=policy,
            principal=principal,
            listen=listen,
            upstream_url=upstream_url,
            command=command,
            tool_map=tool_map,
            catalog_dsn=catalog_dsn,
            audit_log=audit_log,
            call_timeout=call_timeout,
            http_responses=http_responses,
        )
        if "upstream" not in data:
            raise ConfigError(
                "no upstream: give a command after `--`, --upstream-url, or upstream: in --config"
            )
        config = load_config(data, source=str(config_file) if config_file else "options")
    except ConfigError as exc:
        click.echo(f"pgwarden proxy: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    _serve(config)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve(config: ProxyConfig) -> None:
    from pgwarden.proxy.policy.errors import PolicyError
    from pgwarden.proxy.relay.serve import UpstreamStartError, loop_options

    # SIGTERM stops the proxy the way Ctrl-C does: `run_proxy` unwinds and closes the pipeline,
    # which flushes the batched spans and audit log records. (uvicorn re-raises the SIGTERM it
    # caught after its graceful shutdown; with the default handler the process would die there.)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        # uvloop for the HTTP front when installed (the `fast` extra): less CPU per call there.
        transport = "stdio" if parse_listen(config.listen) is None else "http"
        anyio.run(run_proxy, config, backend_options=loop_options(transport))
    except* PolicyError as group:
        for exc in group.exceptions:
            click.echo(f"pgwarden proxy: the policy cannot be used:\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except* ConfigError as group:
        click.echo(f"pgwarden proxy: {group.exceptions[0]}", err=True)
        sys.exit(EXIT_CONFIG)
    except* UpstreamStartError as group:
        click.echo(f"pgwarden proxy: {group.exceptions[0]}", err=True)
        sys.exit(EXIT_UPSTREAM)
    except* KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def dump_config(config: ProxyConfig) -> str:
    """The effective configuration as JSON (for `--help`-style diagnostics and tests)."""
    return json.dumps(config.model_dump(mode="json"), indent=2)
