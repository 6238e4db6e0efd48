//! `portico bench`: an open-loop HTTP/1.1 load generator for measuring throttling and latency.
//!
//! Open loop: request `i` is due at `start + i / rate` whatever the server does; a pacer thread
//! hands out one permit per due request (a FIFO semaphore), and whichever of the `connections`
//! is free takes it. A request that waits for a free connection is late, and its latency is
//! still counted from its scheduled send time (no coordinated omission: a stalled server shows
//! in the percentiles as the waits it caused, not as requests that were never sent). The time
//! from the actual send is kept apart as the service time. Requests due in the window that are
//! still waiting for a free connection when it ends are sent late for up to one request timeout
//! more; any still waiting then are counted as missed.
//!
//! The pacer sleeps on the OS clock (tens of microseconds late at most) rather than on tokio's
//! millisecond timer wheel, whose lateness would show as latency. Connections are opened before
//! the clock starts. A warm-up (same rate, same connections, counted apart) may come first:
//! its admitted count says how many of a throttle's burst tokens are left when measuring starts.
//!
//! Responses are counted by status (2xx admitted, 429 throttled, others); failures never stop
//! the run and are counted by kind (connect, timeout, io). Pure Rust; `py.rs` exposes `run`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{HeaderName, HeaderValue, HOST};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

/// Latencies are recorded in microseconds, from 1 us to an hour, to 3 significant digits.
const HIGHEST_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;
/// The pacer wakes at least this often to notice a cancellation.
const PACER_MAX_SLEEP: Duration = Duration::from_millis(20);
/// How often the pacer looks whether the requests due are all sent, after the window.
const DRAIN_POLL: Duration = Duration::from_millis(1);
/// Width of the text histogram's bars.
const BAR_WIDTH: usize = 40;

/// A throttle the target is configured with (or enforces), for the admitted-vs-limit figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfiguredLimit {
    pub rate: f64,
    pub burst: u64,
}

/// Where requests go: an `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    /// `host:port` as written in the URL (the Host header unless one is given).
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub path_and_query: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url:?}: not a URL ({e})"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "{url:?}: {other}:// is not supported, only http://"
                ))
            }
            None => return Err(format!("{url:?}: give an absolute http:// URL")),
        }
        let authority = uri.authority().ok_or_else(|| format!("{url:?}: no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Target {
            url: url.to_owned(),
            authority: authority.as_str().to_owned(),
            host,
            port: authority.port_u16().unwrap_or(80),
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        })
    }
}

/// What to send, how fast, for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub method: http::Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Offered rate, requests/s.
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    /// Threads of the load generator (each a single-threaded runtime with its share of the
    /// connections).
    pub threads: usize,
    /// Bound on one request: connecting, sending and reading the whole response.
    pub timeout: Duration,
    /// Close a connection after this many responses and open a new one (so that the requests
    /// of a long run spread over a server's worker processes as new connections do); None:
    /// keep each connection for the whole run.
    pub requests_per_connection: Option<u64>,
    pub limits: Vec<ConfiguredLimit>,
}

impl Plan {
    fn validate(&self) -> Result<(), String> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err("the rate must be a number of requests/s above 0".into());
        }
        if self.duration.is_zero() {
            return Err("the duration must be above 0".into());
        }
        if self.connections == 0 || self.threads == 0 {
            return Err("connections and threads must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return Err("the timeout must be above 0".into());
        }
        if self.requests_per_connection == Some(0) {
            return Err("requests per connection must be at least 1".into());
        }
        for l in &self.limits {
            if !(l.rate.is_finite() && l.rate >= 0.0) {
                return Err("a limit's rate must be a number >= 0".into());
            }
        }
        Ok(())
    }
}

/// The open-loop schedule: request `i` is due `i / rate` seconds after the start; the first
/// `warmup` seconds' requests are the warm-up, the next `duration` seconds' are measured.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    rate: f64,
    warmup_ns: u64,
    total_ns: u64,
}

impl Schedule {
    pub fn new(rate: f64, warmup: Duration, duration: Duration) -> Schedule {
        Schedule {
            rate,
            warmup_ns: warmup.as_nanos() as u64,
            total_ns: (warmup + duration).as_nanos() as u64,
        }
    }

    /// When request `i` is due, in ns after the start (computed from `i`, so no drift builds up).
    #[inline]
    pub fn offset_ns(&self, i: u64) -> u64 {
        (i as f64 * 1e9 / self.rate) as u64
    }

    /// How many requests are due strictly before `ns` after the start.
    pub fn due_before(&self, ns: u64) -> u64 {
        let mut n = (ns as f64 * self.rate / 1e9).ceil() as u64;
        while n > 0 && self.offset_ns(n - 1) >= ns {
            n -= 1;
        }
        while self.offset_ns(n) < ns {
            n += 1;
        }
        n
    }

    pub fn total(&self) -> u64 {
        self.due_before(self.total_ns)
    }

    pub fn warmup_count(&self) -> u64 {
        self.due_before(self.warmup_ns)
    }

