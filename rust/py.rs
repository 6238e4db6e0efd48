//! The only PyO3 file: the typed face of the core (`portico/_core.pyi`). Rust enums become the
//! small integers and strings the stub documents here, and nowhere else.

use crate::cluster::{Cluster, ClusterOptions, FailMode, Spend, Spent};
use crate::edge::Server;
use crate::embed::{self, Completion, Embedded, Fed, Head};
use crate::gateway::{self, GatewayError, Outcome};
use crate::ids::IdGenerator;
use crate::invoke::{Call, Held, Hook, Invoker, Job as CoreJob, LambdaStream, PluginResponse, Replier, Reply, ReplyBody};
use crate::pipeline::responses::ErrorType;
use crate::pipeline::Pipeline;
use crate::router;
use crate::throttle::{self, Buckets, Limit};
use crate::tls::{Loaded, TlsError, TlsFiles, TlsListener};
use crate::usage::{self, Counted, Entry, Labelled, Quota, QuotaPeriod, Tally, UsageBase};
use bytes::Bytes;
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use smallvec::SmallVec;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What `Gateway.decide` decided (`Verdict.kind`).
#[pyclass(eq, eq_int, frozen, skip_from_py_object, module = "portico._core")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// A route matched and the request was admitted.
    Route,
    /// No API, no stage or no route: AWS's 404 (HTTP APIs) or 403 (REST APIs).
    NotFound,
    /// A token bucket refused the request: 429 Too Many Requests.
    Throttled,
    /// A malformed path (invalid percent-encoding): 400.
    BadRequest,
}

impl From<Outcome> for Decided {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Route => Decided::Route,
            Outcome::NotFound => Decided::NotFound,
            Outcome::Throttled => Decided::Throttled,
            Outcome::BadRequest => Decided::BadRequest,
        }
    }
}

/// What an embedded completion carries (`Core.take_completions`' second member).
#[pyclass(eq, eq_int, frozen, skip_from_py_object, module = "portico._core")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionKind {
    /// A response head: `(token, Head, status, headers, body or None)`.
    Head,
    /// A chunk of a response body: `(token, Chunk, data, more)`.
    Chunk,
    /// A response body failed: `(token, Abort, error)`.
    Abort,
    /// A WebSocket frame to send: `(token, Frame, str or bytes)`.
    Frame,
    /// Close the WebSocket connection: `(token, Close, code, reason)`.
    Close,
    /// The pipeline holds the WebSocket connection no more: `(token, SocketEnd)`.
    SocketEnd,
}

/// What became of a body chunk or a WebSocket message the embedded app handed to the core.
#[pyclass(eq, eq_int, frozen, skip_from_py_object, module = "portico._core")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// Queued for the pipeline.
    Queued,
    /// The queue is full: hand it over again soon.
    Full,
    /// The pipeline reads no more (the response was answered, the connection is let go).
    Closed,
}

impl From<Fed> for Handoff {
    fn from(fed: Fed) -> Self {
        match fed {
            Fed::Queued => Handoff::Queued,
            Fed::Full => Handoff::Full,
            Fed::Closed => Handoff::Closed,
        }
    }
}

fn index(i: Option<usize>) -> i64 {
    i.map_or(-1, |i| i as i64)
}

create_exception!(
    portico._core,
    ConfigError,
    PyValueError,
    "Raised by Gateway() / Gateway.swap() when the compiled spec is invalid (e.g. a bad route key)."
);

/// Whether `Gateway.decide` releases the GIL around the pure-Rust decision.
///
/// Measured (2 cores, CPython 3.11, release build, 1,000-route API, best of 5 x 200k calls,
/// `Gateway.decide` with two buckets): kept attached 212 ns/call, detached 251 ns/call; with two
/// Python threads deciding concurrently, attached 244 ns/call wall vs detached 581 ns/call (the
/// GIL hand-off thrashes). The decision is ~0.1 us of Rust, less than a release/re-acquire, so
/// decide keeps the GIL. Compilation (`Gateway()`, `swap()`) is long and does run detached.
const DETACH_DECIDE: bool = false;

fn config_err(e: impl std::fmt::Display) -> PyErr {
    ConfigError::new_err(e.to_string())
}

fn gateway_err(e: GatewayError) -> PyErr {
    match e {
        GatewayError::Config(c) => config_err(c),
        GatewayError::Io(io) => PyOSError::new_err(io.to_string()),
    }
}

/// Outcome of `Gateway.decide`; immutable.
#[pyclass(frozen, module = "portico._core")]
pub struct Verdict {
    kind: Decided,
    api: i64,
    stage: i64,
    route: i64,
    canary: bool,
    path: String,
    names: Option<Arc<[Box<str>]>>,
    params: SmallVec<[(u32, u32); 4]>,
    retry_after_ms: u64,
}

impl Verdict {
    fn from_decision(d: gateway::Decision<'_>) -> Verdict {
        Verdict {
            kind: d.outcome.into(),
            api: index(d.api),
            stage: index(d.stage),
            route: index(d.route),
            canary: d.canary,
            path: d.path.to_owned(),
            names: d.param_names,
            params: d.params,
            retry_after_ms: d.retry_after_ms,
        }
    }
}

#[pymethods]
impl Verdict {
    #[getter]
    fn kind(&self) -> Decided {
        self.kind
    }

    #[getter]
    fn api_index(&self) -> i64 {
        self.api
    }

    #[getter]
    fn stage_index(&self) -> i64 {
        self.stage
    }

    #[getter]
    fn route_index(&self) -> i64 {
        self.route
    }

    #[getter]
    fn canary(&self) -> bool {
        self.canary
    }

    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    #[getter]
    fn path_params<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(names) = &self.names else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        for (n, (s, e)) in names.iter().zip(self.params.iter()) {
            d.set_item(&**n, &self.path[*s as usize..*e as usize])?;
        }
        Ok(Some(d))
    }

    #[getter]
    fn retry_after_ms(&self) -> u64 {
        self.retry_after_ms
    }

    fn __repr__(&self) -> String {
        format!(
            "Verdict(kind=Decided.{:?}, api_index={}, stage_index={}, route_index={}, canary={}, path={:?}, retry_after_ms={})",
            self.kind, self.api, self.stage, self.route, if self.canary { "True" } else { "False" }, self.path, self.retry_after_ms
        )
    }
}

fn cluster_options(url: String, fail: &str, timeout_ms: f64, lease_ms: f64) -> PyResult<ClusterOptions> {
    let fail = FailMode::parse(fail).ok_or_else(|| {
        PyValueError::new_err(format!(
            "redis_fail: {fail:?} is neither \"open\" nor \"closed\""
        ))
    })?;
    if !(timeout_ms.is_finite() && timeout_ms > 0.0 && timeout_ms <= 60_000.0) {
        return Err(PyValueError::new_err(
            "redis_timeout_ms: between 0 and 60000 milliseconds",
        ));
    }
    if !(lease_ms.is_finite() && (0.0..=10_000.0).contains(&lease_ms)) {
        return Err(PyValueError::new_err("redis_lease_ms: between 0 and 10000 milliseconds"));
    }
    Ok(ClusterOptions {
        url,
        fail,
        timeout: Duration::from_secs_f64(timeout_ms / 1000.0),
        lease: Duration::from_secs_f64(lease_ms / 1000.0),
    })
}

