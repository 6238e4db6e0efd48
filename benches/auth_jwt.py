"""`benches/run.py --shape jwt`: JWT authorizers against the same routes without auth, same run.

What it starts (free loopback ports): the upstream nginx of the bare shape; a local OpenID issuer
(discovery document and JWKS, served from a thread of this process, RS256 key made here); one
Portico (`portico serve`, one worker, its edge) whose config declares a JWT authorizer and the
routes
    GET /proxy, GET /mock           HTTP_PROXY -> the upstream, MOCK; no authorization
    GET /jwt/proxy, GET /jwt/mock   the same integrations behind the JWT authorizer

Cases (keys for --only):
    proxy, jwt-proxy   HTTP_PROXY without auth, and with one RS256 token repeated on every request
                       (the keys fetched once, the token verified once, then remembered)
    mock, jwt-mock     the same pair on MOCK (the gateway's own cost, no upstream)
    mock-hdr           MOCK without auth, sent the same Authorization header: what carrying the
                       token costs (HTTP parsing, wrk), apart from the authorizer
    jwt-new            MOCK behind the authorizer, every request with a token never sent before
                       (a wrk Lua script reads them from a file minted here with PyJWT): each request
                       is one RS256 signature check, so its req/s is signature checks per second
The table gives each JWT case's ratio to its route without auth (target for repeated tokens:
>= 0.9x), and jwt-mock's to mock-hdr. `--jwt-tokens N` sets how many fresh tokens are minted
(default 200000; minting runs on every core); if a run sends more requests than that, tokens
repeat and the table says so.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from run import (
    UPSTREAM_HTTP,
    Case,
    Processes,
    free_port,
    measure,
    print_table,
    start_nginx,
    start_portico,
)

KID = "bench-key"
AUDIENCE = "bench"
JWT_TARGET = 0.9


# ------------------------------------------------------------------------------------------ issuer


class Issuer:
    """Discovery document and JWKS at http://127.0.0.1:PORT/oidc, from a thread of this process."""

    def __init__(self, public_jwk: dict) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/oidc"
        documents = {
            "/oidc/.well-known/openid-configuration": {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks.json",
            },
            "/oidc/jwks.json": {"keys": [public_jwk]},
        }
        self.hits: dict[str, int] = {path: 0 for path in documents}
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                document = documents.get(self.path)
                if document is None:
                    self.send_error(404)
                    return
                hits[self.path] += 1
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


# ------------------------------------------------------------------------------------------ tokens

_KEY = None


def _load_key(pem: bytes) -> None:
    global _KEY
    # run.py turns SIGTERM into KeyboardInterrupt; a minting worker just ends.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _KEY = serialization.load_pem_private_key(pem, password=None)


def _claims(issuer: str, index: int, now: int) -> dict:
    """What an identity provider's access token carries (Cognito-like size)."""
    return {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": f"3f1c2a9e-0000-4000-8000-{index:012d}",
        "scope": "openid profile bench/read",
        "auth_time": now,
        "iat": now,
        "exp": now + 86_400,
        "jti": f"{index:08x}-bench",
        "username": f"user{index}",
    }


def _sign(task: tuple[str, int, int, int]) -> list[str]:
    issuer, start, count, now = task
    return [
        jwt.encode(_claims(issuer, i, now), _KEY, algorithm="RS256", headers={"kid": KID})
        for i in range(start, start + count)
    ]


def mint(pem: bytes, issuer: str, count: int, path: Path) -> None:
    """`count` distinct RS256 tokens, one a line, signed on every core."""
    now = int(time.time())
    chunk = 2000
    tasks = [(issuer, start, min(chunk, count - start), now) for start in range(0, count, chunk)]
    pool = multiprocessing.Pool(initializer=_load_key, initargs=(pem,))
    try:
        with open(path, "w") as out:
            for tokens in pool.imap(_sign, tasks):
                out.write("\n".join(tokens) + "\n")
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()


# wrk: every request takes the next token of the file, from where the previous run stopped (a
# state file holds the offset), so that no token is sent twice across warm-up and rounds.
FRESH_TOKENS_LUA = """
local TOKENS, STATE, THREADS, CONNECTIONS, COUNT = "{tokens}", "{state}", {threads}, {connections}, {count}
local offset = 0
do
  local f = io.open(STATE, "r")
  if f then offset = tonumber(f:read("*l")) or 0; f:close() end
end
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
local file, wraps
local function open_at(skip)
  if file then file:close() end
  file = io.open(TOKENS, "r")
  for _ = 1, skip do file:read("*l") end
end
function init(args)
  wraps = 0
  open_at((offset + id) % COUNT)
end
local function next_token()
  local token = file:read("*l")
  if token == nil then
    wraps = wraps + 1
    open_at(id)
    token = file:read("*l")
  end
  for _ = 2, THREADS do file:read("*l") end
  return token
end
function request()
  return wrk.format(nil, nil, {{ ["Authorization"] = "Bearer " .. next_token() }})
end
function done(summary, latency, requests)
  local sent = offset + summary.requests + CONNECTIONS
  local f = io.open(STATE, "w")
  f:write(tostring(sent) .. "\\n")
  f:close()
end
"""


# ------------------------------------------------------------------------------------------ the run


