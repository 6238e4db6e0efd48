//! Cluster mode (`portico serve --redis redis://HOST:PORT/DB`): every node's token buckets and
//! usage plans' counts live in one Redis, so that limits and quotas hold for the nodes together.
//! See "Cluster mode" in docs/pipeline.md.
//!
//! Pure Rust, no PyO3. Each worker process keeps one multiplexed (pipelined) connection on the
//! core's tokio runtime; every decision is one atomic Lua script run (EVALSHA, EVAL when Redis
//! has not seen the script yet), bounded by `ClusterOptions::timeout`:
//!
//! - `GCRA_LUA` spends from a chain of buckets (the route's then the account's, or a usage plan's)
//!   with exactly `crate::throttle::Limit::step`'s rule, on Redis's own clock (`TIME`, in whole
//!   microseconds: the emission interval is rounded up to a whole microsecond, which keeps
//!   `admitted <= burst + rate * t` exact). Nothing is batched: the only thing a worker keeps is
//!   that a bucket Redis found empty stays empty until the wait Redis answered has passed (the
//!   bucket's `tat` only grows), so overload is refused without asking Redis again, and exactly.
//! - `QUOTA_LUA` counts one request of a usage-plan key: the quota period's count (refused,
//!   uncounted, at the limit) and the UTC day's. A count missing from Redis (a new period, or a
//!   Redis restarted empty) starts from the node's durable counts, as `crate::usage::Tally` does.
//!   The answer is mirrored into the node's `Tally`, so that its usage writer makes the shared
//!   counts durable and a fallback goes on from them.
//!
//! Faults: a failed or timed-out call decides that request on the node's own tables (fail-open,
//! the default: the node's buckets, its quota counts going on from the last shared count), or
//! refuses it (fail-closed, 429 THROTTLED). A broken connection, or a health check (`PING` every
//! `HEALTH_INTERVAL`) that fails, marks Redis lost: no request waits on it any more, one line is
//! logged per node, and the supervisor reconnects every `HEALTH_INTERVAL`. When Redis is back, the
//! requests each worker counted meanwhile are added to the shared counts (`MERGE_LUA`), and one
//! line says so.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script};

use crate::throttle::{monotonic_ns, Buckets, Limit, NEVER};
use crate::usage::{
    day_of, Counted, Labelled, Quota, QuotaPeriod, QuotaState, Tally, UsageBase, DAY_MS,
};

/// How often the supervisor checks a live connection, and retries a lost one.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(250);
/// How long a connection attempt or a health check may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The prefix of every key Portico writes (one Redis database per cluster).
const PREFIX: &str = "portico:";
/// The hash of usage counts' labels by their hash (hex), which the usage writers read
/// (`python/portico/serve/usage.py`); the day counts are `portico:d:{hash}:{day}`.
pub const USAGE_LABELS: &str = "portico:usage-labels";