/// A compiled, immutable snapshot of all APIs, swapped atomically on reload.
#[pyclass(frozen, module = "portico._core")]
pub struct Gateway {
    // Shared with the edge, which routes and throttles with the same snapshot and buckets.
    inner: Arc<gateway::Gateway>,
}

#[pymethods]
impl Gateway {
    #[new]
    #[pyo3(signature = (
        spec_json, shared_buckets_path=None, buckets=None, shared_usage_path=None,
        redis=None, redis_fail="open", redis_timeout_ms=5.0, redis_lease_ms=20.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        spec_json: &str,
        shared_buckets_path: Option<PathBuf>,
        buckets: Option<PyRef<'_, TokenBuckets>>,
        shared_usage_path: Option<PathBuf>,
        redis: Option<String>,
        redis_fail: &str,
        redis_timeout_ms: f64,
        redis_lease_ms: f64,
    ) -> PyResult<Self> {
        let cluster = match redis {
            None => None,
            Some(url) => Some(cluster_options(url, redis_fail, redis_timeout_ms, redis_lease_ms)?),
        };
        let inner = match buckets {
            Some(b) => {
                if shared_buckets_path.is_some() {
                    return Err(PyValueError::new_err(
                        "give shared_buckets_path or buckets, not both",
                    ));
                }
                let table = b.inner.clone();
                py.detach(|| gateway::Gateway::with_buckets(spec_json, table))
                    .map_err(config_err)?
            }
            None => py
                .detach(|| {
                    gateway::Gateway::new(
                        spec_json,
                        shared_buckets_path.as_deref(),
                        shared_usage_path.as_deref(),
                    )
                })
                .map_err(gateway_err)?,
        };
        let inner = match cluster {
            None => inner,
            Some(options) => inner
                .with_cluster(options)
                .map_err(|e| PyValueError::new_err(e.to_string()))?,
        };
        Ok(Gateway {
            inner: Arc::new(inner),
        })
    }

    /// The bucket table this gateway spends from (shared, not copied).
    #[getter]
    fn buckets(&self) -> TokenBuckets {
        TokenBuckets {
            inner: self.inner.shared_buckets(),
        }
    }

    /// The usage and refusal counters this gateway counts in (shared, not copied).
    #[getter]
    fn usage(&self) -> UsageTable {
        UsageTable {
            inner: self.inner.shared_tally(),
        }
    }

    /// Write out every access-log line handed in so far (at shutdown: no line is lost).
    fn flush_logs(&self, py: Python<'_>) {
        py.detach(|| self.inner.flush_logs());
    }

    fn swap(&self, py: Python<'_>, spec_json: &str) -> PyResult<()> {
        py.detach(|| self.inner.swap(spec_json)).map_err(config_err)
    }

    /// The throttles a request would spend from (route's, account's, then the usage plan's of
    /// `api_key`) as `(rate, burst)`, without spending; None when it reaches no route.
    #[pyo3(signature = (host, method, raw_path, api_key=None))]
    fn route_limits(
        &self,
        host: &str,
        method: &str,
        raw_path: &str,
        api_key: Option<&str>,
    ) -> Option<Vec<(f64, u64)>> {
        let limits = self.inner.snapshot().limits_for(host, method, raw_path, api_key)?;
        Some(limits.iter().map(|l| (l.rate(), l.burst())).collect())
    }

    /// Every stage response cache of this process: dicts of `api_id`, `stage`, `hits`, `misses`
    /// (AWS's CacheHitCount and CacheMissCount), `entries`, `bytes` (what they weigh) and
    /// `capacity` (the byte budget).
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (api_id, stage, stats) in self.inner.cache_stats() {
            let d = PyDict::new(py);
            d.set_item("api_id", api_id)?;
            d.set_item("stage", stage)?;
            d.set_item("hits", stats.hits)?;
            d.set_item("misses", stats.misses)?;
            d.set_item("entries", stats.entries)?;
            d.set_item("bytes", stats.bytes)?;
            d.set_item("capacity", stats.capacity)?;
            out.append(d)?;
        }
        Ok(out)
    }

    fn decide(
        &self,
        py: Python<'_>,
        host: &Bound<'_, PyString>,
        method: &Bound<'_, PyString>,
        raw_path: &Bound<'_, PyString>,
    ) -> Verdict {
        // Strings that cannot be UTF-8 (lone surrogates) never raise: a bad path is a bad
        // request, a bad host names no API, a bad method is not one of the seven verbs.
        let Ok(raw_path) = raw_path.to_str() else {
            return Verdict::from_decision(gateway::Decision::bad_request());
        };
        let host = host.to_str().unwrap_or("");
        let method = method.to_str().unwrap_or("");
        if DETACH_DECIDE {
            py.detach(|| Verdict::from_decision(self.inner.decide(host, method, raw_path)))
        } else {
            Verdict::from_decision(self.inner.decide(host, method, raw_path))
        }
    }
}

/// One link to a cluster's Redis, as a worker holds it (`crate::cluster`), for tests and tools:
/// spends from buckets on Redis with the worker's script and rules.
#[pyclass(frozen, module = "portico._core")]
pub struct ClusterLink {
    cluster: Arc<Cluster>,
    runtime: tokio::runtime::Runtime,
}

#[pymethods]
impl ClusterLink {
    #[new]
    #[pyo3(signature = (url, timeout_ms=50.0))]
    fn new(py: Python<'_>, url: String, timeout_ms: f64) -> PyResult<Self> {
        let options = cluster_options(url, "closed", timeout_ms, 0.0)?;
        let buckets =
            Arc::new(Buckets::anonymous(16).map_err(|e| PyOSError::new_err(e.to_string()))?);
        let tally = Arc::new(Tally::anonymous(16).map_err(|e| PyOSError::new_err(e.to_string()))?);
        let cluster = Cluster::new(options, buckets, tally)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        py.detach(|| runtime.block_on(cluster.connect()))
            .map_err(|e| PyOSError::new_err(format!("redis: {e}")))?;
        Ok(ClusterLink {
            cluster: Arc::new(cluster),
            runtime,
        })
    }

    /// Spend one token from each of `buckets` (`(key, rate, burst)`, keyed as `TokenBuckets`
    /// keys them) in order, at `now_us` on Redis's clock (default: Redis's `TIME`). Returns
    /// `(-1, 0)` when all admitted, else `(index of the refusing bucket, ns to wait)`
    /// (`2**64 - 1`: never); raises OSError when Redis did not decide.
    #[pyo3(signature = (buckets, now_us=None))]
    fn spend(
        &self,
        py: Python<'_>,
        buckets: Vec<(String, f64, i64)>,
        now_us: Option<u64>,
    ) -> PyResult<(i64, u64)> {
        let chain: Vec<Spend> = buckets
            .iter()
            .map(|(key, rate, burst)| Spend {
                hash: throttle::key_hash(key.as_bytes()),
                limit: Limit::new(*rate, *burst),
            })
            .collect();
        match py.detach(|| self.runtime.block_on(self.cluster.spend(&chain, now_us))) {
            Spent::Admitted => Ok((-1, 0)),
            Spent::Refused { index, wait_ns } => Ok((index as i64, wait_ns)),
            Spent::Unavailable => Err(PyOSError::new_err("redis did not decide")),
        }
    }
}

