"""Typed face of the Rust core (`rust/`): the request pipeline and its building blocks.

The boundary is coarse on purpose. Python compiles a spec (`portico.compile.spec`) into a
`Gateway`; a `Core` serves it, with every built-in phase in Rust, through the edge (`listen`) or
the embedded ASGI app (`submit`); Python answers only the calls for the user's code (`next_job`).
`Gateway.decide`, `Router` and `TokenBuckets` expose the routing and throttling for tests and
benchmarks.
"""

from typing import Any, Final, Literal, final

__all__ = [
    "BenchReport",
    "BodyFeed",
    "ClusterLink",
    "CompletionKind",
    "ConfigError",
    "Core",
    "Decided",
    "Gateway",
    "Handoff",
    "Job",
    "RequestIds",
    "Router",
    "SocketFeed",
    "StreamSink",
    "TokenBuckets",
    "UsageTable",
    "Verdict",
    "bench",
    "cache_key",
    "check_tls",
    "http_mapping_problem",
    "install_sighup_reopen",
    "integration_problem",
    "monotonic_ns",
    "quota_limit",
    "quota_period",
    "render_template",
    "vtl_compiles",
    "wall_clock_ms",
]

@final
class Decided:
    """What `Gateway.decide` decided (`Verdict.kind`); compares equal to itself and to its int."""

    Route: Final[Decided]  # a route matched and the request was admitted
    NotFound: Final[Decided]  # no API, no stage or no route: AWS's 404 (HTTP API) / 403 (REST)
    Throttled: Final[Decided]  # a token bucket refused the request: 429 Too Many Requests
    BadRequest: Final[Decided]  # malformed path (invalid percent-encoding): 400
    def __int__(self) -> int: ...

@final
class CompletionKind:
    """What an embedded completion carries (`Core.take_completions`' second member)."""

    Head: Final[CompletionKind]  # (token, Head, status, [(name, value)], body | None)
    Chunk: Final[CompletionKind]  # (token, Chunk, data, more)
    Abort: Final[CompletionKind]  # (token, Abort, error): a response body failed
    Frame: Final[CompletionKind]  # (token, Frame, str | bytes): a WebSocket frame to send
    Close: Final[CompletionKind]  # (token, Close, code, reason): close the WebSocket connection
    SocketEnd: Final[CompletionKind]  # (token, SocketEnd): the core holds the connection no more
    def __int__(self) -> int: ...

@final
class Handoff:
    """What became of a body chunk or a WebSocket message handed to the core."""

    Queued: Final[Handoff]  # queued for the pipeline
    Full: Final[Handoff]  # the queue is full: hand it over again soon
    Closed: Final[Handoff]  # the pipeline reads no more
    def __int__(self) -> int: ...

class ConfigError(ValueError):
    """Raised by Gateway() / Gateway.swap() when the compiled spec is invalid (e.g. a bad route key)."""