/// KEYS: the buckets, in spending order. ARGV[1]: now in microseconds, or "" for Redis's `TIME`;
/// then per bucket its emission interval, tolerance and span (`Limit`'s, in microseconds) and the
/// tokens the worker would lease (0: none). Returns {0, 0, ...} when every bucket admitted, else
/// {the refusing bucket (1-based), wait in microseconds (-1: the bucket refuses everything), ...};
/// buckets before it have spent a token, as in `Snapshot::spend_with_clock`. Then, per bucket
/// looked at: how far it is ahead of now (its `tat - now`, after spending), which the worker mirrors
/// into the node's own buckets, and the tokens leased to the worker: granted only while the
/// bucket keeps at least as many for everyone else, so a bucket under load is never leased from.
/// A `tat` is stored as an integer string and expires when the bucket is full again.
pub const GCRA_LUA: &str = r#"
local now
local out = {0, 0}
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
for i, key in ipairs(KEYS) do
  local at = 2 + (i - 1) * 4
  local interval = tonumber(ARGV[at])
  local tau = tonumber(ARGV[at + 1])
  local span = tonumber(ARGV[at + 2])
  local want = tonumber(ARGV[at + 3])
  if interval == 0 then
    out[1] = i
    out[2] = -1
    return out
  end
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  if tat > now + span then tat = now + span end
  local ahead = tat - now
  if ahead > tau then
    out[1] = i
    out[2] = ahead - tau
    out[2 * i + 1] = ahead
    out[2 * i + 2] = 0
    return out
  end
  local next_tat = tat + interval
  local leased = 0
  if want > 0 and math.floor((tau - (next_tat - now)) / interval) + 1 >= 2 * want then
    leased = want
    next_tat = next_tat + want * interval
  end
  redis.call('SET', key, string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
  out[2 * i + 1] = next_tat - now
  out[2 * i + 2] = leased
end
return out
"#;

/// KEYS[1]: the quota period's count, KEYS[2]: the UTC day's, KEYS[3]: the labels of the usage
/// counts (`USAGE_LABELS`). ARGV: the period's limit (-1: no quota), the period's and the day's
/// count when missing (the node's durable counts), how long each key lives (ms), and the count's
/// hash and label (`usage\tPLAN\tKEY`), recorded with a new day's count so that every node's usage
/// writer can find the counts of keys it does not serve. Returns {1 admitted / 0 refused, period
/// count (-1: no quota), day count}; a refused request is not counted.
pub const QUOTA_LUA: &str = r#"
local limit = tonumber(ARGV[1])
local day = redis.call('GET', KEYS[2])
if not day then
  day = ARGV[3]
  redis.call('HSET', KEYS[3], ARGV[6], ARGV[7])
end
day = tonumber(day)
local used = -1
if limit >= 0 then
  used = tonumber(redis.call('GET', KEYS[1]) or ARGV[2])
  if used >= limit then
    return {0, used, day}
  end
  used = used + 1
  redis.call('SET', KEYS[1], string.format('%.0f', used), 'PX', ARGV[4])
end
day = day + 1
redis.call('SET', KEYS[2], string.format('%.0f', day), 'PX', ARGV[5])
return {1, used, day}
"#;

/// Hands back what one worker counted while Redis was lost. KEYS[1]: the period's count ("" for
/// none), KEYS[2]: the day's. ARGV: the requests counted, the node's period and day counts (the
/// shared counts it last saw plus what its workers counted since), and each key's lifetime (ms).
/// A count Redis kept is raised by the requests (exact); one Redis lost (restarted without its
/// data) starts again from the node's counts, which may hold a sibling worker's requests that
/// worker then adds again: after a data loss counts may come out high, never low.
pub const MERGE_LUA: &str = r#"
for i = 1, 2 do
  if KEYS[i] ~= '' then
    if redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('INCRBY', KEYS[i], ARGV[1])
    else
      redis.call('SET', KEYS[i], ARGV[1 + i], 'PX', ARGV[3 + i])
    end
  end
end
return 1
"#;

/// What a node does with a request whose limits Redis cannot decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Decide it on the node's own buckets and counts (the default).
    Open,
    /// Refuse it: 429 THROTTLED.
    Closed,
}