/// Keyed GCRA token buckets (the throttle behind Gateway), exposed for tests and plugins.
#[pyclass(frozen, module = "portico._core")]
pub struct TokenBuckets {
    inner: Arc<Buckets>,
}

#[pymethods]
impl TokenBuckets {
    #[new]
    #[pyo3(signature = (shared_path=None, capacity=throttle::DEFAULT_CAPACITY))]
    fn new(shared_path: Option<PathBuf>, capacity: usize) -> PyResult<Self> {
        let inner = match shared_path {
            Some(p) => Buckets::shared(&p, capacity),
            None => Buckets::anonymous(capacity),
        }
        .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(TokenBuckets {
            inner: Arc::new(inner),
        })
    }

    #[pyo3(signature = (key, rate, burst, now_ns=None))]
    fn try_acquire(&self, key: &str, rate: f64, burst: i64, now_ns: Option<u64>) -> u64 {
        let now = now_ns.unwrap_or_else(throttle::monotonic_ns);
        self.inner.try_acquire(
            throttle::key_hash(key.as_bytes()),
            &Limit::new(rate, burst),
            now,
        )
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

/// Usage plans' usage counts and quotas, and the counters of refused requests, as the gateway
/// counts them (`crate::usage`): read by the usage writer and `/metrics`, driven by tests.
#[pyclass(frozen, module = "portico._core")]
pub struct UsageTable {
    inner: Arc<Tally>,
}

fn period_of(name: &str) -> PyResult<QuotaPeriod> {
    QuotaPeriod::parse(name)
        .ok_or_else(|| PyValueError::new_err(format!("unknown quota period {name:?}")))
}

#[pymethods]
impl UsageTable {
    #[new]
    #[pyo3(signature = (shared_path=None, capacity=usage::DEFAULT_CAPACITY))]
    fn new(shared_path: Option<PathBuf>, capacity: usize) -> PyResult<Self> {
        let inner = match shared_path {
            Some(p) => Tally::shared(&p, capacity),
            None => Tally::anonymous(capacity),
        }
        .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(UsageTable {
            inner: Arc::new(inner),
        })
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// Every counter: `("usage", plan, key, (period, index, requests) | None, [(day, requests)])`,
    /// `("stage", api, stage, throttled, quota_exceeded)`, `("key", key, throttled, quota_exceeded)`.
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let entries = py.detach(|| self.inner.entries());
        let out = PyList::empty(py);
        for e in entries {
            let item = match e {
                Entry::Usage {
                    plan,
                    key,
                    period,
                    days,
                } => {
                    let period = period.map(|(p, i, n)| (p.name(), i, n));
                    ("usage", plan, key, period, days)
                        .into_pyobject(py)?
                        .into_any()
                }
                Entry::Stage {
                    api,
                    stage,
                    throttled,
                    quota_exceeded,
                    cache_hits,
                    cache_misses,
                } => ("stage", api, stage, throttled, quota_exceeded, cache_hits, cache_misses)
                    .into_pyobject(py)?
                    .into_any(),
                Entry::Key {
                    key,
                    throttled,
                    quota_exceeded,
                } => ("key", key, throttled, quota_exceeded)
                    .into_pyobject(py)?
                    .into_any(),
            };
            out.append(item)?;
        }
        Ok(out)
    }

    /// Count one request of `key` in usage plan `plan` at `now_ms` as the gateway does; `quota`
    /// is `(period, limit, offset, since_ms | None)`, `days` and `credits` what is durable of the
    /// key's usage (`[(day, requests)]`, `[(period index, requests)]`). Returns `(admitted,
    /// limit, remaining, reset_ms)`, the last three None without a quota.
    #[pyo3(signature = (plan, key, quota, now_ms, days=Vec::new(), credits=Vec::new()))]
    #[allow(clippy::type_complexity)]
    fn count(
        &self,
        plan: &str,
        key: &str,
        quota: Option<(String, u64, u64, Option<u64>)>,
        now_ms: u64,
        days: Vec<(i64, u64)>,
        credits: Vec<(i64, i64)>,
    ) -> PyResult<(bool, Option<u64>, Option<u64>, Option<u64>)> {
        let quota = match quota {
            None => None,
            Some((period, limit, offset, since)) => {
                let period = period_of(&period)?;
                Some(Quota {
                    period,
                    limit,
                    offset,
                    initial: since.map(|ms| period.index_of_day(usage::day_of(ms))),
                })
            }
        };
        let base = UsageBase {
            days,
            credits: quota
                .map(|q| credits.iter().map(|(i, c)| (q.period, *i, *c)).collect())
                .unwrap_or_default(),
        };
        let label = Labelled::new(usage::usage_label(plan, key));
        Ok(
            match self.inner.count(&label, quota.as_ref(), &base, now_ms) {
                Counted::Admitted(None) => (true, None, None, None),
                Counted::Admitted(Some(s)) => {
                    (true, Some(s.limit), Some(s.remaining), Some(s.reset_ms))
                }
                Counted::Exceeded(s) => (false, Some(s.limit), Some(s.remaining), Some(s.reset_ms)),
            },
        )
    }
}

/// The quota period of `period` (DAY, WEEK, MONTH) holding `epoch_ms`: `(index, first day, first
/// day after)`, days counted from 1970-01-01 (UTC).
#[pyfunction]
pub fn quota_period(period: &str, epoch_ms: i64) -> PyResult<(i64, i64, i64)> {
    let period = period_of(period)?;
    let day = epoch_ms.div_euclid(usage::DAY_MS as i64);
    let index = period.index_of_day(day);
    Ok((index, period.start_day(index), period.end_day(index)))
}

/// Requests a quota allows in its period `index`: `limit`, less `offset` in the initial period (the
/// one holding `since_ms`), plus `credit` (UpdateUsage's), never below 0.
#[pyfunction]
#[pyo3(signature = (period, limit, offset, since_ms, index, credit=0))]
pub fn quota_limit(period: &str, limit: u64, offset: u64, since_ms: Option<u64>, index: i64, credit: i64) -> PyResult<u64> {
    let period = period_of(period)?;
    let quota = Quota {
        period,
        limit,
        offset,
        initial: since_ms.map(|ms| period.index_of_day(usage::day_of(ms))),
    };
    Ok(quota.limit_in(index, credit))
}

/// The core's wall clock in milliseconds since the epoch (a test's, with PORTICO_CLOCK_OFFSET_FILE).
/// Why the core would refuse to serve a route's integration (a spec's `IntegrationSpec` as JSON),
/// or None: what the compiler checks before handing it over, so that one integration the core
/// cannot serve answers 500 instead of failing the whole deployment. The core's own rules
/// (`crate::integrations::compile`), without a stage: stage variables are filled per stage.
#[pyfunction]
pub fn integration_problem(integration: &str, route_key: &str, api_id: &str) -> Option<String> {
    let spec: crate::spec::IntegrationSpec = match serde_json::from_str(integration) {
        Ok(spec) => spec,
        Err(e) => return Some(format!("not an integration: {e}")),
    };
    // Every stage variable it names set to a name-like value, as a stage might set it.
    const MARK: &str = "${stageVariables.";
    let mut variables: Vec<(Box<str>, Box<str>)> = Vec::new();
    let mut rest = integration;
    while let Some(start) = rest.find(MARK) {
        let after = &rest[start + MARK.len()..];
        let name = &after[..after.find('}').unwrap_or(after.len())];
        variables.push((name.into(), "stage-variable".into()));
        rest = after;
    }
    let settings = crate::spec::Settings::default();
    crate::integrations::compile(&spec, route_key, crate::spec::ApiKind::Rest, api_id, &variables, &settings).err()
}

#[pyfunction]
pub fn wall_clock_ms() -> u64 {
    crate::time::wall_clock_ms()
}

/// The route trie on its own, for tests and benchmarks.
#[pyclass(frozen, module = "portico._core")]
pub struct Router {
    inner: Mutex<router::Router>,
}

#[pymethods]
impl Router {
    #[new]
    fn new() -> Self {
        Router {
            inner: Mutex::new(router::Router::new()),
        }
    }

    fn insert(&self, route_key: &str, route_id: i64) -> PyResult<()> {
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.insert(route_key, route_id)
            .map(|_| ())
            .map_err(config_err)
    }

    fn lookup<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        path: &str,
    ) -> PyResult<Option<(i64, Bound<'py, PyDict>)>> {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(m) = r.lookup(method, path) else {
            return Ok(None);
        };
        let entry = &r.routes()[m.route as usize];
        let d = PyDict::new(py);
        for (n, (s, e)) in entry.param_names.iter().zip(m.params.iter()) {
            d.set_item(&**n, &path[*s as usize..*e as usize])?;
        }
        Ok(Some((entry.id, d)))
    }