    pub fn is_warmup(&self, i: u64) -> bool {
        self.offset_ns(i) < self.warmup_ns
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection could not be made (refused, unreachable, out of descriptors).
    Connect,
    /// No whole response within the timeout.
    Timeout,
    /// The connection failed or the answer was not HTTP after the request was sent.
    Io,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 3] = [ErrorKind::Connect, ErrorKind::Timeout, ErrorKind::Io];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGNIFICANT_DIGITS).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// What one phase (warm-up or measured) saw.
#[derive(Debug, Clone)]
pub struct Tally {
    pub statuses: BTreeMap<u16, u64>,
    pub errors: [u64; 3],
    /// The first message of each error kind, to tell the user what went wrong.
    pub first_error: [Option<String>; 3],
    /// From the scheduled send to the end of the response (microseconds).
    pub latency: Histogram<u64>,
    /// From the actual send to the end of the response (microseconds).
    pub service: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            statuses: BTreeMap::new(),
            errors: [0; 3],
            first_error: [None, None, None],
            latency: new_histogram(),
            service: new_histogram(),
        }
    }
}

impl Tally {
    pub fn response(&mut self, status: u16, latency: Duration, service: Duration) {
        *self.statuses.entry(status).or_default() += 1;
        self.latency.saturating_record(micros(latency));
        self.service.saturating_record(micros(service));
    }

    pub fn error(&mut self, kind: ErrorKind, message: impl FnOnce() -> String) {
        self.errors[kind.index()] += 1;
        self.first_error[kind.index()].get_or_insert_with(message);
    }

    pub fn merge(&mut self, other: &Tally) {
        for (s, n) in &other.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        for i in 0..3 {
            self.errors[i] += other.errors[i];
            if self.first_error[i].is_none() {
                self.first_error[i].clone_from(&other.first_error[i]);
            }
        }
        self.latency
            .add(&other.latency)
            .expect("histograms of one shape");
        self.service
            .add(&other.service)
            .expect("histograms of one shape");
    }

    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    pub fn admitted(&self) -> u64 {
        self.statuses.range(200..300).map(|(_, n)| n).sum()
    }

    pub fn throttled(&self) -> u64 {
        self.statuses.get(&429).copied().unwrap_or(0)
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

#[derive(Default)]
struct Tallies {
    warmup: Tally,
    measured: Tally,
}

/// The admitted count against a configured limit.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitCheck {
    pub rate: f64,
    pub burst: u64,
    /// Burst tokens left when measuring starts: the whole burst without a warm-up (a bucket
    /// unused for `burst / rate` seconds is full), else what the warm-up's admitted requests
    /// left of it (an upper bound, exact when the warm-up offered more than the rate).
    pub tokens_at_start: f64,
    /// `tokens_at_start + rate * duration`, or every request offered when that is fewer.
    pub expected_admitted: f64,
    pub admitted: u64,
    pub admitted_rps: f64,
    pub admitted_vs_expected: f64,
    /// Admitted beyond the tokens at start, per second: the rate the throttle let through.
    pub sustained_rps: f64,
    pub sustained_vs_rate: f64,
}

impl LimitCheck {
    pub fn new(
        limit: ConfiguredLimit,
        duration_s: f64,
        warmup_s: f64,
        warmup_admitted: u64,
        offered: u64,
        admitted: u64,
    ) -> LimitCheck {
        let burst = limit.burst as f64;
        let tokens_at_start = if warmup_s > 0.0 {
            (burst + limit.rate * warmup_s - warmup_admitted as f64).clamp(0.0, burst)
        } else {
            burst
        };
        let expected_admitted = (tokens_at_start + limit.rate * duration_s).min(offered as f64);
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let sustained_rps = (admitted as f64 - tokens_at_start).max(0.0) / duration_s;
        LimitCheck {
            rate: limit.rate,
            burst: limit.burst,
            tokens_at_start,
            expected_admitted,
            admitted,
            admitted_rps: admitted as f64 / duration_s,
            admitted_vs_expected: ratio(admitted as f64, expected_admitted),
            sustained_rps,
            sustained_vs_rate: ratio(sustained_rps, limit.rate),
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: Target,
    pub method: String,
    pub offered_rps: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub threads: usize,
    pub requests_per_connection: Option<u64>,
    /// Wall time from the start (warm-up included) until the last response or failure.
    pub elapsed: Duration,
    /// Requests due in the measured window, and how many of them were sent.
    pub scheduled: u64,
    pub sent: u64,
    pub warmup_scheduled: u64,
    pub warmup_sent: u64,
    pub measured: Tally,
    pub warmup_tally: Tally,
    pub limits: Vec<ConfiguredLimit>,
    /// Stopped before the end (interrupted).
    pub cancelled: bool,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn fmt_ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// Round for display and JSON (enforced rates read back as `1e9 / T`).
fn tidy(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1e6).round() / 1e6
    } else {
        v
    }
}

/// Log-2 buckets `[lo, 2 lo)` (microseconds) from the one holding the fastest response to the
/// one holding the slowest, each with its count.
pub fn log_buckets(h: &Histogram<u64>) -> Vec<(u64, u64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut lo = 1u64 << (63 - h.min().max(1).leading_zeros());
    let max = h.max();
    let mut out = Vec::new();
    while lo <= max {
        let hi = lo.saturating_mul(2);
        out.push((lo, hi, h.count_between(lo, hi - 1)));
        if hi == u64::MAX {
            break;
        }
        lo = hi;
    }
    out
}

pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

fn percentiles_json(h: &Histogram<u64>) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, q) in PERCENTILES {
        let v = (!h.is_empty()).then(|| ms(h.value_at_quantile(q)));
        out.insert(name.into(), serde_json::json!(v));
    }
    let (min, max, mean) = if h.is_empty() {
        (None, None, None)
    } else {
        (
            Some(ms(h.min())),
            Some(ms(h.max())),
            Some(tidy(h.mean() / 1000.0)),
        )
    };
    out.insert("min".into(), serde_json::json!(min));
    out.insert("max".into(), serde_json::json!(max));
    out.insert("mean".into(), serde_json::json!(mean));
    serde_json::Value::Object(out)
}