def jwt_config(upstream_port: int, issuer: str) -> dict:
    jwt_auth = {"authorizationType": "JWT", "authorizerId": "users"}
    return {
        # No account limit: a benchmark measures the gateway, not AWS's default 10,000 requests/s.
        "settings": {"accountThrottle": {}},
        "apis": [
            {
                "name": "bench-jwt",
                "id": "benchjwt01",
                "authorizers": {
                    "users": {
                        "authorizerType": "JWT",
                        "identitySource": ["$request.header.Authorization"],
                        "jwtConfiguration": {"issuer": issuer, "audience": [AUDIENCE]},
                    }
                },
                "routes": [
                    {"route": "GET /proxy", "integration": "upstream"},
                    {"route": "GET /jwt/proxy", "integration": "upstream", **jwt_auth},
                    {"route": "GET /mock", "integration": "canned"},
                    {"route": "GET /jwt/mock", "integration": "canned", **jwt_auth},
                ],
                "integrations": {
                    "upstream": {
                        "type": "HTTP_PROXY",
                        "uri": f"http://127.0.0.1:{upstream_port}/",
                        "method": "GET",
                        "timeoutInMillis": 10000,
                    },
                    "canned": {
                        "type": "MOCK",
                        "statusCode": 200,
                        "headers": {"content-type": "application/json"},
                        "body": '{"ok":true}',
                    },
                },
            }
        ],
    }


def run_jwt(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    up_port, _ = start_nginx(tmp, procs, "upstream", UPSTREAM_HTTP)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = {
        **RSAAlgorithm.to_jwk(private.public_key(), as_dict=True),
        "kid": KID,
        "alg": "RS256",
        "use": "sig",
    }
    issuer = Issuer(public_jwk)
    try:
        return _run(args, tmp, procs, up_port, private, issuer)
    finally:
        issuer.close()


def _run(args, tmp: Path, procs: Processes, up_port: int, private, issuer: Issuer) -> int:
    port, _, _ = start_portico(tmp, procs, "portico-jwt", jwt_config(up_port, issuer.url), "/mock")
    repeated = jwt.encode(
        _claims(issuer.url, 0, int(time.time())), private, algorithm="RS256", headers={"kid": KID}
    )
    auth = {"Authorization": f"Bearer {repeated}"}

    wanted = {w.strip() for w in args.only.split(",")} if args.only else None
    tokens, state = tmp / "tokens.txt", tmp / "tokens.state"
    cases = [
        Case("proxy", "portico HTTP_PROXY, no auth", port, "/proxy"),
        Case("jwt-proxy", "portico HTTP_PROXY, JWT repeated", port, "/jwt/proxy", headers=auth),
        Case("mock", "portico MOCK, no auth", port, "/mock"),
        Case("jwt-mock", "portico MOCK, JWT repeated", port, "/jwt/mock", headers=auth),
        # The token's bytes without the authorizer: what carrying it costs, apart from checking it.
        Case("mock-hdr", "portico MOCK, no auth, same header", port, "/mock", headers=auth),
        Case("jwt-new", "portico MOCK, JWT new each request", port, "/jwt/mock", headers=auth),
    ]
    if wanted is not None:
        cases = [c for c in cases if c.key in wanted]
    fresh = next((c for c in cases if c.key == "jwt-new"), None)
    if fresh is not None:
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        started = time.monotonic()
        mint(pem, issuer.url, args.jwt_tokens, tokens)
        print(f"minted {args.jwt_tokens:,} RS256 tokens in {time.monotonic() - started:.1f} s")
        script = tmp / "fresh-tokens.lua"
        script.write_text(
            FRESH_TOKENS_LUA.format(
                tokens=tokens,
                state=state,
                threads=args.threads,
                connections=args.connections,
                count=args.jwt_tokens,
            )
        )
        fresh.script = script

    measure(args, cases)
    print_table(cases, "", [])
    medians = {c.key: statistics.median(s.rps for s in c.samples) for c in cases if c.samples}
    print()
    pairs = (("jwt-proxy", "proxy"), ("jwt-mock", "mock"), ("jwt-mock", "mock-hdr"), ("jwt-new", "mock"))
    for key, base in pairs:
        if key in medians and base in medians:
            ratio = medians[key] / medians[base]
            target = (
                f"   target >= {JWT_TARGET:g}x {'ok' if ratio >= JWT_TARGET else 'NO'}"
                if key != "jwt-new" and base != "mock-hdr"
                else ""
            )
            print(f"{key:<10} / {base:<6} {ratio:5.2f}x{target}")
    if "jwt-new" in medians:
        sent = int(state.read_text().split()[0]) if state.exists() else 0
        if sent > args.jwt_tokens:
            print(
                f"jwt-new: [!] {sent:,} requests for {args.jwt_tokens:,} tokens: some repeated (and were "
                "remembered), so its req/s overstates signature checks; raise --jwt-tokens"
            )
        else:
            print(
                f"jwt-new: {medians['jwt-new']:,.0f} RS256 signature checks per second (median of the rounds)"
            )
    hits = issuer.hits["/oidc/jwks.json"]
    print(f"issuer: JWKS fetched {hits} time(s) over the whole run")
    return 0