    fn __len__(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The stage cache's key of a request (`crate::cache::key`), for tests: `parameters` are
/// (location, name) pairs of `cacheKeyParameters` (`querystring`, `multivaluequerystring`,
/// `header`, `multivalueheader`, `path`).
#[pyfunction]
#[pyo3(signature = (parameters, method, resource_path, raw_query, headers, path_params, variant=""))]
#[allow(clippy::too_many_arguments)]
pub fn cache_key<'py>(
    py: Python<'py>,
    parameters: Vec<(String, String)>,
    method: &str,
    resource_path: &str,
    raw_query: &str,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    path_params: Vec<(String, String)>,
    variant: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    use crate::spec::{CacheKeyParameterSpec, ParameterLocation};
    let mut specs = Vec::with_capacity(parameters.len());
    for (location, name) in parameters {
        let location = match location.as_str() {
            "querystring" => ParameterLocation::QueryString,
            "multivaluequerystring" => ParameterLocation::MultiValueQueryString,
            "header" => ParameterLocation::Header,
            "multivalueheader" => ParameterLocation::MultiValueHeader,
            "path" => ParameterLocation::Path,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown parameter location {other:?}"
                )))
            }
        };
        specs.push(CacheKeyParameterSpec { location, name });
    }
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(&name)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let value = http::HeaderValue::from_bytes(&value)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        map.append(name, value);
    }
    let params: Vec<(&str, &str)> = path_params
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let key = crate::cache::key(
        &crate::cache::key_parameters(&specs),
        &crate::cache::KeyRequest {
            method,
            resource_path,
            variant,
            raw_query,
            headers: &map,
            path_params: &params,
        },
    );
    Ok(PyBytes::new(py, &key))
}

/// The clock the buckets use (CLOCK_MONOTONIC, shared by all processes on the machine).
/// Why one of an HTTP API integration's parameter mappings cannot be configured (AWS's detail:
/// `Invalid mapping expression specified: VALUE`, ...), or None. `status`: the
/// `responseParameters` key it is under; None for `requestParameters`.
#[pyfunction]
#[pyo3(signature = (status, key, value))]
pub fn http_mapping_problem(status: Option<&str>, key: &str, value: &str) -> Option<String> {
    crate::integrations::parameter_mapping::problem(status, key, value)
}

/// Render a mapping template with the core's VTL engine (`crate::templates`), for tests:
/// (output, overrides as a JSON object), or None when that engine does not compile it (the
/// Python engine renders it). Raises ValueError("deferred: ...") when the render hands the
/// template to the Python engine, ValueError("failed: ...") when it fails (its time limit).
#[pyfunction]
pub fn render_template(py: Python<'_>, source: &str, input_json: &str) -> PyResult<Option<(String, String)>> {
    thread_local! {
        // Compiled programs by source, as a deployment keeps them (bounded: tests make many).
        static PROGRAMS: std::cell::RefCell<std::collections::HashMap<String, Option<Arc<crate::templates::Program>>>> =
            Default::default();
    }
    let compiled = PROGRAMS.with(|programs| {
        let mut programs = programs.borrow_mut();
        if programs.len() > 512 {
            programs.clear();
        }
        programs
            .entry(source.to_string())
            .or_insert_with(|| crate::templates::compile(source).ok().map(Arc::new))
            .clone()
    });
    let Some(program) = compiled else {
        return Ok(None);
    };
    match py.detach(|| program.render(input_json)) {
        Ok(r) => Ok(Some((r.output, r.overrides))),
        Err(crate::templates::RenderError::Defer(why)) => Err(PyValueError::new_err(format!("deferred: {why}"))),
        Err(crate::templates::RenderError::Failed(why)) => Err(PyValueError::new_err(format!("failed: {why}"))),
    }
}

/// Whether the core's VTL engine compiles `source` (else the Python engine renders it).
#[pyfunction]
pub fn vtl_compiles(source: &str) -> bool {
    crate::templates::compile(source).is_ok()
}

#[pyfunction]
pub fn monotonic_ns() -> u64 {
    throttle::monotonic_ns()
}

#[pyclass(frozen, module = "portico._core")]
pub struct RequestIds {
    inner: IdGenerator,
}

#[pymethods]
impl RequestIds {
    #[new]
    fn new() -> Self {
        RequestIds {
            inner: IdGenerator::new(),
        }
    }

    /// The next `apigw-requestid`: 16 base64 characters, unique per generator.
    fn next(&self) -> String {
        self.inner.request_id()
    }

    /// A new X-Ray trace header value, `Root=1-<epoch seconds>-<96 random bits>` (hex).
    fn trace_id(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.inner.trace_id(now)
    }
}

// ------------------------------------------------------------------------------------------
// The pipeline's runtime, its two front doors and the hand-off to the Python side

/// The core serving a gateway: its runtime thread, the edge (`listen`), the embedded app's door
/// (`submit`), and the calls it hands to the Python side (`next_job`).
#[pyclass(frozen, module = "portico._core")]
pub struct Core {
    server: Server,
    embedded: Arc<Embedded>,
    invoker: Arc<Invoker>,
}

#[pymethods]
impl Core {
    #[new]
    #[pyo3(signature = (gateway, max_threads=256))]
    fn new(gateway: PyRef<'_, Gateway>, max_threads: usize) -> PyResult<Self> {
        let invoker = Arc::new(Invoker::new(max_threads));
        let pipeline = Pipeline::new(gateway.inner.clone(), invoker.clone()).map_err(PyValueError::new_err)?;
        let server = Server::start(Arc::new(pipeline)).map_err(|e| PyOSError::new_err(e.to_string()))?;
        let embedded = Embedded::new().map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(Core {
            server,
            embedded,
            invoker,
        })
    }