impl Report {
    pub fn duration_s(&self) -> f64 {
        self.duration.as_secs_f64()
    }

    pub fn missed(&self) -> u64 {
        self.scheduled - self.sent
    }

    pub fn admitted(&self) -> u64 {
        self.measured.admitted()
    }

    pub fn throttled(&self) -> u64 {
        self.measured.throttled()
    }

    pub fn responses(&self) -> u64 {
        self.measured.responses()
    }

    pub fn other(&self) -> u64 {
        self.responses() - self.admitted() - self.throttled()
    }

    pub fn errors(&self) -> u64 {
        self.measured.errors_total()
    }

    /// Responses per second over the measured window.
    pub fn achieved_rps(&self) -> f64 {
        self.responses() as f64 / self.duration_s()
    }

    /// The check against the limit that allows the fewest requests in this run (the one that
    /// binds), when any limit was given.
    pub fn limit_check(&self) -> Option<LimitCheck> {
        self.limits
            .iter()
            .map(|l| {
                LimitCheck::new(
                    *l,
                    self.duration_s(),
                    self.warmup.as_secs_f64(),
                    self.warmup_tally.admitted(),
                    self.scheduled,
                    self.admitted(),
                )
            })
            .min_by(|a, b| a.expected_admitted.total_cmp(&b.expected_admitted))
    }

