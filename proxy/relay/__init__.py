"""The relay: front transports (stdio, Streamable HTTP), the upstream connection, passthrough.

`serve.serve_stdio` / `serve.serve_http` run a proxy; `core.Relay` routes each request
through a `pgwarden.proxy.pipeline.gate.Gate`; `upstream.Upstream` keeps the connection to the
real server alive. The hot path is lean on stdio: `fast.StdioFastPath` serves an initialised
stdio client's requests without the SDK's dispatcher, and `pipe.PipeLink` sends them to a stdio
upstream as JSON bytes resolved straight from the reply line.
"""