impl FailMode {
    pub fn parse(name: &str) -> Option<FailMode> {
        match name {
            "open" => Some(FailMode::Open),
            "closed" => Some(FailMode::Closed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    pub fail: FailMode,
    /// The longest a request waits on Redis.
    pub timeout: Duration,
    /// How long tokens leased from a shared bucket may be spent by the worker without asking
    /// Redis (zero: every request asks). Over any window of `t`, the nodes admit at most
    /// `burst + rate * (t + lease)`: each admitted request's token was spent on Redis at most
    /// `lease` before.
    pub lease: Duration,
}

/// A cluster option that cannot be used.
#[derive(Debug)]
pub struct ClusterError(pub String);

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

/// A bucket to spend from: its key hash and limit.
#[derive(Debug, Clone, Copy)]
pub struct Spend {
    pub hash: u64,
    pub limit: Limit,
}

/// The verdict on a chain of buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Admitted,
    /// The chain's `index`-th bucket refused; `wait_ns` until it has a token (`NEVER`: never).
    Refused {
        index: usize,
        wait_ns: u64,
    },
    /// Redis could not decide and the node fails closed.
    Unavailable,
}

/// A `Limit` on Redis's clock: whole microseconds, the interval rounded up.
pub fn micros(limit: &Limit) -> (u64, u64, u64) {
    if limit.refuses_all() {
        return (0, 0, 0);
    }
    let interval = limit.interval_ns.div_ceil(1000);
    let burst = limit.burst();
    (
        interval,
        burst.saturating_sub(1).saturating_mul(interval),
        burst.saturating_mul(interval),
    )
}

/// The most tokens of one bucket a worker leases at once.
pub const MAX_LEASE: u64 = 256;

/// Tokens of a shared bucket this worker may spend without asking Redis, until `expires_ns`.
#[derive(Debug, Clone, Copy)]
struct Lease {
    tokens: u64,
    expires_ns: u64,
}

/// What one worker counted for a usage-plan key while Redis was lost.
struct Pending {
    usage: Labelled,
    period: Option<(QuotaPeriod, i64)>,
    day: i64,
    requests: u64,
    period_ttl_ms: u64,
    day_ttl_ms: u64,
}

/// One worker's link to the cluster's Redis.
pub struct Cluster {
    client: Client,
    options: ClusterOptions,
    /// `host:port/db`, for log lines (never the password).
    place: String,
    /// The live connection; None while Redis is lost.
    link: Mutex<Option<MultiplexedConnection>>,
    up: AtomicBool,
    /// Set by a request whose call broke the connection; the supervisor reconnects.
    broken: tokio::sync::Notify,
    /// The node's own buckets (the fallback), whose table header holds a word every worker of
    /// the node maps, so that a loss and a recovery are logged once per node: even while Redis is
    /// reachable, odd while lost.
    local: Arc<Buckets>,
    /// The node's usage table: the shared counts are mirrored into it, the fallback counts in it.
    tally: Arc<Tally>,
    /// Buckets Redis found empty: monotonic ns until which they stay empty.
    empty_until: Mutex<HashMap<u64, u64>>,
    /// Tokens leased from shared buckets (`ClusterOptions::lease`), by bucket.
    leases: Mutex<HashMap<u64, Lease>>,
    /// Requests counted on the node's own table while Redis was lost, by (period key, day key).
    pending: Mutex<HashMap<(String, String), Pending>>,
    gcra: Script,
    quota: Script,
    merge: Script,
    /// Calls that failed or timed out (decided on the node's own tables, or refused).
    fallbacks: AtomicU64,
    /// When an error answer was last logged (monotonic ns).
    error_logged: AtomicU64,
}

fn redis_place(client: &Client) -> String {
    let info = client.get_connection_info();
    format!("{}/{}", info.addr, info.redis.db)
}

impl Cluster {
    /// `local`, `tally`: the node's own bucket and usage tables (shared by its workers).
    pub fn new(
        options: ClusterOptions,
        local: Arc<Buckets>,
        tally: Arc<Tally>,
    ) -> Result<Cluster, ClusterError> {
        let client = Client::open(options.url.as_str())
            .map_err(|e| ClusterError(format!("--redis {}: {e}", redact(&options.url))))?;
        let place = redis_place(&client);
        Ok(Cluster {
            client,
            options,
            place,
            link: Mutex::new(None),
            up: AtomicBool::new(false),
            broken: tokio::sync::Notify::new(),
            local,
            tally,
            empty_until: Mutex::new(HashMap::new()),
            leases: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            gcra: Script::new(GCRA_LUA),
            quota: Script::new(QUOTA_LUA),
            merge: Script::new(MERGE_LUA),
            fallbacks: AtomicU64::new(0),
            error_logged: AtomicU64::new(0),
        })
    }

    pub fn fail_mode(&self) -> FailMode {
        self.options.fail
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Calls decided without Redis so far (this worker).
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.is_up() {
            return None;
        }
        self.link.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Connect once (the supervisor, or a caller without one): Redis answered, and what this
    /// worker counted while it was lost has been handed back (before any request uses it).
    pub async fn connect(&self) -> Result<(), RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(CONNECT_TIMEOUT);
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        self.hand_back(&mut conn).await;
        *self.link.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        self.up.store(true, Ordering::Release);
        self.empty_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(())
    }

    fn log_loss(&self, why: &str) {
        let word = self.local.node_word();
        let current = word.load(Ordering::Acquire);
        if current % 2 == 0
            && word
                .compare_exchange(current, current + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let what = match self.options.fail {
                FailMode::Open => "each node applies its own throttles and quotas (fail-open)",
                FailMode::Closed => {
                    "requests with throttles or quotas are refused, 429 (fail-closed)"
                }
            };
            eprintln!(
                "portico: redis {} unreachable ({why}): {what} until it is back",
                self.place
            );
        }
    }

    fn log_recovery(&self) {
        let word = self.local.node_word();
        let current = word.load(Ordering::Acquire);
        if current % 2 == 1
            && word
                .compare_exchange(current, current + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            eprintln!(
                "portico: redis {} reachable again: throttles and quotas are shared again",
                self.place
            );
        }
    }

    /// Mark Redis lost (once per outage: the first caller logs).
    fn lose(&self, why: &str) {
        let was_up = self.up.swap(false, Ordering::AcqRel);
        *self.link.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if was_up {
            self.broken.notify_one();
        }
        self.log_loss(why);
    }

    /// A call failed: the connection is dropped when the error says it cannot be used again.
    fn failed(&self, error: Option<&RedisError>) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = error {
            self.errored(e);
        }
    }

    /// A call answered `e`: Redis is lost when `e` says the connection cannot be used again.
    fn errored(&self, e: &RedisError) {
        if e.is_io_error() || e.is_unrecoverable_error() || e.is_connection_dropped() {
            self.lose(&e.to_string());
        } else {
            // An answer that is an error (a script Redis refuses, a full memory): logged at most
            // every ten seconds per worker, since every request may meet it.
            let now = monotonic_ns();
            let last = self.error_logged.load(Ordering::Relaxed);
            if (last == 0 || now.saturating_sub(last) > 10_000_000_000)
                && self
                    .error_logged
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                eprintln!(
                    "portico: redis {} answered an error ({e}): decided without it",
                    self.place
                );
            }
        }
    }