    /// Serve the listening socket `fd` (taken over: closed when the core stops) with the edge;
    /// with TLS when given a certificate and its key, and mTLS with a truststore too.
    /// `relay_dir`: the node's directory where its workers' relay sockets live (WebSocket APIs'
    /// `@connections` across workers, `crate::websocket::relay`).
    #[pyo3(signature = (fd, certificate_file=None, private_key_file=None, truststore_file=None, relay_dir=None))]
    fn listen(
        &self,
        fd: i32,
        certificate_file: Option<PathBuf>,
        private_key_file: Option<PathBuf>,
        truststore_file: Option<PathBuf>,
        relay_dir: Option<PathBuf>,
    ) -> PyResult<()> {
        use std::os::fd::FromRawFd;
        // SAFETY: the caller hands over a listening socket it no longer uses (closed on error).
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        let tls = tls_files(certificate_file, private_key_file, truststore_file)?
            .map(|files| TlsListener::new(files).map(Arc::new).map_err(tls_err))
            .transpose()?;
        self.server.listen(listener, tls).map_err(|e| PyOSError::new_err(e.to_string()))?;
        // Without the relay this worker's connections are still served; only other workers'
        // and nodes' cannot be reached from here.
        if let Err(e) = self.server.start_relay(relay_dir) {
            eprintln!("portico: WebSocket relay not started: {e}");
        }
        Ok(())
    }

    /// Start the WebSocket relay without the edge (an embedded app's connections): `@connections`
    /// then reaches connections held by the node's other workers (`relay_dir`, their sockets)
    /// and, in cluster mode, by other nodes. Idempotent.
    #[pyo3(signature = (relay_dir=None))]
    fn start_relay(&self, relay_dir: Option<PathBuf>) -> PyResult<()> {
        self.server.start_relay(relay_dir).map_err(|e| PyOSError::new_err(e.to_string()))
    }

    /// Stop accepting, let requests in flight finish within `grace` seconds, stop the runtime
    /// and the hand-off. Blocks (without the GIL) until done.
    #[pyo3(signature = (grace=10.0))]
    fn stop(&self, py: Python<'_>, grace: f64) {
        py.detach(|| {
            self.server.stop(Duration::from_secs_f64(grace.max(0.0)));
            self.invoker.close();
        });
    }

    // -------------------------------------------------------------- the hand-off

    /// The next call for the Python side, waiting for one without the GIL; None once stopped.
    fn next_job(&self, py: Python<'_>) -> Option<Job> {
        py.detach(|| self.invoker.next_job()).map(Job::new)
    }

    /// For the Python side's supervisor: wait until another thread is wanted (True), or the core
    /// stopped (False).
    fn wait_for_growth(&self, py: Python<'_>) -> bool {
        py.detach(|| self.invoker.wait_for_growth())
    }

    /// (threads, idle threads, queued calls).
    fn invoker_stats(&self) -> (usize, usize, usize) {
        self.invoker.stats()
    }

    // -------------------------------------------------------------- the embedded app's door

    /// Start a request from an ASGI server. Returns its body feed when it has a body.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (token, method, target, headers, client_ip, scheme, http_version, has_body))]
    fn submit(
        &self,
        token: u64,
        method: &str,
        target: &str,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        client_ip: &str,
        scheme: &str,
        http_version: &str,
        has_body: bool,
    ) -> PyResult<Option<BodyFeed>> {
        let head = asgi_head(token, method, target, headers, client_ip, scheme, http_version, has_body);
        let feed = self.embedded.submit(&self.server, head).map_err(PyValueError::new_err)?;
        Ok(feed.map(|tx| BodyFeed { tx: Mutex::new(Some(tx)) }))
    }

    /// Start an ASGI `websocket` scope's opening handshake (a GET of `target` with the
    /// handshake's headers). Its answer comes as a head: 101 accepts the connection (then
    /// `SocketFeed.accepted`), any other status refuses it. Returns where the client's messages go.
    #[pyo3(signature = (token, target, headers, client_ip, scheme, http_version))]
    fn submit_socket(
        &self,
        token: u64,
        target: &str,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        client_ip: &str,
        scheme: &str,
        http_version: &str,
    ) -> PyResult<SocketFeed> {
        // ASGI's websocket scheme is ws or wss.
        let scheme = if scheme == "wss" { "https" } else { scheme };
        let head = asgi_head(token, "GET", target, headers, client_ip, scheme, http_version, false);
        let feed = self.embedded.submit_socket(&self.server, head).map_err(PyValueError::new_err)?;
        Ok(SocketFeed { feed: Mutex::new(feed) })
    }

    /// Ask for the next chunk of a response body.
    fn pull(&self, token: u64) {
        self.embedded.pull(&self.server, token);
    }

    /// Forget a response body nobody will read.
    fn discard(&self, token: u64) {
        self.embedded.discard(token);
    }

    /// The descriptor that is readable while completions wait (for the ASGI server's loop).
    fn completion_fd(&self) -> i32 {
        self.embedded.ready_fd()
    }

    /// What the embedded app waits for, as tuples `(token, CompletionKind, ...)` (see
    /// `CompletionKind` for each kind's members). Never waits.
    fn take_completions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self.embedded.take();
        let out = PyList::empty(py);
        for item in items {
            let tuple = match item {
                Completion::Head {
                    token,
                    status,
                    headers,
                    whole,
                } => {
                    let hs = PyList::empty(py);
                    for (n, v) in headers {
                        hs.append((PyBytes::new(py, &n), PyBytes::new(py, &v)))?;
                    }
                    let whole = match whole {
                        Some(b) => PyBytes::new(py, &b).into_any(),
                        None => py.None().into_bound(py),
                    };
                    PyTuple::new(
                        py,
                        [
                            token.into_pyobject(py)?.into_any(),
                            CompletionKind::Head.into_pyobject(py)?.into_any(),
                            status.into_pyobject(py)?.into_any(),
                            hs.into_any(),
                            whole,
                        ],
                    )?
                }
                Completion::Chunk { token, data, more } => PyTuple::new(
                    py,
                    [
                        token.into_pyobject(py)?.into_any(),
                        CompletionKind::Chunk.into_pyobject(py)?.into_any(),
                        PyBytes::new(py, &data).into_any(),
                        pyo3::types::PyBool::new(py, more).to_owned().into_any(),
                    ],
                )?,
                Completion::Abort { token, error } => PyTuple::new(
                    py,
                    [
                        token.into_pyobject(py)?.into_any(),
                        CompletionKind::Abort.into_pyobject(py)?.into_any(),
                        PyString::new(py, &error).into_any(),
                    ],
                )?,
                Completion::Frame { token, message } => {
                    let data = match &message {
                        WsMessage::Text(text) => PyString::new(py, text.as_str()).into_any(),
                        other => PyBytes::new(py, &other.clone().into_data()).into_any(),
                    };
                    PyTuple::new(py, [token.into_pyobject(py)?.into_any(), CompletionKind::Frame.into_pyobject(py)?.into_any(), data])?
                }
                Completion::Close { token, code, reason } => PyTuple::new(
                    py,
                    [
                        token.into_pyobject(py)?.into_any(),
                        CompletionKind::Close.into_pyobject(py)?.into_any(),
                        code.into_pyobject(py)?.into_any(),
                        PyString::new(py, &reason).into_any(),
                    ],
                )?,
                Completion::SocketEnd { token } => {
                    PyTuple::new(py, [token.into_pyobject(py)?.into_any(), CompletionKind::SocketEnd.into_pyobject(py)?.into_any()])?
                }
            };
            out.append(tuple)?;
        }
        Ok(out)
    }
}

