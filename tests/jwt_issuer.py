"""A local OpenID issuer for the JWT authorizer tests: aiohttp on a free loopback port, in a thread,
serving `/.well-known/openid-configuration` and the JWKS it names; keys of every family, signing
with PyJWT as identity providers do; keys rotate, the issuer goes down and comes back, and it
counts what it serves."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from conftest import free_port

# RSA keys are slow to make: a few, made once, shared by the tests.
_RSA_KEYS: list[rsa.RSAPrivateKey] = []


def rsa_key(index: int = 0) -> rsa.RSAPrivateKey:
    while len(_RSA_KEYS) <= index:
        _RSA_KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _RSA_KEYS[index]


@dataclass
class SigningKey:
    """A private key, its kid and its public JWK."""

    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]

    def sign(
        self, claims: dict[str, Any], alg: str | None = None, headers: dict[str, Any] | None = None
    ) -> str:
        return jwt.encode(
            claims, self.private, algorithm=alg or self.alg, headers={"kid": self.kid, **(headers or {})}
        )


def signing_key(kid: str, alg: str = "RS256", rsa_index: int = 0) -> SigningKey:
    """A key for `alg`: RS*/PS* (RSA 2048), ES256 (P-256), ES384 (P-384), EdDSA (Ed25519)."""
    if alg.startswith(("RS", "PS")):
        private: Any = rsa_key(rsa_index)
        public = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg in ("ES256", "ES384"):
        private = ec.generate_private_key(ec.SECP256R1() if alg == "ES256" else ec.SECP384R1())
        public = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        public = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise ValueError(alg)
    return SigningKey(kid, alg, private, {**public, "kid": kid, "use": "sig"})


class LocalIssuer:
    """An OpenID provider at `http://127.0.0.1:PORT/PATH` (its issuer URL)."""

    def __init__(self, path: str | None = None) -> None:
        self.port = free_port()
        # The core keeps issuers per process by URL: a path of its own, should a port be used again.
        path = path or f"/oidc-{uuid.uuid4().hex[:12]}"
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.path = path
        self.keys: list[SigningKey] = []
        self.discovery_hits = 0
        self.jwks_hits = 0
        self._loop = asyncio.new_event_loop()
        self._site: web.TCPSite | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="local-issuer", daemon=True)

    # -- serving

    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_hits += 1
        return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/.well-known/jwks.json"})

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_hits += 1
        return web.json_response({"keys": [k.jwk for k in self.keys]})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get(f"{self.path}/.well-known/openid-configuration", self._discovery)
        app.router.add_get(f"{self.path}/.well-known/jwks.json", self._jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def _stop_listening(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def start(self) -> LocalIssuer:
        self._thread.start()
        self._run(self._start())
        return self

    def close(self) -> None:
        if self._runner is not None:
            self._run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def down(self) -> None:
        """Stop listening: connections are refused until `up`."""
        self._run(self._stop_listening())

    def up(self) -> None:
        self._run(self._listen())

    # -- keys and tokens

    def publish(self, *keys: SigningKey) -> None:
        """The key set from now on (a rotation drops the keys not given)."""
        self.keys = list(keys)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid claims for audience `app`, for 10 minutes; None values are left out."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": "app",
            "sub": "user-1",
            "iat": now - 5,
            "nbf": now - 5,
            "exp": now + 600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}
