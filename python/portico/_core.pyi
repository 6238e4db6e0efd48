"""Typed face of the Rust core (`rust/`): routing, throttling and the per-request decision.

The boundary is coarse on purpose: the data plane makes one `Gateway.decide` call per request,
which selects the API and stage, matches the route and spends the throttle tokens.
"""

from typing import Final, final

__all__ = [
    "BAD_REQUEST",
    "NOT_FOUND",
    "ROUTE",
    "THROTTLED",
    "ConfigError",
    "Edge",
    "Gateway",
    "RequestIds",
    "Router",
    "TokenBuckets",
    "Verdict",
    "monotonic_ns",
    "parse_response_head",
]

# Verdict kinds (Verdict.kind)
ROUTE: Final[int]  # a route matched and the request was admitted
NOT_FOUND: Final[int]  # no API, no stage or no route: AWS's 404 (HTTP API) / 403 (REST)
THROTTLED: Final[int]  # a token bucket refused the request: 429 Too Many Requests
BAD_REQUEST: Final[int]  # malformed path (invalid percent-encoding): 400

class ConfigError(ValueError):
    """Raised by Gateway() / Gateway.swap() when the compiled spec is invalid (e.g. a bad route key)."""

@final
class Verdict:
    """Outcome of `Gateway.decide`; immutable."""

    @property
    def kind(self) -> int: ...
    @property
    def api_index(self) -> int:
        """Index into spec["apis"]; -1 when no API was selected."""
    @property
    def stage_index(self) -> int:
        """Index into the API's "stages"; -1 when no stage was selected."""
    @property
    def route_index(self) -> int:
        """Index into the routes the stage served this request with (the canary's when `canary`,
        else the stage's own "routes", else the API's); -1 unless a route matched (the `$default`
        route counts)."""
    @property
    def canary(self) -> bool:
        """Whether the stage's canary was picked for this request."""
    @property
    def path(self) -> str:
        """The request path as the API sees it: stage segment (and `/restapis/.../_user_request_`
        prefix) removed, percent-encoding preserved, trailing slash preserved. Always starts with `/`."""
    @property
    def path_params(self) -> dict[str, str] | None:
        """Path variables of the matched route (raw, not percent-decoded); None when there are none.
        A greedy variable `{proxy+}` holds the rest of the path without its leading `/`."""
    @property
    def retry_after_ms(self) -> int:
        """For THROTTLED: milliseconds until a token is available (rounded up); else 0.
        2**64-1 when the refusing bucket refuses everything (rate 0 or burst 0)."""

@final
class Gateway:
    """A compiled, immutable snapshot of all APIs, swapped atomically on reload.

    `spec_json` is a JSON document:
    {
      "apis": [{
          "id": "a1b2c3d4e5",                 # matched against Host `{id}.execute-api.*`
          "kind": "http" | "rest",
          "routes": ["GET /pets/{id}", "ANY /{proxy+}", "$default", ...],   # HTTP route keys
          "stages": [{
              "name": "$default" | "prod" | ...,
              "routes": [...] | absent,                 # this stage's deployment (else the API's)
              "default_throttle": {"rate": 100.0, "burst": 50} | null,     # per-route bucket
              "route_throttle": {"GET /pets/{id}": {"rate": 1.5, "burst": 2}, ...},
              "canary": {                               # optional
                  "percent": 10.0,                      # 0.0-100.0: share of requests it takes
                  "routes": [...] | absent,             # the canary deployment's (else the stage's)
                  "default_throttle": ..., "route_throttle": ...   # absent: the stage's apply
              } | null
          }]
      }],
      "default_api": 0 | null,                  # API served for a Host that names no API
      "account_throttle": {"rate": 10000.0, "burst": 5000} | null
    }
    A throttle of rate 0 or burst 0 refuses every request. The canary is picked at random per
    request (thread-local xorshift); its buckets have the stage's keys (api, stage, route key), so
    a stage is throttled as a whole whichever deployment serves a request.
    """

    def __new__(
        cls, spec_json: str, shared_buckets_path: str | None = None, buckets: TokenBuckets | None = None
    ) -> Gateway:
        """`shared_buckets_path`: a file (normally under /dev/shm) mapped by every worker process
        so that token buckets are shared gateway-wide; None keeps buckets in this process.
        `buckets`: spend from an existing table instead (e.g. `old_gateway.buckets`, so that a
        reload keeps throttle state); not together with `shared_buckets_path` (ValueError).
        Raises ConfigError for an invalid spec, OSError when the buckets file cannot be used."""
    @property
    def buckets(self) -> TokenBuckets:
        """The bucket table this gateway spends from (shared with it, not a copy)."""
    def swap(self, spec_json: str) -> None:
        """Replace the snapshot atomically; in-flight decisions finish on the old one.
        Bucket state survives for keys that still exist."""
    def decide(self, host: str, method: str, raw_path: str) -> Verdict:
        """Select API and stage, match the route, spend throttle tokens. Never raises for any
        input strings."""