@final
class Verdict:
    """Outcome of `Gateway.decide`; immutable."""

    @property
    def kind(self) -> Decided: ...
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

    `spec_json` is a `portico.compile.spec.Spec` as JSON (the contract `rust/spec.rs` mirrors):
    APIs with their stages, routes and integrations, CORS, access logs, throttles and limits.
    A throttle of rate 0 or burst 0 refuses every request. The canary is picked at random per
    request (thread-local xorshift); its buckets have the stage's keys (api, stage, route key), so
    a stage is throttled as a whole whichever deployment serves a request.
    """

    def __new__(
        cls,
        spec_json: str,
        shared_buckets_path: str | None = None,
        buckets: TokenBuckets | None = None,
        shared_usage_path: str | None = None,
        redis: str | None = None,
        redis_fail: str = "open",
        redis_timeout_ms: float = 5.0,
        redis_lease_ms: float = 20.0,
    ) -> Gateway:
        """`shared_buckets_path`: a file (normally under /dev/shm) mapped by every worker process
        so that token buckets are shared gateway-wide; None keeps buckets in this process.
        `buckets`: spend from an existing table instead (e.g. `old_gateway.buckets`, so that a
        reload keeps throttle state); not together with `shared_buckets_path` (ValueError).
        `shared_usage_path`: the same for the usage plans' counters (`UsageTable`).
        `redis` (cluster mode, `redis://HOST:PORT/DB`): buckets and usage counts are shared with
        every gateway on that Redis; while it cannot answer within `redis_timeout_ms`, requests are
        decided on this gateway's own tables (`redis_fail="open"`) or refused with 429 ("closed").
        `redis_lease_ms`: how long tokens leased from a shared bucket (in blocks, while it has room)
        are spent without asking Redis; 0 asks for every request.
        The connection lives on the runtime of the `Core` serving this gateway.
        Raises ConfigError for an invalid spec, OSError when a shared file cannot be used."""
    @property
    def buckets(self) -> TokenBuckets:
        """The bucket table this gateway spends from (shared with it, not a copy)."""
    @property
    def usage(self) -> UsageTable:
        """The usage and refusal counters this gateway counts in (shared with it, not a copy)."""
    def flush_logs(self) -> None:
        """Write out every access-log line handed in so far."""
    def swap(self, spec_json: str) -> None:
        """Replace the snapshot atomically; in-flight decisions finish on the old one.
        Bucket state survives for keys that still exist."""
    def decide(self, host: str, method: str, raw_path: str) -> Verdict:
        """Select API and stage, match the route, spend throttle tokens. Never raises for any
        input strings."""
    def route_limits(
        self, host: str, method: str, raw_path: str, api_key: str | None = None
    ) -> list[tuple[float, int]] | None:
        """The throttles a request would spend from, as `(rate, burst)`: its route's (or its stage's
        default), the account's, then, on a method that requires an API key, the usage plan's
        per-key throttle of `api_key` (a key's value) for the method; without spending. The rate is
        the one enforced, `1e9 / T` with `T` whole nanoseconds (500.0 for 500; 5.4999999... for
        5.5). None when the request reaches no route."""
    def cache_stats(self) -> list[dict[str, Any]]:
        """Every REST stage response cache of this process: dicts of `api_id`, `stage`, `hits`
        and `misses` (AWS's CacheHitCount and CacheMissCount, kept across flushes), `entries`,
        `bytes` (what the entries weigh, never more than `capacity`) and `capacity` (bytes)."""

@final
class ClusterLink:
    """One link to a cluster's Redis, as a worker holds it (for tests and tools)."""

    def __new__(cls, url: str, timeout_ms: float = 50.0) -> ClusterLink:
        """Connects at once; OSError when Redis does not answer, ValueError for a bad URL."""
    def spend(self, buckets: list[tuple[str, float, int]], now_us: int | None = None) -> tuple[int, int]:
        """Spend one token from each `(key, rate, burst)` in order on Redis (at `now_us` on its
        clock, default its `TIME`): `(-1, 0)` when all admitted, else `(index of the refusing
        bucket, ns to wait)` (`2**64 - 1`: never). OSError when Redis did not decide."""

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
class Core:
    """The core serving a gateway: a runtime thread of its own running the request pipeline for
    the edge (`listen`) and the embedded app (`submit`), and the calls it hands to the Python
    side for the user's code (`next_job`)."""

    def __new__(cls, gateway: Gateway, max_threads: int = 256) -> Core:
        """`max_threads`: the most threads the Python side may run user code on at once."""
    def listen(
        self,
        fd: int,
        certificate_file: str | None = None,
        private_key_file: str | None = None,
        truststore_file: str | None = None,
        relay_dir: str | None = None,
    ) -> None:
        """Serve the listening socket `fd` (taken over) with the edge, hyper's HTTP/1.1 server;
        over TLS with a certificate chain and its key (PEM files, read again when they change or
        on SIGHUP), with mTLS when a truststore (PEM CA bundle) is given too. Raises
        ValueError((which, message)) for a file that cannot be used. `relay_dir`: the node's
        directory of its workers' WebSocket relay sockets (`@connections` across workers)."""
    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish within `grace` seconds, end the runtime
        and the hand-off. Blocks until done; later calls return at once."""
    def next_job(self) -> Job | None:
        """The next call for the Python side (waits without the GIL); None once stopped."""
    def wait_for_growth(self) -> bool:
        """For the Python side's supervisor: True when another thread is wanted (start one),
        False once stopped."""
    def invoker_stats(self) -> tuple[int, int, int]:
        """(threads, idle threads, queued calls)."""
    def start_relay(self, relay_dir: str | None = None) -> None:
        """Start the WebSocket relay without the edge (`@connections` reaching the node's other
        workers' connections through `relay_dir`, and other nodes' in cluster mode)."""
    def submit(
        self,
        token: int,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        client_ip: str,
        scheme: str,
        http_version: str,
        has_body: bool,
    ) -> BodyFeed | None:
        """Start an embedded request (`target`: raw path and query). Its head arrives as a
        completion; its body goes through the returned feed (None when it has none)."""
    def submit_socket(
        self,
        token: int,
        target: str,
        headers: list[tuple[bytes, bytes]],
        client_ip: str,
        scheme: str,
        http_version: str,
    ) -> SocketFeed:
        """Start an ASGI `websocket` scope's opening handshake (`target`: raw path and query).
        Its answer arrives as a head: 101 accepts the connection, any other status refuses it;
        then its frames arrive as completions and the client's messages go through the feed."""
    def pull(self, token: int) -> None:
        """Ask for the next chunk of `token`'s response body (arrives as a completion)."""
    def discard(self, token: int) -> None:
        """Forget `token`'s response body."""
    def completion_fd(self) -> int:
        """A descriptor that is readable while completions wait (for the ASGI server's loop)."""
    def take_completions(self) -> list[tuple[object, ...]]:
        """What embedded requests wait for: `(token, CompletionKind, ...)` tuples (a head carries
        the body when it is small and whole). Never waits."""

@final
class BodyFeed:
    """Where an embedded request's body goes."""

    def send(self, chunk: bytes) -> Handoff:
        """Queued, Full (try again soon), or Closed (the pipeline no longer reads the body)."""
    def fail(self, why: str) -> None:
        """The client's body failed: the pipeline's read of it fails."""
    def close(self) -> None:
        """The body is complete."""

@final
class SocketFeed:
    """Python's side of an embedded WebSocket connection."""

    def accepted(self) -> None:
        """The ASGI server accepted the connection (`websocket.accept` was sent)."""
    def text(self, text: str) -> Handoff:
        """A text message: Queued, Full (try again soon), or Closed (the connection is held no more).
        A message over 128 KB closes the connection with 1009."""
    def binary(self, data: bytes) -> Handoff:
        """A binary message (answers as `text`); the core closes the connection with 1003."""
    def sent(self) -> None:
        """The ASGI server sent one of the frames handed over (the core hands over a bounded
        number unsent)."""
    def closed(self, code: int | None, reason: str, abnormal: bool = False) -> None:
        """The client closed the connection (`code` None: without a code), or, `abnormal`, it
        was lost; idempotent."""

@final
class Job:
    """One call for the Python side, answered once with one of the `reply_*` methods."""

    @property
    def kind(self) -> str:
        """ "lambda", "render", "on_request" or "on_response"."""
    @property
    def streams(self) -> bool:
        """A Lambda call of a streaming integration (`responseTransferMode: STREAM`): a generator
        handler answers with `reply_lambda_stream`."""
    def lambda_call(self) -> tuple[str, bytes, int, str, str, str]:
        """(function uri, event JSON, timeout ms, region, account id, invocation id); taken once."""
    def render_call(self) -> tuple[str, bytes]:
        """(a mapping template's source, its `TemplateInput` as JSON); taken once."""
    def reply_render(self, output: str, overrides: bytes) -> None:
        """The template's output and its overrides (a JSON object)."""
    def reply_render_error(self, message: str) -> None:
        """The template could not be compiled or rendered, and why."""
    def plugin_call(self) -> tuple[dict[str, object], tuple[int, list[tuple[str, str]], bytes] | None]:
        """(the request, as `RequestContext.from_core` reads it; the response for on_response)."""
    def reply_lambda(self, result: bytes) -> None:
        """The handler's result, as JSON."""
    def reply_lambda_error(
        self,
        error_type: str,
        message: str,
        error_message: str | None = None,
        error_payload: bytes | None = None,
    ) -> None:
        """The function failed: a `portico.dataplane.errors.ErrorType` name, and why; when the
        handler raised, Lambda's `errorMessage` and its error JSON (what Lambda's Invoke returns:
        `errorMessage`, `errorType`, `requestId`, `stackTrace`)."""
    def reply_continue(self) -> None:
        """on_request hooks did not answer: the pipeline goes on."""
    def reply_response(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...
    def reply_stream(self, status: int, headers: list[tuple[str, str]]) -> StreamSink:
        """Answer with a response whose body follows through the sink."""
    def reply_lambda_stream(self, metadata: bytes) -> StreamSink:
        """A streaming handler's metadata (JSON: statusCode, headers, multiValueHeaders, cookies);
        its body follows through the sink, which must be closed (or aborted) at the end."""
    def reply_failed(self, error_type: str, message: str) -> None:
        """A plugin raised: the gateway response of `error_type`, and why."""

@final
class StreamSink:
    """The body of a response streamed from Python."""

    def send(self, chunk: bytes) -> bool:
        """Send a chunk (waits without the GIL while the client is slow); False once the client
        went away."""
    def close(self) -> None:
        """The body is complete."""
    def abort(self, why: str) -> None:
        """The body failed: the connection is aborted, never ended as if complete."""

@final
class RequestIds:
    """Request ids and X-Ray trace ids for one worker: a random seed and a counter, no system call
    per id."""

    def __init__(self) -> None: ...
    def next(self) -> str:
        """The next `apigw-requestid`: 16 base64 characters (11 bytes), unique per generator."""
    def trace_id(self) -> str:
        """A new X-Ray trace header value, `Root=1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>`."""

def integration_problem(integration: str, route_key: str, api_id: str) -> str | None:
    """Why the core would refuse to serve an integration (an `IntegrationSpec` as JSON), or None."""

def cache_key(
    parameters: list[tuple[str, str]],
    method: str,
    resource_path: str,
    raw_query: str,
    headers: list[tuple[bytes, bytes]],
    path_params: list[tuple[str, str]],
    variant: str = "",
) -> bytes:
    """A request's stage-cache key (for tests). `parameters`: (location, name) of the
    integration's `cacheKeyParameters`, location one of `querystring`, `multivaluequerystring`,
    `header`, `multivalueheader`, `path`. Two requests share a key exactly when their method,
    resource path, variant and those parameters' values are equal. ValueError for an unknown
    location or a header that is not one."""

_UsageEntry = (
    tuple[Literal["usage"], str, str, tuple[str, int, int] | None, list[tuple[int, int]]]
    | tuple[Literal["stage"], str, str, int, int, int, int]
    | tuple[Literal["key"], str, int, int]
)

@final
class UsageTable:
    """Usage plans' usage counts and quotas, and the counters of refused requests, in a table
    every worker maps (`rust/usage.rs`): what the gateway counts, read by the usage writer and
    `/metrics`. Days are UTC days since 1970-01-01."""

    def __new__(cls, shared_path: str | None = None, capacity: int = ...) -> UsageTable:
        """`shared_path`: the file the workers share (created if needed); None: this process's
        own table. Raises OSError when the file cannot be used."""
    @property
    def capacity(self) -> int: ...
    def entries(self) -> list[_UsageEntry]:
        """Every counter: `("usage", plan, key, (period, index, requests) | None, [(day,
        requests)])` (the current quota period's count, the days kept), `("stage", api, stage,
        throttled, quota_exceeded, cache_hits, cache_misses)`, `("key", key, throttled, quota_exceeded)`."""
    def count(
        self,
        plan: str,
        key: str,
        quota: tuple[str, int, int, int | None] | None,
        now_ms: int,
        days: list[tuple[int, int]] = ...,
        credits: list[tuple[int, int]] = ...,
    ) -> tuple[bool, int | None, int | None, int | None]:
        """Count one request of `key` in plan `plan` at `now_ms` as the gateway does. `quota`:
        `(period, limit, offset, since_ms | None)`; `days`, `credits`: what is durable of the key's
        usage (`[(day, requests)]`, `[(period index, requests)]`). Returns `(admitted, limit,
        remaining, reset_ms)`, the last three None without a quota."""

def quota_period(period: str, epoch_ms: int) -> tuple[int, int, int]:
    """The quota period (DAY, WEEK, MONTH) holding `epoch_ms`: `(index, first day, first day
    after)`, UTC days since 1970-01-01. Weeks start on Sunday. ValueError for another period."""

def quota_limit(
    period: str, limit: int, offset: int, since_ms: int | None, index: int, credit: int = 0
) -> int:
    """Requests a quota allows in its period `index`: `limit`, less `offset` in the initial period
    (the one holding `since_ms`), plus `credit`, never below 0."""

def wall_clock_ms() -> int:
    """The core's wall clock, ms since the epoch: the system's, plus the offset in the file named
    by PORTICO_CLOCK_OFFSET_FILE when set (tests move time with it)."""

def monotonic_ns() -> int:
    """The clock the buckets use (CLOCK_MONOTONIC, shared by all processes on the machine)."""

def install_sighup_reopen() -> None:
    """Make SIGHUP reopen every access-log file of this process (logrotate: rename, then HUP)."""

def http_mapping_problem(status: str | None, key: str, value: str) -> str | None:
    """Why one of an HTTP API integration's parameter mappings cannot be configured (AWS's detail,
    e.g. `Invalid mapping expression specified: VALUE`), or None. `status`: the
    `responseParameters` key it is under; None for `requestParameters`."""

def render_template(source: str, input_json: str) -> tuple[str, str] | None:
    """Render a mapping template with the core's VTL engine (for tests): (output, overrides as a
    JSON object), or None when that engine does not compile it (the Python engine renders it).
    `input_json`: the `TemplateInput` as JSON. Raises ValueError("deferred: ...") when the render
    hands the template to the Python engine, ValueError("failed: ...") when it fails."""

def vtl_compiles(source: str) -> bool:
    """Whether the core's VTL engine compiles `source` (else the Python engine renders it)."""

def check_tls(certificate_file: str, private_key_file: str, truststore_file: str | None = None) -> list[str]:
    """Read a TLS configuration as the edge would serve it. Returns the truststore's warnings (CA
    certificates it leaves out); raises ValueError((which, message)) for a file that cannot be
    used: which is "certificate", "privateKey" or "truststore", message starts with its path."""

@final
class BenchReport:
    """What `bench` measured (the measured window; the warm-up is counted apart). Counts add up:
    scheduled = sent + missed, sent = responses + errors, responses = admitted + throttled + other."""

    @property
    def scheduled(self) -> int:
        """Requests due in the measured window (rate x duration)."""
    @property
    def sent(self) -> int:
        """Requests a connection took before the run ended."""
    @property
    def missed(self) -> int:
        """Requests due but never sent: every connection was still busy when the run ended."""
    @property
    def responses(self) -> int: ...
    @property
    def admitted(self) -> int:
        """2xx responses."""
    @property
    def throttled(self) -> int:
        """429 responses."""
    @property
    def other(self) -> int:
        """Responses of any other status."""
    @property
    def errors(self) -> int:
        """Requests without a response: connect failures, timeouts, broken connections."""
    @property
    def achieved_rps(self) -> float:
        """Responses per second over the measured window."""
    @property
    def cancelled(self) -> bool: ...
    def json(self) -> str:
        """The whole report as one JSON object (the schema of `portico bench --json`)."""
    def text(self) -> str:
        """The report for people, with latency percentiles and a histogram."""

def bench(
    url: str,
    *,
    rate: float,
    duration: float,
    connections: int = 16,
    method: str = "GET",
    headers: list[tuple[str, str]] = ...,
    body: bytes | None = None,
    warmup: float = 0.0,
    timeout: float = 10.0,
    threads: int = 1,
    requests_per_connection: int | None = None,
    limits: list[tuple[float, int]] = ...,
) -> BenchReport:
    """Drive the http:// `url` at `rate` requests/s, open loop, from `connections` keep-alive
    HTTP/1.1 connections, for `warmup` then `duration` seconds; each request's latency counts
    from its scheduled send time. `limits`: the target's `(rate, burst)` throttles, for the
    admitted-against-expected figure. `timeout` bounds each request (connect, send, whole
    response). `requests_per_connection`: close each connection after that many responses and
    open another (spreads a long run over a server's worker processes); None keeps them.
    Blocks without the GIL; failures during the run are counted, never raised.
    Raises ValueError for a plan that cannot run (bad numbers or URL, a host that does not
    resolve) and KeyboardInterrupt when Ctrl-C stops the run."""