    pub fn to_json(&self) -> serde_json::Value {
        let m = &self.measured;
        let errors: serde_json::Map<String, serde_json::Value> = ErrorKind::ALL
            .iter()
            .map(|k| (k.name().to_owned(), m.errors[k.index()].into()))
            .collect();
        let first_errors: serde_json::Map<String, serde_json::Value> = ErrorKind::ALL
            .iter()
            .filter_map(|k| {
                let msg = m.first_error[k.index()]
                    .as_ref()
                    .or(self.warmup_tally.first_error[k.index()].as_ref());
                msg.map(|msg| (k.name().to_owned(), msg.clone().into()))
            })
            .collect();
        let statuses: serde_json::Map<String, serde_json::Value> = m
            .statuses
            .iter()
            .map(|(s, n)| (s.to_string(), (*n).into()))
            .collect();
        let histogram: Vec<serde_json::Value> = log_buckets(&m.latency)
            .into_iter()
            .map(|(lo, hi, n)| serde_json::json!({"from_ms": ms(lo), "to_ms": ms(hi), "count": n}))
            .collect();
        let limit = self.limit_check().map(|c| {
            serde_json::json!({
                "rate": tidy(c.rate),
                "burst": c.burst,
                "tokens_at_start": tidy(c.tokens_at_start),
                "expected_admitted": tidy(c.expected_admitted),
                "admitted_rps": tidy(c.admitted_rps),
                "admitted_vs_expected": tidy(c.admitted_vs_expected),
                "sustained_rps": tidy(c.sustained_rps),
                "sustained_vs_rate": tidy(c.sustained_vs_rate),
            })
        });
        let limits: Vec<serde_json::Value> = self
            .limits
            .iter()
            .map(|l| serde_json::json!({"rate": tidy(l.rate), "burst": l.burst}))
            .collect();
        serde_json::json!({
            "url": self.target.url,
            "method": self.method,
            "offered_rps": self.offered_rps,
            "duration_s": self.duration_s(),
            "warmup_s": self.warmup.as_secs_f64(),
            "connections": self.connections,
            "threads": self.threads,
            "requests_per_connection": self.requests_per_connection,
            "elapsed_s": tidy(self.elapsed.as_secs_f64()),
            "cancelled": self.cancelled,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "missed": self.missed(),
            "responses": self.responses(),
            "achieved_rps": tidy(self.achieved_rps()),
            "admitted": self.admitted(),
            "throttled": self.throttled(),
            "other": self.other(),
            "statuses": statuses,
            "errors": errors,
            "errors_total": self.errors(),
            "first_errors": first_errors,
            "warmup": {
                "scheduled": self.warmup_scheduled,
                "sent": self.warmup_sent,
                "responses": self.warmup_tally.responses(),
                "admitted": self.warmup_tally.admitted(),
                "throttled": self.warmup_tally.throttled(),
                "errors_total": self.warmup_tally.errors_total(),
            },
            "limits": limits,
            "limit": limit,
            "latency_ms": percentiles_json(&m.latency),
            "service_time_ms": percentiles_json(&m.service),
            "histogram": histogram,
        })
    }

    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let m = &self.measured;
        let d = self.duration_s();
        let _ = writeln!(o, "portico bench: {} {}", self.method, self.target.url);
        let warm = if self.warmup.is_zero() {
            String::new()
        } else {
            format!(" after a {} s warm-up", self.warmup.as_secs_f64())
        };
        let _ = writeln!(
            o,
            "  offered   {:.1} req/s for {d} s{warm}, {} connection(s){}, {} thread(s){}",
            self.offered_rps,
            self.connections,
            match self.requests_per_connection {
                Some(n) => format!(" renewed every {n} requests"),
                None => String::new(),
            },
            self.threads,
            if self.cancelled { " (interrupted)" } else { "" }
        );
        let _ = writeln!(
            o,
            "  achieved  {:.1} req/s: {} scheduled, {} sent, {} missed (no free connection), {} answered",
            self.achieved_rps(),
            self.scheduled,
            self.sent,
            self.missed(),
            self.responses()
        );
        let _ = writeln!(
            o,
            "  answers   {} admitted (2xx), {} throttled (429), {} other, {} errors",
            self.admitted(),
            self.throttled(),
            self.other(),
            self.errors()
        );
        let by_status: Vec<String> = m
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        if !by_status.is_empty() {
            let _ = writeln!(o, "  statuses  {}", by_status.join(", "));
        }
        if self.errors() > 0 {
            let parts: Vec<String> = ErrorKind::ALL
                .iter()
                .filter(|k| m.errors[k.index()] > 0)
                .map(|k| {
                    let first = m.first_error[k.index()].as_deref().unwrap_or("");
                    format!("{} {} ({first})", m.errors[k.index()], k.name())
                })
                .collect();
            let _ = writeln!(o, "  errors    {}", parts.join(", "));
        }
        if let Some(c) = self.limit_check() {
            let _ = writeln!(
                o,
                "  limit     {} req/s, burst {}: {} admitted of {:.1} expected ({:.1} tokens at start + {} * {d} s): {:.4}",
                tidy(c.rate),
                c.burst,
                c.admitted,
                c.expected_admitted,
                c.tokens_at_start,
                tidy(c.rate),
                c.admitted_vs_expected
            );
            let _ = writeln!(
                o,
                "            admitted {:.2} req/s; less the tokens at start {:.2} req/s = {:.4} x the configured rate",
                c.admitted_rps, c.sustained_rps, c.sustained_vs_rate
            );
            if self.offered_rps <= c.rate {
                let _ = writeln!(
                    o,
                    "            (offered at or below the limit: every request should be admitted)"
                );
            }
        }
        if m.latency.is_empty() {
            let _ = writeln!(o, "  latency   no responses");
            return o;
        }
        let pct = |h: &Histogram<u64>| -> String {
            let mut parts: Vec<String> = PERCENTILES
                .iter()
                .map(|(n, q)| format!("{n} {}", fmt_ms(ms(h.value_at_quantile(*q)))))
                .collect();
            parts.push(format!("max {}", fmt_ms(ms(h.max()))));
            parts.join("  ")
        };
        let _ = writeln!(
            o,
            "  latency   (ms, from each request's scheduled send) {}",
            pct(&m.latency)
        );
        let _ = writeln!(
            o,
            "  service   (ms, from the actual send)              {}",
            pct(&m.service)
        );
        let buckets = log_buckets(&m.latency);
        let peak = buckets.iter().map(|b| b.2).max().unwrap_or(1).max(1);
        let _ = writeln!(o, "  latency histogram (ms):");
        for (lo, hi, n) in buckets {
            let bar = ((n as f64 / peak as f64) * BAR_WIDTH as f64).ceil() as usize;
            let _ = writeln!(
                o,
                "    {:>9} - {:<9} |{:<w$}| {n}",
                fmt_ms(ms(lo)),
                fmt_ms(ms(hi)),
                "#".repeat(bar),
                w = BAR_WIDTH
            );
        }
        o
    }
}

// ---------------------------------------------------------------------------------------------
// The run

struct Run {
    plan: Plan,
    addr: SocketAddr,
    schedule: Schedule,
    permits: Semaphore,
    claimed: AtomicU64,
    start: OnceLock<Instant>,
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(run: &Run) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(run.addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(plan: &Plan) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::new(Full::new(plan.body.clone()));
    *req.method_mut() = plan.method.clone();
    *req.uri_mut() = plan
        .target
        .path_and_query
        .parse()
        .expect("checked by Target::parse");
    let headers = req.headers_mut();
    if let Ok(host) = HeaderValue::from_str(&plan.target.authority) {
        headers.insert(HOST, host);
    }
    for (name, value) in &plan.headers {
        if *name == HOST {
            headers.insert(HOST, value.clone());
        } else {
            headers.append(name.clone(), value.clone());
        }
    }
    req
}

/// One request on `conn` (opened or reopened as needed): its status once the body is read.
async fn exchange(run: &Run, conn: &mut Option<Sender>) -> Result<u16, (ErrorKind, String)> {
    if let Some(sender) = conn {
        // An idle connection the server closed is replaced without counting an error.
        if sender.is_closed() || sender.ready().await.is_err() {
            *conn = None;
        }
    }
    let sender = match conn {
        Some(sender) => sender,
        None => conn.insert(connect(run).await.map_err(|e| (ErrorKind::Connect, e))?),
    };
    let io = |e: hyper::Error| (ErrorKind::Io, e.to_string());
    let response = sender.send_request(request(&run.plan)).await.map_err(io)?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(io)?;
    }
    Ok(status)
}

