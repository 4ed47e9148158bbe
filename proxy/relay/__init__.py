"""The relay: front transports (stdio, Streamable HTTP), the upstream connection, passthrough.

`serve.serve_stdio` / `serve.serve_http` run a proxy; `core.Relay` routes each request
through a `pgwarden.proxy.pipeline.gate.Gate`; `upstream.Upstream` keeps the connection to the
real server alive.
"""