    /// Keep the connection: reconnect while lost, check it while up, hand back what was counted
    /// meanwhile. Runs on the core's runtime until it stops.
    /// `first`: told when the first connection attempt is over.
    pub async fn supervise(self: Arc<Self>, first: Option<std::sync::mpsc::Sender<bool>>) {
        let mut first = first;
        loop {
            if !self.is_up() {
                match tokio::time::timeout(CONNECT_TIMEOUT * 2, self.connect()).await {
                    Ok(Ok(())) => self.log_recovery(),
                    Ok(Err(e)) => self.log_loss(&e.to_string()),
                    Err(_) => self.log_loss("no answer"),
                }
                if let Some(told) = first.take() {
                    let _ = told.send(self.is_up());
                }
            }
            let tick = tokio::time::sleep(HEALTH_INTERVAL);
            tokio::select! {
                _ = tick => {}
                _ = self.broken.notified() => continue,
            }
            if let Some(mut conn) = self.connection() {
                let ping = redis::cmd("PING");
                match tokio::time::timeout(CONNECT_TIMEOUT, ping.query_async::<()>(&mut conn)).await
                {
                    Ok(Ok(())) => {
                        self.forget_refilled();
                        // Counts Redis refused with an error answer while it stayed reachable.
                        self.hand_back(&mut conn).await;
                    }
                    Ok(Err(e)) => self.lose(&e.to_string()),
                    Err(_) => self.lose("no answer to PING"),
                }
            }
        }
    }

    /// The client of the cluster's Redis, for connections of their own (pub/sub).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `PUBLISH payload` on `channel` (`crate::websocket::relay`): how many subscribers received
    /// it; None when Redis is lost, or did not answer within `wait`.
    pub async fn publish(&self, channel: &str, payload: &[u8], wait: Duration) -> Option<i64> {
        let mut conn = self.connection()?;
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(channel).arg(payload);
        match tokio::time::timeout(wait, publish.query_async::<i64>(&mut conn)).await {
            Ok(Ok(receivers)) => Some(receivers),
            Ok(Err(e)) => {
                self.errored(&e);
                None
            }
            Err(_) => None,
        }
    }