#[allow(clippy::too_many_arguments)]
fn asgi_head(
    token: u64,
    method: &str,
    target: &str,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    client_ip: &str,
    scheme: &str,
    http_version: &str,
    has_body: bool,
) -> Head {
    Head {
        token,
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        client_ip: client_ip.parse().unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
        scheme: if scheme == "https" { "https" } else { "http" },
        // Granian says "1" for HTTP/1.0 (ASGI servers differ); "1.1" is HTTP/1.1.
        version: match http_version {
            "1.0" | "1" => http::Version::HTTP_10,
            "2" | "2.0" => http::Version::HTTP_2,
            _ => http::Version::HTTP_11,
        },
        has_body,
    }
}

/// Python's side of an embedded WebSocket connection (`Core.submit_socket`): says when the ASGI
/// server accepted it and feeds the client's messages to the connection the pipeline holds.
#[pyclass(frozen, module = "portico._core")]
pub struct SocketFeed {
    feed: Mutex<embed::SocketFeed>,
}

#[pymethods]
impl SocketFeed {
    /// The ASGI server sent the 101 (`websocket.accept` is done): the connection is open.
    fn accepted(&self) {
        if let Some(tx) = self.feed.lock().unwrap_or_else(|e| e.into_inner()).accepted.take() {
            let _ = tx.send(());
        }
    }

    /// A text message: queued, full (hand it over again soon), or closed (the connection is held
    /// no more).
    fn text(&self, text: String) -> Handoff {
        self.feed.lock().unwrap_or_else(|e| e.into_inner()).message(WsMessage::Text(text.into())).into()
    }

    /// The ASGI server sent one of the frames (`Frame` completions) handed over: room
    /// for another (the core hands over a bounded number unsent).
    fn sent(&self) {
        self.feed.lock().unwrap_or_else(|e| e.into_inner()).window.sent();
    }

    /// A binary message (same answers as `text`).
    fn binary(&self, data: &[u8]) -> Handoff {
        let message = WsMessage::Binary(Bytes::copy_from_slice(data));
        self.feed.lock().unwrap_or_else(|e| e.into_inner()).message(message).into()
    }

    /// The client closed the connection with `code` (None: a close frame without one) and
    /// `reason`; or, `abnormal`, it was lost (ASGI's 1006) and no close frame came.
    #[pyo3(signature = (code, reason, abnormal=false))]
    fn closed(&self, code: Option<u16>, reason: &str, abnormal: bool) {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        let mut feed = self.feed.lock().unwrap_or_else(|e| e.into_inner());
        if !abnormal {
            let frame = code.map(|code| CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_owned().into(),
            });
            let _ = feed.send(Ok(WsMessage::Close(frame)));
        }
        // Nothing follows a close; a lost connection is the end of the stream, and frames go
        // nowhere (after a close frame, the app sends on until the core lets go: the close is
        // read first, as at the edge).
        feed.accepted.take();
        feed.incoming.take();
        if abnormal {
            feed.window.close();
        }
    }
}

/// Where an embedded request's body goes, chunk by chunk.
#[pyclass(frozen, module = "portico._core")]
pub struct BodyFeed {
    tx: Mutex<Option<tokio::sync::mpsc::Sender<Result<Bytes, String>>>>,
}

#[pymethods]
impl BodyFeed {
    /// Queue a chunk: queued, full (hand it over again soon), or closed (the pipeline no longer
    /// reads the body).
    fn send(&self, chunk: &[u8]) -> Handoff {
        use tokio::sync::mpsc::error::TrySendError;
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = guard.as_ref() else {
            return Handoff::Closed;
        };
        match tx.try_send(Ok(Bytes::copy_from_slice(chunk))) {
            Ok(()) => Handoff::Queued,
            Err(TrySendError::Full(_)) => Handoff::Full,
            Err(TrySendError::Closed(_)) => Handoff::Closed,
        }
    }

    /// The client's body failed (it went away): the pipeline's read of it fails.
    fn fail(&self, why: &str) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.try_send(Err(why.to_owned()));
        }
    }

    /// The body is complete.
    fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// One call for the Python side (see `portico/serve/user_code.py`), answered once.
#[pyclass(frozen, module = "portico._core")]
pub struct Job {
    call: Mutex<Option<Call>>,
    replier: Mutex<Option<Replier>>,
    kind: &'static str,
    /// A Lambda call of a streaming integration: a generator handler may stream its answer.
    streams: bool,
}

impl Job {
    fn new(job: CoreJob) -> Job {
        let (call, replier) = job.into_parts();
        let kind = match &call {
            Call::Lambda(_) | Call::LambdaStream(_) => "lambda",
            Call::Render(_) => "render",
            Call::Plugin { hook: Hook::OnRequest, .. } => "on_request",
            Call::Plugin { hook: Hook::OnResponse, .. } => "on_response",
        };
        Job {
            streams: matches!(call, Call::LambdaStream(_)),
            call: Mutex::new(Some(call)),
            replier: Mutex::new(Some(replier)),
            kind,
        }
    }

    fn answer(&self, reply: Reply) -> PyResult<()> {
        match self.replier.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(r) => {
                r.reply(reply);
                Ok(())
            }
            None => Err(PyRuntimeError::new_err("this job is answered already")),
        }
    }
}

fn text_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
}