async fn worker(run: Arc<Run>, mut conn: Option<Sender>, tallies: Arc<Mutex<Tallies>>) {
    let mut served_by_conn = 0u64;
    loop {
        match run.permits.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return, // closed: the run is over
        }
        let i = run.claimed.fetch_add(1, Ordering::Relaxed);
        let start = *run.start.get().expect("set before any permit");
        let scheduled = start + Duration::from_nanos(run.schedule.offset_ns(i));
        if conn.is_none() {
            served_by_conn = 0;
        }
        let sent_at = Instant::now();
        let outcome = tokio::time::timeout(run.plan.timeout, exchange(&run, &mut conn)).await;
        let done = Instant::now();
        let mut t = tallies.lock().unwrap_or_else(|e| e.into_inner());
        let tally = if run.schedule.is_warmup(i) {
            &mut t.warmup
        } else {
            &mut t.measured
        };
        match outcome {
            Ok(Ok(status)) => {
                tally.response(
                    status,
                    done.saturating_duration_since(scheduled),
                    done.saturating_duration_since(sent_at),
                );
                served_by_conn += 1;
                if run
                    .plan
                    .requests_per_connection
                    .is_some_and(|n| served_by_conn >= n)
                {
                    conn = None; // closed; the next request opens a new one
                }
            }
            Ok(Err((kind, message))) => {
                conn = None;
                tally.error(kind, || message);
            }
            Err(_) => {
                // The connection may still carry the late answer: never reuse it.
                conn = None;
                let limit = run.plan.timeout;
                tally.error(ErrorKind::Timeout, || {
                    format!("no whole response within {limit:?}")
                });
            }
        }
    }
}

/// One generator thread: open its connections, say so, then serve permits until they close.
fn generator_thread(
    runtime: tokio::runtime::Runtime,
    run: Arc<Run>,
    connections: usize,
    ready: std::sync::mpsc::Sender<()>,
) -> Tallies {
    let tallies = Arc::new(Mutex::new(Tallies::default()));
    runtime.block_on(async {
        // Connections open before the clock starts; one that cannot is retried (and counted)
        // by its first request.
        let opening: Vec<_> = (0..connections)
            .map(|_| {
                let run = run.clone();
                tokio::spawn(async move {
                    tokio::time::timeout(run.plan.timeout, connect(&run))
                        .await
                        .ok()
                        .and_then(Result::ok)
                })
            })
            .collect();
        let mut conns = Vec::with_capacity(connections);
        for handle in opening {
            conns.push(handle.await.ok().flatten());
        }
        let _ = ready.send(());
        drop(ready); // the pacer waits until every thread has said so or ended
        let workers: Vec<_> = conns
            .into_iter()
            .map(|conn| tokio::spawn(worker(run.clone(), conn, tallies.clone())))
            .collect();
        for w in workers {
            let _ = w.await;
        }
    });
    drop(runtime);
    let mut t = tallies.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *t)
}

