"""A proxy process with a test gate, for relay-level end-to-end tests over real pipes/HTTP.

python tests/proxy/relay_process.py [--gate allow|deny] [--http HOST:PORT] [--timeout S] -- COMMAND...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).parent))

from gates import AllowAllGate, DenyAllGate

from pgwarden.proxy.relay.serve import serve_http, serve_stdio
from pgwarden.proxy.relay.upstream import UpstreamSpec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gate", choices=["allow", "deny"], default="allow")
    parser.add_argument("--http")
    parser.add_argument("--url")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--protocol", default="auto")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()
    gate = AllowAllGate() if args.gate == "allow" else DenyAllGate()
    spec = UpstreamSpec(
        command=tuple(args.command),
        url=args.url,
        call_timeout_s=args.timeout,
        protocol=args.protocol,
        restart_initial_s=0.1,
    )
    principal = {"id": "test"}
    if args.http:
        host, port = args.http.rsplit(":", 1)
        anyio.run(lambda: serve_http(spec, gate, lambda _ctx: principal, host=host, port=int(port)))
    else:
        anyio.run(lambda: serve_stdio(spec, gate, principal))


if __name__ == "__main__":
    main()
