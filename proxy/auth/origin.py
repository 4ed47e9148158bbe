"""DNS-rebinding protection: the `Host` header must name this server, and an `Origin` header,
when a browser sends one, must be on the allow-list.

Patterns are compared case-insensitively: `host` (exact, no port), `host:port`, `host:*`
(any port); origins `scheme://host[:port]` or `scheme://host:*`. An `Origin: null` (sandboxed
frames, file URLs) is refused unless `null` is listed explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from pgwarden.proxy.auth.config import OriginConfig

LOOPBACK_HOST_PATTERNS = ("127.0.0.1:*", "127.0.0.1", "localhost:*", "localhost", "[::1]:*", "[::1]")


def _matches(value: str, patterns: Iterable[str]) -> bool:
    value = value.lower()
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern.endswith(":*"):
            base = pattern[:-2]
            if value == base or (value.startswith(base + ":") and value[len(base) + 1 :].isdigit()):
                return True
        elif value == pattern:
            return True
    return False


def default_allowed_hosts(resource: str) -> tuple[str, ...]:
    """The resource URI's host (with its port, or any port when it has none) and loopback names."""
    parts = urlsplit(resource)
    own = parts.netloc.rsplit("@", 1)[-1].lower()
    hosts = [own] if parts.port is not None else [own, own + ":*"]
    return (*hosts, *LOOPBACK_HOST_PATTERNS)


class HostOriginCheck:
    def __init__(self, config: OriginConfig, resource: str) -> None:
        self.allowed_hosts = (
            config.allowed_hosts if config.allowed_hosts is not None else default_allowed_hosts(resource)
        )
        self.allowed_origins = tuple(o.rstrip("/") for o in config.allowed_origins)

    def host_ok(self, host: str | None) -> bool:
        return bool(host) and host is not None and _matches(host, self.allowed_hosts)

    def origin_ok(self, origin: str | None) -> bool:
        """An absent Origin is fine (not a browser, or a same-origin GET); a present one must be listed."""
        if origin is None:
            return True
        return _matches(origin.rstrip("/"), self.allowed_origins)
