"""Static API keys: stored as SHA-256 hashes, compared in constant time.

API keys are long random strings (`new_api_key` makes 256-bit ones), so a fast hash is the
right tool: there is nothing to brute-force that a slow hash would protect. The presented key
is hashed once and compared with every configured hash with `hmac.compare_digest`, without
stopping at the first match, so timing says nothing about which key (or which prefix) matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from pgwarden.proxy.auth.config import ApiKeyConfig
from pgwarden.proxy.auth.principal import Principal

KEY_PREFIX = "pgw_"
MIN_KEY_LENGTH = 24


def hash_api_key(key: str) -> str:
    """`sha256:<hex>` of the key's UTF-8 bytes — the form `auth.api_keys[].hash` takes."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    """A fresh key: `pgw_` + 43 url-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ApiKeyMatch:
    name: str
    principal: Principal


class ApiKeyStore:
    """The configured keys; `match` returns the principal of the key presented, if any."""

    def __init__(self, keys: Iterable[ApiKeyConfig]) -> None:
        self._entries = [
            (bytes.fromhex(k.hash.removeprefix("sha256:")), ApiKeyMatch(k.name, k.to_principal()))
            for k in keys
        ]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def match(self, presented: str) -> ApiKeyMatch | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: ApiKeyMatch | None = None
        for stored, match in self._entries:
            if hmac.compare_digest(stored, digest):
                found = match
        return found