#[pymethods]
impl Job {
    /// "lambda", "render", "on_request" or "on_response".
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }

    /// Whether a Lambda call's integration streams (`responseTransferMode: STREAM`): a handler
    /// that returns a generator answers with `reply_lambda_stream`.
    #[getter]
    fn streams(&self) -> bool {
        self.streams
    }

    /// A Lambda call's arguments: (function uri, event JSON, timeout ms, region, account id,
    /// invocation id). Taken once.
    #[allow(clippy::type_complexity)]
    fn lambda_call<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(String, Bound<'py, PyBytes>, u64, String, String, String)> {
        match self.call.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(Call::Lambda(c) | Call::LambdaStream(c)) => Ok((
                c.uri.into(),
                PyBytes::new(py, &c.event),
                c.timeout_ms,
                c.region.into(),
                c.account_id.into(),
                c.invocation_id,
            )),
            _ => Err(PyRuntimeError::new_err("not a Lambda call, or taken already")),
        }
    }

    /// A plugin call's request (a dict) and, for on_response, the response as
    /// (status, [(name, value)], body). Taken once.
    #[allow(clippy::type_complexity)]
    fn plugin_call<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyDict>, Option<(u16, Vec<(String, String)>, Bound<'py, PyBytes>)>)> {
        let Some(Call::Plugin { request: r, response, .. }) = self.call.lock().unwrap_or_else(|e| e.into_inner()).take()
        else {
            return Err(PyRuntimeError::new_err("not a plugin call, or taken already"));
        };
        let d = PyDict::new(py);
        d.set_item("request_id", &r.request_id)?;
        d.set_item("method", &r.method)?;
        d.set_item("raw_path", &r.raw_path)?;
        d.set_item("path", &r.path)?;
        d.set_item("raw_query", &r.raw_query)?;
        let headers = PyList::empty(py);
        for (n, v) in &r.headers {
            headers.append((PyBytes::new(py, n), PyBytes::new(py, v)))?;
        }
        d.set_item("raw_headers", headers)?;
        d.set_item("host", &r.host)?;
        d.set_item("scheme", r.scheme)?;
        d.set_item("protocol", r.protocol)?;
        d.set_item("client_ip", &r.client_ip)?;
        d.set_item("time_epoch_ms", r.time_epoch_ms)?;
        d.set_item("account_id", &r.account_id)?;
        d.set_item("api_id", &r.api_id)?;
        d.set_item("api_name", &r.api_name)?;
        d.set_item("api_kind", r.api_kind)?;
        d.set_item("stage", &r.stage)?;
        d.set_item("deployment_id", &r.deployment_id)?;
        d.set_item("is_canary", r.is_canary)?;
        d.set_item("stage_variables", r.stage_variables.iter().cloned().collect::<std::collections::HashMap<_, _>>())?;
        d.set_item("route_key", &r.route_key)?;
        d.set_item("resource_path", &r.resource_path)?;
        d.set_item(
            "path_params",
            if r.path_params.is_empty() && r.route_key.is_empty() {
                None
            } else {
                Some(r.path_params.iter().cloned().collect::<std::collections::HashMap<_, _>>())
            },
        )?;
        let response = match response {
            Some(PluginResponse {
                status,
                headers,
                body: ReplyBody::Bytes(body),
            }) => Some((status, headers, PyBytes::new(py, &body))),
            _ => None,
        };
        Ok((d, response))
    }

    /// The handler's result, serialized as JSON.
    fn reply_lambda(&self, result: &[u8]) -> PyResult<()> {
        self.answer(Reply::Lambda(Ok(result.to_vec())))
    }

    /// The function failed: the gateway response type (`FUNCTION_ERROR`, or
    /// `API_CONFIGURATION_ERROR` for a function that is not registered), why (for the log) and,
    /// when the handler raised, Lambda's `errorMessage` (`str(exception)`) and the error as
    /// Lambda's Invoke returns it (JSON: `errorMessage`, `errorType`, `requestId`, `stackTrace`).
    #[pyo3(signature = (error_type, message, error_message=None, error_payload=None))]
    fn reply_lambda_error(
        &self,
        error_type: &str,
        message: String,
        error_message: Option<String>,
        error_payload: Option<&[u8]>,
    ) -> PyResult<()> {
        let error = error_type.parse::<ErrorType>().map_err(PyValueError::new_err)?;
        self.answer(Reply::Lambda(Err(crate::invoke::LambdaError {
            error,
            detail: message,
            error_message,
            error_payload: error_payload.map(<[u8]>::to_vec),
        })))
    }

    /// A render call's arguments: (template source, TemplateInput JSON). Taken once.
    fn render_call<'py>(&self, py: Python<'py>) -> PyResult<(String, Bound<'py, PyBytes>)> {
        match self.call.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(Call::Render(c)) => Ok((c.source.to_string(), PyBytes::new(py, &c.input))),
            _ => Err(PyRuntimeError::new_err("not a render call, or taken already")),
        }
    }

    /// The template's output and its overrides (a JSON object).
    fn reply_render(&self, output: String, overrides: &[u8]) -> PyResult<()> {
        self.answer(Reply::Rendered(Ok(crate::invoke::RenderedTemplate {
            output,
            overrides: overrides.to_vec(),
        })))
    }

    /// The template could not be compiled or rendered: why (logged by the core with the
    /// template's API, method and content type).
    fn reply_render_error(&self, message: String) -> PyResult<()> {
        self.answer(Reply::Rendered(Err(message)))
    }

    /// on_request returned None: the pipeline goes on.
    fn reply_continue(&self) -> PyResult<()> {
        self.answer(Reply::Continue)
    }

    /// Answer with a whole response.
    fn reply_response(&self, status: u16, headers: Vec<(String, String)>, body: &[u8]) -> PyResult<()> {
        self.answer(Reply::Respond(PluginResponse {
            status,
            headers: text_headers(headers),
            body: ReplyBody::Bytes(Bytes::copy_from_slice(body)),
        }))
    }

    /// Answer with a response whose body follows through the returned sink.
    fn reply_stream(&self, status: u16, headers: Vec<(String, String)>) -> PyResult<StreamSink> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        self.answer(Reply::Respond(PluginResponse {
            status,
            headers: text_headers(headers),
            body: ReplyBody::Stream(rx),
        }))?;
        Ok(StreamSink {
            tx: Mutex::new(Some(tx)),
            held: Mutex::new(None),
        })
    }

    /// A streaming handler's answer: its metadata (JSON: `statusCode`, `headers`,
    /// `multiValueHeaders`, `cookies`); its body follows through the returned sink. The call
    /// counts against its function's concurrency until the sink is closed.
    fn reply_lambda_stream(&self, metadata: &[u8]) -> PyResult<StreamSink> {
        if !self.streams {
            return Err(PyRuntimeError::new_err("not a streaming Lambda call"));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHUNKS);
        let reply = Reply::LambdaStream(LambdaStream {
            metadata: metadata.to_vec(),
            body: rx,
        });
        let held = match self.replier.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(r) => r.reply_holding(reply),
            None => return Err(PyRuntimeError::new_err("this job is answered already")),
        };
        Ok(StreamSink {
            tx: Mutex::new(Some(tx)),
            held: Mutex::new(Some(held)),
        })
    }

    /// A plugin raised: the gateway response of `error_type` (`INTEGRATION_FAILURE` for an
    /// unexpected exception), and why, for the log.
    fn reply_failed(&self, error_type: &str, message: String) -> PyResult<()> {
        let error = error_type.parse::<ErrorType>().map_err(PyValueError::new_err)?;
        self.answer(Reply::Failed(error, message))
    }
}

/// Chunks of a streamed response queued ahead of the client (each at most `STREAM_SLICE`
/// bytes): past them, the sender waits for the client. A slow client holds the producer back
/// with at most 1 MiB buffered.
const STREAM_CHUNKS: usize = 16;
const STREAM_SLICE: usize = 64 * 1024;

/// The body of a streamed response from Python.
#[pyclass(frozen, module = "portico._core")]
pub struct StreamSink {
    tx: Mutex<Option<tokio::sync::mpsc::Sender<Result<Bytes, String>>>>,
    /// A streaming Lambda call's place in its function's concurrency, given back at the end.
    held: Mutex<Option<Held>>,
}

