//! The usage-plan phase (see docs/pipeline.md): a request whose API key passed is held to the
//! per-key limits of the usage plan bound to its stage, as "Throttle requests to your REST APIs"
//! and "Usage plans" in the developer guide apply them: the plan's throttle for the method (its
//! per-method throttle `apiStages[].throttle["/path/METHOD"]`, else the plan's `throttle`), then
//! the plan's quota. The stage's and the account's buckets were spent by the throttle phase.
//!
//! Refusals: 429 `{"message":"Too Many Requests"}` (THROTTLED) and 429 `{"message":"Limit
//! Exceeded"}` (QUOTA_EXCEEDED, `x-amzn-ErrorType: LimitExceededException`), each counted for the
//! stage and the key (`crate::usage::Tally`, read by `/metrics`). With `settings.rateLimitHeaders`
//! the answers carry `RateLimit-Limit/Remaining/Reset` (and `Retry-After` when refused).

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};

use super::{Exchange, Failure, Pipeline, UNAVAILABLE_RETRY_NS};
use crate::cluster::{Spend, Spent};
use crate::gateway::Snapshot;
use crate::pipeline::responses::ErrorType;
use crate::throttle::{monotonic_ns, NEVER};
use crate::usage::{Counted, Counter, QuotaState};

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Whole seconds, rounded up (a client waiting that long finds room).
fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds), and `Retry-After` (the
/// same seconds) when `refused`. `reset_ms` None: the limit never resets (a rate of 0).
pub(super) fn limit_headers(
    limit: u64,
    remaining: u64,
    reset_ms: Option<u64>,
    refused: bool,
) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
    let reset = reset_ms.map(seconds);
    [
        Some((RATELIMIT_LIMIT, HeaderValue::from(limit))),
        Some((RATELIMIT_REMAINING, HeaderValue::from(remaining))),
        reset.map(|s| (RATELIMIT_RESET, HeaderValue::from(s))),
        reset
            .filter(|_| refused)
            .map(|s| (RETRY_AFTER, HeaderValue::from(s))),
    ]
    .into_iter()
    .flatten()
}

/// The answer to a request a bucket refused: `wait_ms` until it has a token, `burst` its size.
pub(super) fn throttled(snap: &Snapshot, wait_ms: u64, burst: u64) -> Failure {
    let mut failure = Failure::new(ErrorType::Throttled, format!("retry after {wait_ms} ms"));
    if snap.settings.rate_limit_headers {
        let reset = (wait_ms != NEVER).then_some(wait_ms);
        failure.headers.extend(limit_headers(burst, 0, reset, true));
    }
    failure
}

/// The quota's headers on an admitted request (with `rateLimitHeaders`).
pub(super) fn quota_headers(state: &QuotaState) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
    limit_headers(state.limit, state.remaining, Some(state.reset_ms), false)
}

impl Pipeline {
    /// Hold the request's API key to its usage plan's throttle and quota; with
    /// `rateLimitHeaders`, what is left of the quota goes into `ex.quota` for the answer.
    pub(super) async fn usage_plan(
        &self,
        snap: &Snapshot,
        ex: &mut Exchange,
    ) -> Result<(), Failure> {
        let Some(key) = ex.auth.api_key.as_ref() else {
            return Ok(());
        };
        let keys = &snap.api_keys;
        let Some(plan_key) = keys.plan_key(key) else {
            return Ok(());
        };
        let (Some(api), Some(serving), Some(route)) = (ex.api, ex.serving.as_deref(), ex.route())
        else {
            return Ok(());
        };
        let tally = self.gateway.tally();
        let refused = |refusal: Counter| {
            tally.bump(&serving.counter, refusal);
            if let Some(counter) = keys.counter(key) {
                tally.bump(counter, refusal);
            }
        };
        let api_id = &snap.api(api).id;
        let cluster = self.gateway.cluster();
        if let Some(bucket) = plan_key.bucket_for(api_id, &serving.stage, &route.key) {
            let wait = match cluster {
                None => {
                    self.gateway
                        .buckets()
                        .try_acquire(bucket.hash, &bucket.limit, monotonic_ns())
                }
                Some(cluster) => {
                    let spend = Spend {
                        hash: bucket.hash,
                        limit: bucket.limit,
                    };
                    match cluster.spend(&[spend], None).await {
                        Spent::Admitted => 0,
                        Spent::Refused { wait_ns, .. } => wait_ns,
                        Spent::Unavailable => UNAVAILABLE_RETRY_NS,
                    }
                }
            };
            if wait != 0 {
                refused(Counter::Throttled);
                let wait_ms = if wait == NEVER {
                    NEVER
                } else {
                    wait.div_ceil(1_000_000)
                };
                return Err(throttled(snap, wait_ms, bucket.burst));
            }
        }
        let plan = keys.plan(plan_key);
        let counted = match cluster {
            None => tally.count(
                &plan_key.usage,
                plan.quota.as_ref(),
                &plan_key.base,
                ex.epoch_ms,
            ),
            Some(cluster) => {
                let counted = cluster
                    .count(
                        &plan_key.usage,
                        plan.quota.as_ref(),
                        &plan_key.base,
                        ex.epoch_ms,
                    )
                    .await;
                match counted {
                    Some(counted) => counted,
                    None => {
                        // Redis cannot count and the node fails closed.
                        refused(Counter::Throttled);
                        return Err(throttled(snap, UNAVAILABLE_RETRY_NS / 1_000_000, 0));
                    }
                }
            }
        };
        match counted {
            Counted::Admitted(state) => {
                if snap.settings.rate_limit_headers {
                    ex.quota = state;
                }
                Ok(())
            }
            Counted::Exceeded(state) => {
                refused(Counter::QuotaExceeded);
                let mut failure = Failure::new(
                    ErrorType::QuotaExceeded,
                    format!("usage plan {}: quota of {} used up", plan.id, state.limit),
                );
                if snap.settings.rate_limit_headers {
                    failure.headers.extend(limit_headers(
                        state.limit,
                        0,
                        Some(state.reset_ms),
                        true,
                    ));
                }
                Err(failure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_seconds_up_and_retry_only_when_refused() {
        let h: Vec<_> = limit_headers(10, 0, Some(1_001), true).collect();
        let text: Vec<(String, String)> = h
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            text,
            [
                ("ratelimit-limit", "10"),
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", "2"),
                ("retry-after", "2")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(limit_headers(5, 3, Some(10), false).count(), 3);
        assert_eq!(limit_headers(0, 0, None, true).count(), 2);
    }
}