@final
class TokenBuckets:
    """Keyed GCRA token buckets (the throttle behind Gateway), exposed for tests and plugins."""

    def __new__(cls, shared_path: str | None = None, capacity: int = ...) -> TokenBuckets: ...
    def try_acquire(self, key: str, rate: float, burst: int, now_ns: int | None = None) -> int:
        """Spend one token of bucket `key` (full at first use). Returns 0 when admitted, else the
        nanoseconds until a token is available (2**64-1 when `rate <= 0` or `burst <= 0`: never).
        `now_ns` overrides the monotonic clock (tests)."""
    @property
    def capacity(self) -> int:
        """Number of slots (a power of two; an existing shared file keeps its own capacity)."""

@final
class Router:
    """The route trie on its own, for tests and benchmarks."""

    def __init__(self) -> None: ...
    def insert(self, route_key: str, route_id: int) -> None:
        """`route_key` is an HTTP API route key ("GET /a/{b}", "ANY /{proxy+}"); raises ConfigError."""
    def lookup(self, method: str, path: str) -> tuple[int, dict[str, str]] | None:
        """(route_id, path variables) of the best route for `method` and the raw `path`."""
    def __len__(self) -> int: ...

@final
class Edge:
    """The edge (rust/edge.rs): serves the public listener on a thread of its own, answering
    plugin-free HTTP_PROXY and MOCK routes, 404s and 429s itself and passing every other request
    to the Python pipeline on the Unix socket `backend` with `x-portico-edge: <secret> <client ip>
    <HTTP version>`. Stops when garbage-collected."""

    def __new__(
        cls, listener_fd: int, backend: str, secret: str, gateway: Gateway, table_json: str
    ) -> Edge:
        """Take over the listening socket `listener_fd` and serve it from `gateway` and the table
        (JSON, see `portico.dataplane.edge.edge_table`); ValueError for a malformed table."""
    def publish(self, gateway: Gateway, table_json: str) -> None:
        """Serve `gateway` and `table_json` from now on (a reload)."""

@final
class RequestIds:
    """Request ids and X-Ray trace ids for one worker: a random seed and a counter, no system call
    per id."""

    def __init__(self) -> None: ...
    def next(self) -> str:
        """The next `apigw-requestid`: 16 base64 characters (11 bytes), unique per generator."""
    def trace_id(self) -> str:
        """A new X-Ray trace header value, `Root=1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>`."""

def monotonic_ns() -> int:
    """The clock the buckets use (CLOCK_MONOTONIC, shared by all processes on the machine)."""

def parse_response_head(buf: bytes) -> tuple[int, int, int, list[tuple[str, str]], int, int] | None:
    """Parse the HTTP/1.x response head at the start of `buf` (httparse; the upstream client's one
    call per head). None while incomplete, else (bytes consumed, status, minor version,
    [(lower-case name, latin-1 value), ...] in arrival order, Content-Length or -1, framing flags:
    1 Transfer-Encoding present | 2 last coding chunked | 4 Connection: close | 8 Connection:
    keep-alive). ValueError when malformed, or for an invalid or conflicting Content-Length."""