impl StreamSink {
    fn finish(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

#[pymethods]
impl StreamSink {
    /// Send a chunk (waits, without the GIL, while the client is slow); False when the client
    /// went away (or the response was cut: the stream passed a limit).
    fn send(&self, py: Python<'_>, chunk: &[u8]) -> bool {
        let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return false;
        };
        let chunk = Bytes::copy_from_slice(chunk);
        py.detach(|| {
            let mut at = 0;
            while at < chunk.len() {
                let end = chunk.len().min(at + STREAM_SLICE);
                if tx.blocking_send(Ok(chunk.slice(at..end))).is_err() {
                    return false;
                }
                at = end;
            }
            !tx.is_closed()
        })
    }

    /// The body is complete.
    fn close(&self) {
        self.finish();
    }

    /// The body failed: the connection is aborted, never ended as if complete.
    fn abort(&self, py: Python<'_>, why: String) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            py.detach(|| {
                let _ = tx.blocking_send(Err(why));
            });
        }
        self.finish();
    }
}

fn tls_files(
    certificate: Option<PathBuf>,
    private_key: Option<PathBuf>,
    truststore: Option<PathBuf>,
) -> PyResult<Option<TlsFiles>> {
    match (certificate, private_key) {
        (Some(certificate), Some(private_key)) => Ok(Some(TlsFiles {
            certificate,
            private_key,
            truststore,
        })),
        (None, None) if truststore.is_none() => Ok(None),
        _ => Err(PyValueError::new_err((
            "certificate",
            "TLS needs a certificate file and its private key file (and a truststore only with them)",
        ))),
    }
}

/// ValueError((which, message)): which file (`certificate`, `privateKey`, `truststore`), and
/// what is wrong with it, its path first.
fn tls_err(e: TlsError) -> PyErr {
    PyValueError::new_err((e.file.name(), e.to_string()))
}

/// Read and check a TLS configuration as the edge would serve it; returns the truststore's
/// warnings (certificates left out). Raises ValueError((which, message)).
#[pyfunction]
#[pyo3(signature = (certificate_file, private_key_file, truststore_file=None))]
pub fn check_tls(
    certificate_file: PathBuf,
    private_key_file: PathBuf,
    truststore_file: Option<PathBuf>,
) -> PyResult<Vec<String>> {
    let files = TlsFiles {
        certificate: certificate_file,
        private_key: private_key_file,
        truststore: truststore_file,
    };
    Loaded::read(&files).map(|loaded| loaded.warnings).map_err(tls_err)
}

/// Make SIGHUP reopen every access-log file of this process (logrotate's rename, then HUP).
#[pyfunction]
pub fn install_sighup_reopen() -> PyResult<()> {
    crate::access_log::install_sighup_reopen().map_err(|e| PyOSError::new_err(e.to_string()))
}

/// What `bench` measured; immutable. `json()` and `text()` are the report's two forms.
#[pyclass(frozen, module = "portico._core")]
pub struct BenchReport {
    inner: crate::bench::Report,
}

#[pymethods]
impl BenchReport {
    #[getter]
    fn scheduled(&self) -> u64 {
        self.inner.scheduled
    }

    #[getter]
    fn sent(&self) -> u64 {
        self.inner.sent
    }

    #[getter]
    fn missed(&self) -> u64 {
        self.inner.missed()
    }

    #[getter]
    fn responses(&self) -> u64 {
        self.inner.responses()
    }

    #[getter]
    fn admitted(&self) -> u64 {
        self.inner.admitted()
    }

    #[getter]
    fn throttled(&self) -> u64 {
        self.inner.throttled()
    }

    #[getter]
    fn other(&self) -> u64 {
        self.inner.other()
    }

    #[getter]
    fn errors(&self) -> u64 {
        self.inner.errors()
    }

    #[getter]
    fn achieved_rps(&self) -> f64 {
        self.inner.achieved_rps()
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.cancelled
    }

    /// The whole report as one JSON object (the schema `portico bench --json` prints).
    fn json(&self) -> String {
        self.inner.to_json().to_string()
    }

    /// The report for people: rates, counts, the limit check, percentiles and a histogram.
    fn text(&self) -> String {
        self.inner.render_text()
    }
}

/// How often a running `bench` looks for Ctrl-C (the run itself goes on without the GIL).
const BENCH_SIGNAL_CHECK: Duration = Duration::from_millis(100);

fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("{what}: expected seconds >= 0")))
}

/// Drive `url` at `rate` requests/s (open loop) from `connections` connections for `duration`
/// seconds after `warmup` seconds; see `portico bench`. Blocks without the GIL; Ctrl-C stops
/// the run early (the report says so) and raises KeyboardInterrupt.
#[pyfunction]
#[pyo3(signature = (url, *, rate, duration, connections=16, method="GET", headers=Vec::new(), body=None,
                    warmup=0.0, timeout=10.0, threads=1, requests_per_connection=None, limits=Vec::new()))]
#[allow(clippy::too_many_arguments)]
pub fn bench(
    py: Python<'_>,
    url: &str,
    rate: f64,
    duration: f64,
    connections: usize,
    method: &str,
    headers: Vec<(String, String)>,
    body: Option<&[u8]>,
    warmup: f64,
    timeout: f64,
    threads: usize,
    requests_per_connection: Option<u64>,
    limits: Vec<(f64, u64)>,
) -> PyResult<BenchReport> {
    let target = crate::bench::Target::parse(url).map_err(PyValueError::new_err)?;
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| PyValueError::new_err(format!("{method:?}: not an HTTP method")))?;
    let headers = headers
        .into_iter()
        .map(|(name, value)| {
            let n = http::HeaderName::from_bytes(name.as_bytes());
            let v = http::HeaderValue::from_str(&value);
            match (n, v) {
                (Ok(n), Ok(v)) => Ok((n, v)),
                _ => Err(PyValueError::new_err(format!(
                    "{name:?}: not a valid header"
                ))),
            }
        })
        .collect::<PyResult<Vec<_>>>()?;
    let plan = crate::bench::Plan {
        target,
        method,
        headers,
        body: Bytes::copy_from_slice(body.unwrap_or_default()),
        rate,
        duration: seconds(duration, "duration")?,
        warmup: seconds(warmup, "warmup")?,
        connections,
        threads,
        timeout: seconds(timeout, "timeout")?,
        requests_per_connection,
        limits: limits
            .into_iter()
            .map(|(rate, burst)| crate::bench::ConfiguredLimit { rate, burst })
            .collect(),
    };
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    // Waited on without the GIL, from a closure that must be Sync.
    let done_rx = Mutex::new(done_rx);
    let flag = cancel.clone();
    std::thread::Builder::new()
        .name("portico-bench".into())
        .spawn(move || {
            let _ = done_tx.send(crate::bench::run(plan, &flag));
        })
        .map_err(|e| PyOSError::new_err(e.to_string()))?;
    let mut interrupted = None;
    let outcome = loop {
        match py.detach(|| {
            done_rx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .recv_timeout(BENCH_SIGNAL_CHECK)
        }) {
            Ok(outcome) => break outcome,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if interrupted.is_none() {
                    if let Err(e) = py.check_signals() {
                        cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                        interrupted = Some(e);
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err(
                    "the load generator stopped without a report",
                ))
            }
        }
    };
    if let Some(e) = interrupted {
        return Err(e);
    }
    outcome
        .map(|inner| BenchReport { inner })
        .map_err(PyValueError::new_err)
}
