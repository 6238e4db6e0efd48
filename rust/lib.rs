//! Portico's core: the request pipeline and everything it serves without Python.
//!
//! - `spec`: the typed contract Python's compiler fills in (one `Spec` per deployment).
//! - `gateway`: the compiled snapshot; API and stage selection, routing, throttling.
//! - `pipeline`: the chain of phases (limits, CORS, gateway responses, access log, ...).
//! - `integrations`: `HTTP_PROXY`, `MOCK`, and `AWS_PROXY` (events built here, handlers run by
//!   Python through `invoke`); `lambda`: the proxy event and response formats.
//! - `edge` (the runtime and the public listener) and `embed` (the embedded ASGI app's door): the
//!   two front doors over the same pipeline.
//! - `cache`: stages' response caches (REST APIs).
//! - `cluster`: cluster mode, the buckets and usage counts several nodes share through Redis.
//! - `router`, `throttle`, `usage`, `ids`, `access_log`, `json`: the building blocks; `py`: the only PyO3
//!   code.
//! - `bench`: the open-loop load generator behind `portico bench`.

pub mod access_log;
pub mod auth;
pub mod bench;
pub mod cache;
pub mod cluster;
pub mod edge;
pub mod embed;
pub mod gateway;
pub mod ids;
pub mod integrations;
pub mod invoke;
pub mod json;
pub mod jsonpath;
pub mod lambda;
pub mod pipeline;
mod py;
pub mod router;
pub mod spec;
pub mod templates;
pub mod throttle;
pub mod time;
pub mod tls;
pub mod usage;
pub mod websocket;

use pyo3::prelude::*;

/// Rust core of Portico.
#[pymodule]
mod _core {
    #[pymodule_export]
    use crate::py::{
        bench, cache_key, check_tls, http_mapping_problem, install_sighup_reopen, integration_problem, monotonic_ns,
        quota_limit, quota_period, render_template, vtl_compiles, wall_clock_ms, BenchReport, BodyFeed, ClusterLink,
        CompletionKind, ConfigError, Core, Decided, Gateway, Handoff, Job, RequestIds, Router, SocketFeed, StreamSink,
        TokenBuckets, UsageTable, Verdict,
    };
}