    fn forget_refilled(&self) {
        let now = monotonic_ns();
        self.empty_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, until| *until > now);
    }

    /// The tokens to lease from a bucket of `limit`: what it refills in one lease period.
    fn lease_size(&self, limit: &Limit) -> u64 {
        if self.options.lease.is_zero() || limit.refuses_all() {
            return 0;
        }
        let tokens = (limit.rate() * self.options.lease.as_secs_f64()).floor();
        let tokens = if tokens.is_finite() { tokens as u64 } else { 0 };
        if tokens < 2 {
            0
        } else {
            tokens.min(MAX_LEASE)
        }
    }

    /// Spend one token from each bucket of `chain`, in order, on Redis's clock: buckets this
    /// worker holds leased tokens of are spent here, the rest in one script run (`now_us` given: on
    /// that clock instead, without leases or the worker's memory of empty buckets, for tests).
    pub async fn spend(&self, chain: &[Spend], now_us: Option<u64>) -> Spent {
        let live = now_us.is_none();
        let mut start = 0;
        if live {
            let now = monotonic_ns();
            let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(bucket) = chain.get(start) {
                match leases.get_mut(&bucket.hash) {
                    Some(lease) if lease.tokens > 0 && lease.expires_ns > now => {
                        lease.tokens -= 1;
                        start += 1;
                    }
                    _ => break,
                }
            }
        }
        let rest = &chain[start..];
        let Some(first) = rest.first() else {
            return Spent::Admitted;
        };
        if live {
            let now = monotonic_ns();
            let until = self
                .empty_until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&first.hash)
                .copied();
            if let Some(until) = until.filter(|u| *u > now) {
                return Spent::Refused {
                    index: start,
                    wait_ns: until - now,
                };
            }
        }
        let Some(mut conn) = self.connection() else {
            return self.spend_without(chain, start);
        };
        let mut call = self.gcra.prepare_invoke();
        call.arg(now_us.map_or_else(String::new, |n| n.to_string()));
        for bucket in rest {
            let (interval, tau, span) = micros(&bucket.limit);
            let lease = if live {
                self.lease_size(&bucket.limit)
            } else {
                0
            };
            call.key(bucket_key(bucket.hash))
                .arg(interval)
                .arg(tau)
                .arg(span)
                .arg(lease);
        }
        let answer = tokio::time::timeout(
            self.options.timeout,
            call.invoke_async::<Vec<i64>>(&mut conn),
        )
        .await;
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                self.failed(Some(&e));
                return self.spend_without(chain, start);
            }
            Err(_) => {
                self.failed(None);
                return self.spend_without(chain, start);
            }
        };
        if live {
            self.mirror_buckets(rest, &answer);
        }
        match (answer.first().copied(), answer.get(1).copied()) {
            (Some(0), _) => Spent::Admitted,
            (Some(index), Some(wait_us)) if index >= 1 && (index as usize) <= rest.len() => {
                let wait_ns = if wait_us < 0 {
                    NEVER
                } else {
                    (wait_us as u64).saturating_mul(1000)
                };
                if index == 1 && live && wait_ns != NEVER {
                    let until = monotonic_ns().saturating_add(wait_ns);
                    self.empty_until
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(first.hash, until);
                }
                Spent::Refused {
                    index: start + index as usize - 1,
                    wait_ns,
                }
            }
            _ => {
                self.failed(None);
                self.spend_without(chain, start)
            }
        }
    }

    /// Make the node's own buckets as spent as Redis answered the shared ones are (`GCRA_LUA`'s
    /// `tat - now` of each), so that a call that fails later falls back on the last shared state
    /// rather than on a full bucket: what the fallback admits past the shared limit is then at
    /// most what the other nodes spent since.
    fn mirror_buckets(&self, chain: &[Spend], answer: &[i64]) {
        let now = monotonic_ns();
        let expires_ns = now.saturating_add(self.options.lease.as_nanos() as u64);
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        for (bucket, looked) in chain.iter().zip(answer.get(2..).unwrap_or(&[]).chunks(2)) {
            let (ahead_us, leased) = (looked[0], looked.get(1).copied().unwrap_or(0));
            if ahead_us > 0 {
                let tat = now.saturating_add((ahead_us as u64).saturating_mul(1000));
                self.local.raise_tat(bucket.hash, &bucket.limit, tat);
            }
            if leased > 0 {
                let tokens = leased as u64;
                leases.insert(bucket.hash, Lease { tokens, expires_ns });
            }
        }
        if leases.len() > 4096 {
            leases.retain(|_, lease| lease.expires_ns > now && lease.tokens > 0);
        }
    }

    /// The chain from `start` on decided without Redis: on the node's own buckets, or refused.
    fn spend_without(&self, chain: &[Spend], start: usize) -> Spent {
        if self.options.fail == FailMode::Closed {
            return Spent::Unavailable;
        }
        let now = monotonic_ns();
        for (index, bucket) in chain.iter().enumerate().skip(start) {
            let wait_ns = self.local.try_acquire(bucket.hash, &bucket.limit, now);
            if wait_ns != 0 {
                return Spent::Refused { index, wait_ns };
            }
        }
        Spent::Admitted
    }

    /// Count one request of a usage-plan key in the shared counts (see `QUOTA_LUA`); None when
    /// Redis cannot and the node fails closed.
    pub async fn count(
        &self,
        usage: &Labelled,
        quota: Option<&Quota>,
        base: &UsageBase,
        now_ms: u64,
    ) -> Option<Counted> {
        let day = day_of(now_ms);
        let period = quota.map(|q| (q, q.period.index_of_day(day)));
        let keys = CountKeys::new(usage, period.map(|(q, i)| (q.period, i)), day, now_ms);
        let tally = &*self.tally;
        let Some(mut conn) = self.connection() else {
            return self.count_without(usage, quota, base, now_ms, keys, true);
        };
        let (limit, period_seed) = match period {
            Some((q, index)) => (
                q.limit_in(index, base.credit(q.period, index))
                    .min(i64::MAX as u64) as i64,
                tally.period_seed(usage, q.period, index, base),
            ),
            None => (-1, 0),
        };
        let day_seed = tally.day_seed(usage, day, base);
        let mut call = self.quota.prepare_invoke();
        call.key(keys.period.as_deref().unwrap_or(""))
            .key(&keys.day)
            .key(USAGE_LABELS)
            .arg(limit)
            .arg(period_seed)
            .arg(day_seed)
            .arg(keys.period_ttl_ms.max(1))
            .arg(keys.day_ttl_ms)
            .arg(format!("{:016x}", usage.hash))
            .arg(&*usage.label);
        let answer = tokio::time::timeout(
            self.options.timeout,
            call.invoke_async::<(i64, i64, i64)>(&mut conn),
        )
        .await;
        let (admitted, used, day_count) = match answer {
            Ok(Ok(counts)) => counts,
            Ok(Err(e)) => {
                self.failed(Some(&e));
                return self.count_without(usage, quota, base, now_ms, keys, true);
            }
            // The call is on its way: Redis will most likely count it when it gets to it, so the
            // request is decided on the node's table but not handed back (which would count it twice).
            Err(_) => {
                self.failed(None);
                return self.count_without(usage, quota, base, now_ms, keys, false);
            }
        };
        let (used, day_count) = (used.max(0) as u64, day_count.max(0) as u64);
        tally.mirror(
            usage,
            period.map(|(q, i)| (q.period, i, used)),
            day,
            day_count,
        );
        let state = period.map(|(q, index)| {
            let limit = limit.max(0) as u64;
            QuotaState {
                limit,
                remaining: limit.saturating_sub(used),
                reset_ms: (q.period.end_day(index) as u64 * DAY_MS).saturating_sub(now_ms),
            }
        });
        Some(match (admitted, state) {
            (0, Some(state)) => Counted::Exceeded(state),
            (_, state) => Counted::Admitted(state),
        })
    }

    /// Counted on the node's own table, and (`hand_back`) remembered to be handed back to Redis;
    /// or, failing closed, not at all.
    fn count_without(
        &self,
        usage: &Labelled,
        quota: Option<&Quota>,
        base: &UsageBase,
        now_ms: u64,
        keys: CountKeys,
        hand_back: bool,
    ) -> Option<Counted> {
        if self.options.fail == FailMode::Closed {
            return None;
        }
        let counted = self.tally.count(usage, quota, base, now_ms);
        if hand_back && matches!(counted, Counted::Admitted(_)) {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let day = day_of(now_ms);
            let entry = pending
                .entry((keys.period.clone().unwrap_or_default(), keys.day.clone()))
                .or_insert_with(|| Pending {
                    usage: usage.clone(),
                    period: quota.map(|q| (q.period, q.period.index_of_day(day))),
                    day,
                    requests: 0,
                    period_ttl_ms: keys.period_ttl_ms,
                    day_ttl_ms: keys.day_ttl_ms,
                });
            entry.requests += 1;
        }
        Some(counted)
    }

    /// Add what this worker counted while Redis was lost to the shared counts.
    async fn hand_back(&self, conn: &mut MultiplexedConnection) {
        let pending: Vec<_> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        if pending.is_empty() {
            return;
        }
        let mut unsent = Vec::new();
        for ((period_key, day_key), p) in pending {
            // What the node's table holds: the counts mirrored from Redis and those counted since.
            let (period_total, day_total) = self.tally.counts(&p.usage, p.period, p.day);
            let (period_total, day_total) =
                (period_total.max(p.requests), day_total.max(p.requests));
            let mut call = self.merge.prepare_invoke();
            call.key(&period_key)
                .key(&day_key)
                .arg(p.requests)
                .arg(period_total)
                .arg(day_total)
                .arg(p.period_ttl_ms.max(1))
                .arg(p.day_ttl_ms.max(1));
            let sent = tokio::time::timeout(CONNECT_TIMEOUT, call.invoke_async::<i64>(conn)).await;
            if !matches!(sent, Ok(Ok(_))) {
                unsent.push(((period_key, day_key), p));
            }
        }
        if !unsent.is_empty() {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (key, p) in unsent {
                match pending.get_mut(&key) {
                    Some(q) => q.requests += p.requests,
                    None => {
                        pending.insert(key, p);
                    }
                }
            }
        }
    }
}