fn resolve(target: &Target) -> Result<SocketAddr, String> {
    (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .next()
        .ok_or_else(|| format!("cannot resolve {}", target.host))
}

/// Run `plan` to the end (or until `cancel` is set): the calling thread paces the requests.
/// Fails only on a plan that cannot run (bad numbers, a host that does not resolve); every
/// failure during the run is counted in the report.
pub fn run(plan: Plan, cancel: &AtomicBool) -> Result<Report, String> {
    plan.validate()?;
    let addr = resolve(&plan.target)?;
    let schedule = Schedule::new(plan.rate, plan.warmup, plan.duration);
    let threads = plan.threads.min(plan.connections);
    let run = Arc::new(Run {
        plan,
        addr,
        schedule,
        permits: Semaphore::new(0),
        claimed: AtomicU64::new(0),
        start: OnceLock::new(),
    });
    let runtimes = (0..threads)
        .map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot start the load generator's runtime: {e}"))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let per_thread = run.plan.connections / threads;
    let extra = run.plan.connections % threads;
    let mut handles = Vec::with_capacity(threads);
    for (t, runtime) in runtimes.into_iter().enumerate() {
        let (for_thread, ready) = (run.clone(), ready_tx.clone());
        let connections = per_thread + usize::from(t < extra);
        let spawned = std::thread::Builder::new()
            .name(format!("portico-bench-{t}"))
            .spawn(move || generator_thread(runtime, for_thread, connections, ready));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                // No permit was given: closing lets the threads already started end at once.
                run.permits.close();
                for h in handles {
                    let _ = h.join();
                }
                return Err(format!("cannot start a load generator thread: {e}"));
            }
        }
    }
    drop(ready_tx);
    // The clock starts once every connection is open (or has failed to open).
    while ready_rx.recv().is_ok() {}
    // Sleeps of this thread end within a few microseconds of their deadline instead of the
    // default 50 us timer slack, which would show as latency (prctl(2), PR_SET_TIMERSLACK).
    // SAFETY: plain integer arguments; only this thread's slack changes.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let start = Instant::now();
    run.start.set(start).expect("set once");
    let total = schedule.total();
    let end = start + Duration::from_nanos(schedule.total_ns);
    let mut released = 0u64;
    let mut cancelled = false;
    loop {
        if cancel.load(Ordering::Relaxed) {
            cancelled = true;
            break;
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = schedule
            .due_before(now.duration_since(start).as_nanos() as u64 + 1)
            .min(total);
        if due > released {
            run.permits.add_permits((due - released) as usize);
            released = due;
        }
        let next = if released < total {
            start + Duration::from_nanos(schedule.offset_ns(released))
        } else {
            end
        };
        let now = Instant::now();
        if next > now {
            std::thread::sleep((next - now).min(PACER_MAX_SLEEP));
        }
    }
    // Requests due in the window that the pacer, woken late, has not handed out yet.
    if !cancelled && released < total {
        run.permits.add_permits((total - released) as usize);
        released = total;
    }
    // Requests due in the window but still waiting for a free connection are sent late (their
    // latency counts the wait) for up to one timeout more; those still waiting then are missed.
    let drain_until = Instant::now() + run.plan.timeout;
    while !cancelled
        && run.claimed.load(Ordering::Relaxed) < released
        && Instant::now() < drain_until
    {
        if cancel.load(Ordering::Relaxed) {
            cancelled = true;
        }
        std::thread::sleep(DRAIN_POLL);
    }
    run.permits.close();
    let mut tallies = Tallies::default();
    for h in handles {
        if let Ok(t) = h.join() {
            tallies.warmup.merge(&t.warmup);
            tallies.measured.merge(&t.measured);
        }
    }
    let elapsed = start.elapsed();
    let claimed = run.claimed.load(Ordering::Relaxed);
    let warmup_scheduled = schedule.warmup_count();
    let scheduled_all = if cancelled { released } else { total };
    let plan = &run.plan;
    Ok(Report {
        target: plan.target.clone(),
        method: plan.method.to_string(),
        offered_rps: plan.rate,
        duration: plan.duration,
        warmup: plan.warmup,
        connections: plan.connections,
        threads,
        requests_per_connection: plan.requests_per_connection,
        elapsed,
        scheduled: scheduled_all.saturating_sub(warmup_scheduled),
        sent: claimed.saturating_sub(warmup_scheduled),
        warmup_scheduled: warmup_scheduled.min(scheduled_all),
        warmup_sent: claimed.min(warmup_scheduled),
        measured: tallies.measured,
        warmup_tally: tallies.warmup,
        limits: plan.limits.clone(),
        cancelled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn schedule_counts_requests_per_window() {
        let s = Schedule::new(1500.0, Duration::from_secs(2), Duration::from_secs(20));
        assert_eq!(s.total(), 33_000);
        assert_eq!(s.warmup_count(), 3_000);
        assert!(s.is_warmup(2_999) && !s.is_warmup(3_000));
        let s = Schedule::new(0.5, Duration::ZERO, Duration::from_secs(3));
        // Due at 0 s and 2 s; the one at 4 s is past the end.
        assert_eq!((s.total(), s.offset_ns(1)), (2, 2 * S));
        let s = Schedule::new(3.0, Duration::ZERO, Duration::from_secs(1));
        assert_eq!(s.total(), 3);
        assert_eq!(s.due_before(0), 0);
        assert_eq!(s.due_before(1), 1);
    }

    proptest! {
        #[test]
        fn due_before_counts_exactly(rate in 0.01f64..200_000.0, ns in 0u64..100 * S) {
            let s = Schedule::new(rate, Duration::ZERO, Duration::from_nanos(ns));
            let n = s.due_before(ns);
            prop_assert!(n == 0 || s.offset_ns(n - 1) < ns);
            prop_assert!(s.offset_ns(n) >= ns);
            // The offered rate is kept over the window to within one request.
            prop_assert!((n as f64 - ns as f64 * rate / 1e9).abs() <= 1.0);
        }

        #[test]
        fn offsets_never_go_back(rate in 0.01f64..1e6, i in 0u64..10_000_000) {
            let s = Schedule::new(rate, Duration::ZERO, Duration::from_secs(1));
            prop_assert!(s.offset_ns(i) <= s.offset_ns(i + 1));
        }

        #[test]
        fn log_buckets_hold_every_value(values in proptest::collection::vec(1u64..10_000_000, 1..500)) {
            let mut h = new_histogram();
            for v in &values { h.record(*v).unwrap(); }
            let buckets = log_buckets(&h);
            prop_assert_eq!(buckets.iter().map(|b| b.2).sum::<u64>(), values.len() as u64);
            prop_assert!(buckets[0].0 <= h.min() && h.max() < buckets.last().unwrap().1);
            for w in buckets.windows(2) { prop_assert_eq!(w[0].1, w[1].0); }
        }
    }

    #[test]
    fn tallies_merge_and_classify() {
        let mut a = Tally::default();
        a.response(200, Duration::from_millis(2), Duration::from_millis(1));
        a.response(429, Duration::from_micros(300), Duration::from_micros(300));
        a.error(ErrorKind::Timeout, || "first".into());
        let mut b = Tally::default();
        b.response(204, Duration::from_millis(40), Duration::from_millis(1));
        b.response(503, Duration::from_millis(1), Duration::from_millis(1));
        b.error(ErrorKind::Timeout, || "second".into());
        b.error(ErrorKind::Connect, || "refused".into());
        a.merge(&b);
        assert_eq!(
            (a.responses(), a.admitted(), a.throttled(), a.errors_total()),
            (4, 2, 1, 3)
        );
        assert_eq!(
            a.first_error[ErrorKind::Timeout.index()].as_deref(),
            Some("first")
        );
        assert_eq!(
            a.first_error[ErrorKind::Connect.index()].as_deref(),
            Some("refused")
        );
        assert_eq!(a.latency.len(), 4);
        assert!(a.latency.max() >= 40_000 && a.latency.max() < 40_100);
        assert!(a.latency.value_at_quantile(0.5) < a.latency.max());
    }

    #[test]
    fn limit_check_without_and_with_warmup() {
        let limit = ConfiguredLimit {
            rate: 500.0,
            burst: 100,
        };
        // No warm-up: the bucket starts full.
        let c = LimitCheck::new(limit, 20.0, 0.0, 0, 30_000, 10_100);
        assert_eq!((c.tokens_at_start, c.expected_admitted), (100.0, 10_100.0));
        assert_eq!(
            (c.admitted_vs_expected, c.sustained_rps, c.sustained_vs_rate),
            (1.0, 500.0, 1.0)
        );
        assert_eq!(c.admitted_rps, 505.0);
        // A saturating warm-up spent the burst and the refill.
        let c = LimitCheck::new(limit, 20.0, 2.0, 1_100, 30_000, 9_900);
        assert_eq!((c.tokens_at_start, c.expected_admitted), (0.0, 10_000.0));
        assert!(
            (c.admitted_vs_expected - 0.99).abs() < 1e-12
                && (c.sustained_vs_rate - 0.99).abs() < 1e-12
        );
        // A light warm-up leaves the bucket full (never more than the burst).
        let c = LimitCheck::new(limit, 20.0, 2.0, 10, 30_000, 10_100);
        assert_eq!(c.tokens_at_start, 100.0);
        // Offered below the limit: every request is expected through.
        let c = LimitCheck::new(limit, 2.0, 0.0, 0, 400, 400);
        assert_eq!((c.expected_admitted, c.admitted_vs_expected), (400.0, 1.0));
    }

    #[test]
    fn target_parsing() {
        let t = Target::parse("http://127.0.0.1:8080/prod/pets?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("127.0.0.1", 8080, "127.0.0.1:8080")
        );
        assert_eq!(t.path_and_query, "/prod/pets?x=1");
        let t = Target::parse("http://[::1]/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert!(Target::parse("https://x/")
            .unwrap_err()
            .contains("only http://"));
        assert!(Target::parse("/relative").is_err());
        assert!(Target::parse("http://").is_err());
    }

    fn plan(url: &str, rate: f64, millis: u64) -> Plan {
        Plan {
            target: Target::parse(url).unwrap(),
            method: http::Method::GET,
            headers: vec![(
                HeaderName::from_static("x-bench"),
                HeaderValue::from_static("1"),
            )],
            body: Bytes::new(),
            rate,
            duration: Duration::from_millis(millis),
            warmup: Duration::ZERO,
            connections: 4,
            threads: 2,
            timeout: Duration::from_secs(2),
            requests_per_connection: None,
            limits: vec![],
        }
    }

    /// A local server answering 429 to every third request and 200 otherwise, holding requests
    /// to `/slow` for a second; returns its port.
    fn serve_locally() -> u16 {
        serve_locally_counting().0
    }

    /// `serve_locally`, with the count of connections it accepted.
    fn serve_locally_counting() -> (u16, Arc<AtomicU64>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let count = Arc::new(AtomicU64::new(0));
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    counter.fetch_add(1, Ordering::Relaxed);
                    let count = count.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |req: http::Request<hyper::body::Incoming>| {
                                let n = count.fetch_add(1, Ordering::Relaxed);
                                async move {
                                    assert_eq!(req.headers()["x-bench"], "1");
                                    match req.uri().path() {
                                        "/slow" => tokio::time::sleep(Duration::from_secs(1)).await,
                                        "/50ms" => {
                                            tokio::time::sleep(Duration::from_millis(50)).await
                                        }
                                        _ => {}
                                    }
                                    let status = if n % 3 == 2 { 429 } else { 200 };
                                    Ok::<_, std::convert::Infallible>(
                                        http::Response::builder()
                                            .status(status)
                                            .body(Full::new(Bytes::from("ok")))
                                            .unwrap(),
                                    )
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        (port, accepted)
    }

    #[test]
    fn run_counts_add_up_against_a_local_server() {
        let port = serve_locally();
        let mut p = plan(&format!("http://127.0.0.1:{port}/x"), 200.0, 500);
        p.warmup = Duration::from_millis(100);
        let r = run(p, &AtomicBool::new(false)).unwrap();
        assert_eq!((r.scheduled, r.warmup_scheduled), (100, 20));
        assert_eq!(r.scheduled, r.sent + r.missed());
        assert_eq!(r.sent, r.responses() + r.errors());
        assert_eq!(r.responses(), r.admitted() + r.throttled() + r.other());
        assert_eq!(
            r.warmup_tally.responses() + r.warmup_tally.errors_total(),
            r.warmup_sent
        );
        // Every third answer of the server is a 429, warm-up included.
        let all = r.responses() + r.warmup_tally.responses();
        let throttled = r.throttled() + r.warmup_tally.throttled();
        assert!(throttled.abs_diff(all / 3) <= 1, "{throttled} of {all}");
        assert_eq!(r.measured.latency.len(), r.responses());
        let json = r.to_json();
        assert_eq!(json["scheduled"], 100);
        assert!(r.render_text().contains("latency histogram"));
    }

    #[test]
    fn refused_connections_are_counted() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = run(
            plan(&format!("http://127.0.0.1:{port}/"), 100.0, 200),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(r.scheduled, 20);
        assert_eq!(r.errors(), r.sent);
        assert_eq!(r.measured.errors[ErrorKind::Connect.index()], r.sent);
        assert!(r.sent > 0 && r.responses() == 0);
        assert!(r.render_text().contains("no responses"));
    }

    #[test]
    fn slow_answers_are_late_not_missing_and_time_out() {
        let port = serve_locally();
        // One connection, 10 req/s, answers after 1 s with a 300 ms timeout: every request times
        // out, and those queued behind it are measured from their scheduled time.
        let mut p = plan(&format!("http://127.0.0.1:{port}/slow"), 10.0, 1000);
        p.connections = 1;
        p.threads = 1;
        p.timeout = Duration::from_millis(300);
        let r = run(p, &AtomicBool::new(false)).unwrap();
        assert_eq!(r.scheduled, 10);
        assert!(
            r.measured.errors[ErrorKind::Timeout.index()] >= 3,
            "{:?}",
            r.measured.errors
        );
        assert_eq!(r.sent, r.errors());
        assert_eq!(r.scheduled, r.sent + r.missed());
    }

    #[test]
    fn latency_counts_the_wait_for_a_connection() {
        let port = serve_locally();
        // One connection answering in 50 ms cannot keep up with 40 req/s: requests queue for it,
        // are sent late (the backlog after the window too), and their latency counts the wait
        // while their service time does not.
        let mut p = plan(&format!("http://127.0.0.1:{port}/50ms"), 40.0, 500);
        p.connections = 1;
        p.threads = 1;
        let r = run(p, &AtomicBool::new(false)).unwrap();
        assert_eq!((r.scheduled, r.sent, r.missed()), (20, 20, 0));
        assert_eq!(r.responses(), 20);
        let (latency, service) = (&r.measured.latency, &r.measured.service);
        assert!(service.max() < 400_000, "service max {} us", service.max());
        // The last request is due at 475 ms and sent after 20 answers of 50 ms each.
        assert!(latency.max() >= 450_000, "latency max {} us", latency.max());
        assert!(latency.value_at_quantile(0.5) > 2 * service.value_at_quantile(0.5));
    }

    #[test]
    fn connections_are_renewed_after_their_requests() {
        let (port, accepted) = serve_locally_counting();
        let mut p = plan(&format!("http://127.0.0.1:{port}/"), 100.0, 300);
        p.connections = 2;
        p.threads = 1;
        p.requests_per_connection = Some(5);
        let r = run(p.clone(), &AtomicBool::new(false)).unwrap();
        assert_eq!((r.responses(), r.errors()), (30, 0));
        // Each connection closes after its 5th answer; the next request opens a new one.
        let opened = accepted.load(Ordering::Relaxed);
        assert!((6..=7).contains(&opened), "{opened}");
        assert_eq!(r.to_json()["requests_per_connection"], 5);
        p.requests_per_connection = None;
        let before = accepted.load(Ordering::Relaxed);
        run(p, &AtomicBool::new(false)).unwrap();
        assert_eq!(accepted.load(Ordering::Relaxed) - before, 2);
    }

    #[test]
    fn cancel_stops_the_run() {
        let port = serve_locally();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            flag.store(true, Ordering::Relaxed);
        });
        let began = Instant::now();
        let r = run(
            plan(&format!("http://127.0.0.1:{port}/"), 50.0, 60_000),
            &cancel,
        )
        .unwrap();
        assert!(r.cancelled && began.elapsed() < Duration::from_secs(10));
        assert!(r.scheduled < 3000);
        assert_eq!(r.scheduled, r.sent + r.missed());
    }

    #[test]
    fn bad_plans_are_refused() {
        let mut p = plan("http://127.0.0.1:1/", 0.0, 100);
        assert!(run(p.clone(), &AtomicBool::new(false))
            .unwrap_err()
            .contains("rate"));
        p.rate = 10.0;
        p.connections = 0;
        assert!(run(p, &AtomicBool::new(false)).is_err());
        let p = plan("http://no-such-host.invalid/", 10.0, 100);
        assert!(run(p, &AtomicBool::new(false))
            .unwrap_err()
            .contains("resolve"));
    }
}
