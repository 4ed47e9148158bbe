"""Real servers on 127.0.0.1 for the auth tests: a JWKS endpoint, a header-recording upstream,
and any ASGI app under uvicorn — each in its own thread, on a port the OS picks."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


@dataclass
class SigningKey:
    """A real key pair and the kid it is published under."""

    kid: str
    private: Any
    alg: str

    @classmethod
    def rsa(cls, kid: str, alg: str = "RS256") -> SigningKey:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), alg)

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")

    def public_jwk(self) -> dict[str, Any]:
        algo = RSAAlgorithm if isinstance(self.private, rsa.RSAPrivateKey) else ECAlgorithm
        jwk: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        jwk.update(kid=self.kid, use="sig")
        return jwk

    def public_pem(self) -> bytes:
        pem: bytes = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem

    def sign(
        self, claims: dict[str, Any], *, alg: str | None = None, headers: dict[str, Any] | None = None
    ) -> str:
        return jwt.encode(
            claims, self.private, algorithm=alg or self.alg, headers={"kid": self.kid, **(headers or {})}
        )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class JwksServer:
    """Serves `document` as JSON at /jwks; counts the requests it gets."""

    url: str
    document: dict[str, Any]
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, *keys: SigningKey) -> None:
        with self.lock:
            self.document = {"keys": [k.public_jwk() for k in keys]}


@contextmanager
def jwks_server(*keys: SigningKey) -> Iterator[JwksServer]:
    state = JwksServer(url="", document={"keys": [k.public_jwk() for k in keys]})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.requests += 1
                body = json.dumps(state.document).encode()
            if self.path != "/jwks":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/jwks"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@dataclass
class RecordingUpstream:
    """An HTTP server that records every request's headers and answers 200 `{"ok": true}`."""

    url: str
    seen: list[dict[str, str]] = field(default_factory=list)


@contextmanager
def recording_upstream() -> Iterator[RecordingUpstream]:
    state = RecordingUpstream(url="")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            state.seen.append({k.lower(): v for k, v in self.headers.items()})
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def bound_socket() -> socket.socket:
    """A listening-ready socket on 127.0.0.1 with an OS-assigned port (so the URL is known
    before the app that needs it is built)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_asgi(app: Any, sock: socket.socket) -> Iterator[str]:
    """Run `app` under uvicorn on `sock` in a thread; yields the base URL."""
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