/// The Redis keys of one usage-plan key's counts.
struct CountKeys {
    period: Option<String>,
    day: String,
    period_ttl_ms: u64,
    day_ttl_ms: u64,
}

impl CountKeys {
    fn new(
        usage: &Labelled,
        period: Option<(QuotaPeriod, i64)>,
        day: i64,
        now_ms: u64,
    ) -> CountKeys {
        let hash = usage.hash;
        CountKeys {
            period: period.map(|(p, i)| format!("{PREFIX}q:{hash:016x}:{}:{i}", p.name())),
            day: format!("{PREFIX}d:{hash:016x}:{day}"),
            // Kept a day past the period's end, and two past the day's (the usage writers read
            // yesterday's final count after midnight).
            period_ttl_ms: period.map_or(0, |(p, i)| {
                ((p.end_day(i) as u64 + 1) * DAY_MS).saturating_sub(now_ms)
            }),
            day_ttl_ms: ((day as u64 + 3) * DAY_MS).saturating_sub(now_ms),
        }
    }
}

fn bucket_key(hash: u64) -> String {
    format!("{PREFIX}b:{hash:016x}")
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_on_redis_clock_round_the_interval_up() {
        let l = Limit::new(500.0, 100);
        assert_eq!(micros(&l), (2000, 99 * 2000, 100 * 2000));
        let l = Limit::new(3.0, 2);
        let (interval, tau, span) = micros(&l);
        assert_eq!(interval, 333_334);
        assert_eq!((tau, span), (333_334, 666_668));
        assert!(interval as f64 * 3.0 >= 1e6);
        assert_eq!(micros(&Limit::new(0.0, 5)), (0, 0, 0));
        let huge = Limit::new(1e-12, i64::MAX);
        let (_, tau, span) = micros(&huge);
        assert!(tau < span, "no overflow");
    }

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(redact("redis://:secret@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }

    #[test]
    fn fail_modes_parse() {
        assert_eq!(FailMode::parse("open"), Some(FailMode::Open));
        assert_eq!(FailMode::parse("closed"), Some(FailMode::Closed));
        assert_eq!(FailMode::parse("shut"), None);
    }

    #[test]
    fn count_keys_name_the_period_and_live_past_it() {
        let usage = Labelled::new(crate::usage::usage_label("p", "k"));
        let now = 19_800 * DAY_MS + 5;
        let keys = CountKeys::new(&usage, Some((QuotaPeriod::Day, 19_800)), 19_800, now);
        assert!(keys.period.as_deref().unwrap().ends_with(":DAY:19800"));
        assert!(keys.day.ends_with(":19800"));
        assert_eq!(keys.period_ttl_ms, 2 * DAY_MS - 5);
        assert_eq!(keys.day_ttl_ms, 3 * DAY_MS - 5);
        let none = CountKeys::new(&usage, None, 19_800, now);
        assert_eq!((none.period, none.period_ttl_ms), (None, 0));
    }

    fn tables() -> (Arc<Buckets>, Arc<Tally>) {
        (
            Arc::new(Buckets::anonymous(16).unwrap()),
            Arc::new(Tally::anonymous(16).unwrap()),
        )
    }

    #[test]
    fn a_bad_url_is_refused() {
        let (buckets, tally) = tables();
        let options = ClusterOptions {
            url: "http://nope".into(),
            fail: FailMode::Open,
            timeout: Duration::from_millis(5),
            lease: Duration::ZERO,
        };
        assert!(Cluster::new(options, buckets, tally).is_err());
    }

    #[test]
    fn without_redis_fail_open_decides_locally_and_fail_closed_refuses() {
        let (buckets, tally) = tables();
        let options = |fail| ClusterOptions {
            url: "redis://127.0.0.1:1/0".into(),
            fail,
            timeout: Duration::from_millis(5),
            lease: Duration::ZERO,
        };
        let open = Cluster::new(options(FailMode::Open), buckets.clone(), tally.clone()).unwrap();
        let chain = [Spend {
            hash: 7,
            limit: Limit::new(1.0, 2),
        }];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Never connected: nothing waits on Redis.
        let verdicts: Vec<_> = (0..3)
            .map(|_| rt.block_on(open.spend(&chain, None)))
            .collect();
        assert_eq!(verdicts[..2], [Spent::Admitted, Spent::Admitted]);
        assert!(matches!(verdicts[2], Spent::Refused { index: 0, .. }));
        let closed = Cluster::new(options(FailMode::Closed), buckets, tally).unwrap();
        assert_eq!(rt.block_on(closed.spend(&chain, None)), Spent::Unavailable);
        let usage = Labelled::new(crate::usage::usage_label("p", "k"));
        let q = Quota {
            period: QuotaPeriod::Day,
            limit: 1,
            offset: 0,
            initial: None,
        };
        let base = UsageBase::default();
        let now = 19_000 * DAY_MS;
        assert!(matches!(
            rt.block_on(open.count(&usage, Some(&q), &base, now)),
            Some(Counted::Admitted(_))
        ));
        assert!(matches!(
            rt.block_on(open.count(&usage, Some(&q), &base, now)),
            Some(Counted::Exceeded(_))
        ));
        assert_eq!(
            open.pending
                .lock()
                .unwrap()
                .values()
                .map(|p| p.requests)
                .sum::<u64>(),
            1
        );
        assert_eq!(
            rt.block_on(closed.count(&usage, Some(&q), &base, now)),
            None
        );
        // A connection refused is an error, not a wait.
        assert!(rt.block_on(open.connect()).is_err());
    }
}
