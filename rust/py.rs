//! The only PyO3 file: thin wrappers around the pure-Rust router, buckets and gateway.

use crate::edge;
use crate::gateway::{self, GatewayError};
use crate::http1;
use crate::ids::IdGenerator;
use crate::router;
use crate::throttle::{self, Buckets, Limit};
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use smallvec::SmallVec;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
    kind: u8,
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
            kind: d.kind,
            api: d.api,
            stage: d.stage,
            route: d.route,
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
    fn kind(&self) -> u8 {
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
        let kind = match self.kind {
            gateway::ROUTE => "ROUTE",
            gateway::NOT_FOUND => "NOT_FOUND",
            gateway::THROTTLED => "THROTTLED",
            _ => "BAD_REQUEST",
        };
        format!(
            "Verdict(kind={kind}, api_index={}, stage_index={}, route_index={}, canary={}, path={:?}, retry_after_ms={})",
            self.api, self.stage, self.route, if self.canary { "True" } else { "False" }, self.path, self.retry_after_ms
        )
    }
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
    #[pyo3(signature = (spec_json, shared_buckets_path=None, buckets=None))]
    fn new(
        py: Python<'_>,
        spec_json: &str,
        shared_buckets_path: Option<PathBuf>,
        buckets: Option<PyRef<'_, TokenBuckets>>,
    ) -> PyResult<Self> {
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
                .detach(|| gateway::Gateway::new(spec_json, shared_buckets_path.as_deref()))
                .map_err(gateway_err)?,
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

    fn swap(&self, py: Python<'_>, spec_json: &str) -> PyResult<()> {
        py.detach(|| self.inner.swap(spec_json)).map_err(config_err)
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

/// The clock the buckets use (CLOCK_MONOTONIC, shared by all processes on the machine).
#[pyfunction]
pub fn monotonic_ns() -> u64 {
    throttle::monotonic_ns()
}

/// Parse an HTTP/1.x response head at the start of `buf` (the upstream client's one call per head).
/// None while incomplete, else (bytes consumed, status, minor version, [(lower-case name, latin-1
/// value), ...], Content-Length or -1, framing flags); ValueError when malformed.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn parse_response_head<'py>(
    py: Python<'py>,
    buf: &[u8],
) -> PyResult<Option<(usize, u16, u8, Bound<'py, PyList>, i64, u8)>> {
    let parsed = http1::with_response_head(buf, |head, headers| -> PyResult<_> {
        let framing =
            http1::Framing::of(headers).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let list = PyList::empty(py);
        for h in headers {
            let name = if h.name.bytes().any(|b| b.is_ascii_uppercase()) {
                PyString::new(py, &h.name.to_ascii_lowercase())
            } else {
                PyString::new(py, h.name)
            };
            let value = match std::str::from_utf8(h.value) {
                Ok(text) if h.value.is_ascii() => PyString::new(py, text),
                _ => PyString::new(py, &h.value.iter().map(|&b| b as char).collect::<String>()),
            };
            list.append((name, value))?;
        }
        // A Content-Length beyond i64 was refused by Framing::of (19 digits at most fit).
        let length = framing
            .content_length
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        Ok((
            head.consumed,
            head.status,
            head.minor,
            list,
            length,
            framing.flags(),
        ))
    });
    match parsed {
        Ok(Some(result)) => result.map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(PyValueError::new_err(e.to_string())),
    }
}

/// Request ids and trace ids for one worker (see `ids.rs`).
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

/// The edge (see `edge.rs`): serves the public listener on a thread of its own, answering
/// plugin-free HTTP_PROXY and MOCK routes, 404s and 429s itself and passing the rest to the
/// Python pipeline listening on the Unix socket `backend`. Stops when garbage-collected.
#[pyclass(frozen, module = "portico._core")]
pub struct Edge {
    inner: edge::Edge,
}

#[pymethods]
impl Edge {
    /// `listener_fd`: a bound, listening TCP socket the edge takes over (and closes).
    #[new]
    fn new(
        listener_fd: i32,
        backend: PathBuf,
        secret: String,
        gateway: PyRef<'_, Gateway>,
        table_json: &str,
    ) -> PyResult<Self> {
        if listener_fd < 0 {
            return Err(PyValueError::new_err("listener_fd must be a socket descriptor"));
        }
        let table = edge::Table::from_json(gateway.inner.clone(), table_json).map_err(PyValueError::new_err)?;
        // SAFETY: the caller hands over a listening socket it no longer uses (`socket.detach()`).
        let listener = unsafe { <std::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(listener_fd) };
        let inner = edge::Edge::start(listener, backend, secret, table)
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(Edge { inner })
    }

    /// Serve `gateway` and `table_json` from now on (a reload).
    fn publish(&self, gateway: PyRef<'_, Gateway>, table_json: &str) -> PyResult<()> {
        let table = edge::Table::from_json(gateway.inner.clone(), table_json).map_err(PyValueError::new_err)?;
        self.inner.publish(table);
        Ok(())
    }
}
