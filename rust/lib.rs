//! Portico's hot path: route trie (`router`), shared token buckets (`throttle`) and the
//! per-request decision (`gateway`), exposed to Python as `portico._core` by `py`.

pub mod edge;
pub mod gateway;
pub mod http1;
pub mod ids;
pub mod lambda;
mod py;
pub mod router;
pub mod throttle;

use pyo3::prelude::*;

/// Rust core of Portico: routing, throttling and the per-request decision.
#[pymodule]
mod _core {
    #[pymodule_export]
    const ROUTE: u8 = crate::gateway::ROUTE;
    #[pymodule_export]
    const NOT_FOUND: u8 = crate::gateway::NOT_FOUND;
    #[pymodule_export]
    const THROTTLED: u8 = crate::gateway::THROTTLED;
    #[pymodule_export]
    const BAD_REQUEST: u8 = crate::gateway::BAD_REQUEST;

    #[pymodule_export]
    use crate::py::{
        monotonic_ns, parse_response_head, ConfigError, Edge, Gateway, RequestIds, Router, TokenBuckets,
        Verdict,
    };
}
