//! API keys (REST APIs' `apiKeyRequired`) and the usage plans that hold them, served from memory:
//! the spec carries each key's SHA-256 and the stages its usage plans are bound to, never the value
//! itself. A presented key is hashed and looked up, so no comparison runs over the secret's bytes.
//!
//! A key passes when it exists, is enabled and a usage plan holding it is bound to the request's
//! API and stage ("Choose an API key source" and "Usage plans" in the developer guide); anything
//! else is AWS's 403 `{"message":"Forbidden"}` (INVALID_API_KEY). A key that passes is then held
//! to that plan's per-key limits (`crate::pipeline::usage_plan`): the plan's throttle, or the
//! plan's per-method throttle for the stage's method, and the plan's quota.

use std::collections::HashMap;

use ring::digest::{digest, SHA256};

use super::ApiKeyIdentity;
use crate::spec::{ApiKeySpec, LimitSpec, UsagePlanSpec};
use crate::throttle::{key_hash, Limit};
use crate::usage::{self, Labelled, Quota, UsageBase};

/// A token bucket of a plan's key: where it lives in the bucket table, and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanBucket {
    pub hash: u64,
    pub limit: Limit,
    /// The bucket's size (`burstLimit`), for `RateLimit-Limit`.
    pub burst: u64,
}

/// A usage plan, compiled.
#[derive(Debug)]
pub struct Plan {
    pub id: Box<str>,
    pub quota: Option<Quota>,
}

/// One key in one plan: its buckets, its usage counter and what is durable of its usage.
#[derive(Debug)]
pub struct PlanKey {
    pub plan: u32,
    /// The plan's `throttle`: the key's bucket across every stage of the plan.
    pub bucket: Option<PlanBucket>,
    /// The plan's per-method throttles: (API id, stage, route key `GET /pets`, the key's bucket
    /// for that method). One that applies replaces `bucket` for its method.
    pub methods: Vec<(Box<str>, Box<str>, Box<str>, PlanBucket)>,
    pub usage: Labelled,
    pub base: UsageBase,
}

impl PlanKey {
    /// The bucket a request to `route_key` of `api`/`stage` spends from: the plan's method
    /// throttle for it, else the plan's throttle.
    pub fn bucket_for(&self, api: &str, stage: &str, route_key: &str) -> Option<&PlanBucket> {
        self.methods
            .iter()
            .find(|(a, s, r, _)| &**a == api && &**s == stage && &**r == route_key)
            .map(|(.., b)| b)
            .or(self.bucket.as_ref())
    }
}

#[derive(Debug)]
struct Binding {
    api: Box<str>,
    stage: Box<str>,
    /// Index into `ApiKeys::plan_keys` (None: bound without a plan in the spec).
    plan_key: Option<u32>,
}

#[derive(Debug)]
struct Key {
    id: Box<str>,
    enabled: bool,
    bindings: Vec<Binding>,
    /// The key's refusal counters.
    counter: Labelled,
}

#[derive(Debug, Default)]
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], usize>,
    keys: Vec<Key>,
    pub plans: Vec<Plan>,
    pub plan_keys: Vec<PlanKey>,
}

fn sha256(value: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, value).as_ref());
    out
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn limit(l: &LimitSpec, at: &str) -> Result<PlanBucket, String> {
    if !l.rate.is_finite() || l.rate < 0.0 {
        return Err(format!("{at}.rate: expected a number >= 0"));
    }
    if l.burst < 0 {
        return Err(format!("{at}.burst: expected an integer >= 0"));
    }
    Ok(PlanBucket {
        hash: 0,
        limit: Limit::new(l.rate, l.burst),
        burst: l.burst as u64,
    })
}

/// `/pets/{id}/GET` -> `GET /pets/{id}`; `//GET` -> `GET /`.
fn route_key_of(method_path: &str) -> Option<String> {
    let (path, method) = method_path.rsplit_once('/')?;
    if !path.starts_with('/') || method.is_empty() || method.contains(' ') {
        return None;
    }
    Some(format!("{} {}", method.to_ascii_uppercase(), path))
}

fn bucket_hash(parts: &[&str]) -> u64 {
    key_hash(parts.join("\0").as_bytes())
}

fn compile_plan(
    p: &UsagePlanSpec,
    at: &str,
    plan_index: u32,
    key_index: &HashMap<&str, usize>,
    plan_keys: &mut Vec<PlanKey>,
    bindings: &mut [Vec<Binding>],
) -> Result<Plan, String> {
    let throttle = p
        .throttle
        .as_ref()
        .map(|t| limit(t, &format!("{at}.throttle")))
        .transpose()?;
    let quota = match &p.quota {
        None => None,
        Some(q) => {
            if q.limit < 0 || q.offset < 0 {
                return Err(format!("{at}.quota: limit and offset are integers >= 0"));
            }
            Some(Quota {
                period: q.period,
                limit: q.limit as u64,
                offset: q.offset as u64,
                initial: q
                    .since_ms
                    .map(|ms| q.period.index_of_day(usage::day_of(ms))),
            })
        }
    };
    let mut methods = Vec::new();
    for (si, s) in p.stages.iter().enumerate() {
        for (key, l) in &s.method_throttle {
            let route = route_key_of(key)
                .ok_or_else(|| format!("{at}.stages[{si}].method_throttle: {key:?}: expected /{{resourcePath}}/{{METHOD}}"))?;
            let bucket = limit(l, &format!("{at}.stages[{si}].method_throttle[{key:?}]"))?;
            methods.push((s.api_id.as_str(), s.stage.as_str(), route, bucket));
        }
    }
    let period = quota.map(|q| q.period);
    for k in &p.keys {
        let Some(&ki) = key_index.get(k.id.as_str()) else {
            // A plan key whose API key is gone (deleted meanwhile): nothing to serve.
            continue;
        };
        let id = k.id.as_str();
        let plan_id = p.id.as_str();
        let base = UsageBase {
            days: k.days.clone(),
            credits: match period {
                Some(period) => k.credits.iter().map(|(i, c)| (period, *i, *c)).collect(),
                None => Vec::new(),
            },
        };
        let pk = PlanKey {
            plan: plan_index,
            bucket: throttle.map(|b| PlanBucket {
                hash: bucket_hash(&["plan", plan_id, id]),
                ..b
            }),
            methods: methods
                .iter()
                .map(|(api, stage, route, b)| {
                    let hash = bucket_hash(&["plan", plan_id, id, api, stage, route]);
                    (
                        (*api).into(),
                        (*stage).into(),
                        route.as_str().into(),
                        PlanBucket { hash, ..*b },
                    )
                })
                .collect(),
            usage: Labelled::new(usage::usage_label(plan_id, id)),
            base,
        };
        plan_keys.push(pk);
        let index = (plan_keys.len() - 1) as u32;
        for s in &p.stages {
            bindings[ki].push(Binding {
                api: s.api_id.as_str().into(),
                stage: s.stage.as_str().into(),
                plan_key: Some(index),
            });
        }
    }
    Ok(Plan {
        id: p.id.as_str().into(),
        quota,
    })
}

impl ApiKeys {
    pub fn compile(keys: &[ApiKeySpec], plans: &[UsagePlanSpec]) -> Result<ApiKeys, String> {
        let mut by_hash = HashMap::with_capacity(keys.len());
        let mut key_index: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let hash = parse_hex(&k.value_sha256)
                .ok_or_else(|| format!("api_keys[{i}].value_sha256: expected 64 hex digits"))?;
            if by_hash.insert(hash, i).is_some() {
                return Err(format!(
                    "api_keys[{i}]: the same value as another key (values are unique)"
                ));
            }
            key_index.insert(k.id.as_str(), i);
        }
        let mut bindings: Vec<Vec<Binding>> = keys.iter().map(|_| Vec::new()).collect();
        let mut plan_keys = Vec::new();
        let mut compiled = Vec::with_capacity(plans.len());
        for (pi, p) in plans.iter().enumerate() {
            let at = format!("usage_plans[{pi}]");
            compiled.push(compile_plan(
                p,
                &at,
                pi as u32,
                &key_index,
                &mut plan_keys,
                &mut bindings,
            )?);
        }
        let keys = keys
            .iter()
            .zip(bindings)
            .map(|(k, mut bound)| {
                // Stages named by the key spec without a plan of the spec (no usage plans given).
                for stage in &k.stages {
                    let (api, stage) = stage.split_once('/').unwrap_or((stage, ""));
                    if !bound.iter().any(|b| &*b.api == api && &*b.stage == stage) {
                        bound.push(Binding {
                            api: api.into(),
                            stage: stage.into(),
                            plan_key: None,
                        });
                    }
                }
                Key {
                    id: k.id.as_str().into(),
                    enabled: k.enabled,
                    bindings: bound,
                    counter: Labelled::new(usage::key_label(&k.id)),
                }
            })
            .collect();
        Ok(ApiKeys {
            by_hash,
            keys,
            plans: compiled,
            plan_keys,
        })
    }

    /// The key `value` if it may call stage `stage` of API `api_id`.
    pub fn check(&self, value: &str, api_id: &str, stage: &str) -> Option<ApiKeyIdentity> {
        let index = *self.by_hash.get(&sha256(value.as_bytes()))?;
        let key = &self.keys[index];
        if !key.enabled {
            return None;
        }
        let binding = key
            .bindings
            .iter()
            .find(|b| &*b.api == api_id && &*b.stage == stage)?;
        Some(ApiKeyIdentity {
            value: value.to_owned(),
            id: key.id.to_string(),
            index: index as u32,
            plan_key: binding.plan_key,
        })
    }

    /// The plan membership a checked key passed with.
    pub fn plan_key(&self, key: &ApiKeyIdentity) -> Option<&PlanKey> {
        self.plan_keys.get(key.plan_key? as usize)
    }

    /// The refusal counters of a checked key.
    pub fn counter(&self, key: &ApiKeyIdentity) -> Option<&Labelled> {
        self.keys.get(key.index as usize).map(|k| &k.counter)
    }

    pub fn plan(&self, plan_key: &PlanKey) -> &Plan {
        &self.plans[plan_key.plan as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{PlanKeySpec, PlanStageSpec, QuotaSpec};
    use crate::usage::QuotaPeriod;

    fn hex(value: &str) -> String {
        sha256(value.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn spec(id: &str, value: &str, enabled: bool, stages: &[&str]) -> ApiKeySpec {
        ApiKeySpec {
            id: id.into(),
            value_sha256: hex(value),
            enabled,
            stages: stages.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_key_passes_only_enabled_and_bound_to_the_stage() {
        let keys = ApiKeys::compile(
            &[
                spec("k1", "a-key-value-of-twenty-chars", true, &["api1/prod"]),
                spec("k2", "a-disabled-key-value-00", false, &["api1/prod"]),
            ],
            &[],
        )
        .unwrap();
        let ok = keys
            .check("a-key-value-of-twenty-chars", "api1", "prod")
            .unwrap();
        assert_eq!(ok.id, "k1");
        assert!(keys.plan_key(&ok).is_none());
        assert!(keys
            .check("a-key-value-of-twenty-chars", "api1", "dev")
            .is_none());
        assert!(keys
            .check("a-key-value-of-twenty-chars", "api2", "prod")
            .is_none());
        assert!(keys
            .check("a-disabled-key-value-00", "api1", "prod")
            .is_none());
        assert!(keys
            .check("unknown-key-value-000000", "api1", "prod")
            .is_none());
    }

    #[test]
    fn malformed_and_duplicate_hashes_are_refused() {
        let mut bad = spec("k", "v", true, &[]);
        bad.value_sha256 = "zz".into();
        assert!(ApiKeys::compile(&[bad], &[])
            .unwrap_err()
            .contains("64 hex"));
        let twice = [
            spec("a", "same-value", true, &[]),
            spec("b", "same-value", true, &[]),
        ];
        assert!(ApiKeys::compile(&twice, &[])
            .unwrap_err()
            .contains("unique"));
    }

    fn plan(id: &str, keys: &[&str], stages: &[(&str, &str)]) -> UsagePlanSpec {
        UsagePlanSpec {
            id: id.into(),
            throttle: Some(LimitSpec {
                rate: 1.0,
                burst: 10,
            }),
            quota: Some(QuotaSpec {
                limit: 100,
                period: QuotaPeriod::Week,
                offset: 10,
                since_ms: Some(0),
            }),
            stages: stages
                .iter()
                .map(|(a, s)| PlanStageSpec {
                    api_id: (*a).into(),
                    stage: (*s).into(),
                    method_throttle: [(
                        "/pets/{id}/GET".to_string(),
                        LimitSpec {
                            rate: 2.0,
                            burst: 3,
                        },
                    )]
                    .into_iter()
                    .collect(),
                })
                .collect(),
            keys: keys
                .iter()
                .map(|k| PlanKeySpec {
                    id: (*k).into(),
                    days: vec![(5, 7)],
                    credits: vec![(0, 4)],
                })
                .collect(),
        }
    }

    #[test]
    fn a_key_in_a_plan_takes_the_plan_of_the_stage() {
        let keys = ApiKeys::compile(
            &[spec(
                "k1",
                "key-one-value-000000000",
                true,
                &["a/prod", "a/dev"],
            )],
            &[
                plan("gold", &["k1"], &[("a", "prod")]),
                plan("dev", &["k1", "gone"], &[("a", "dev")]),
            ],
        )
        .unwrap();
        let prod = keys.check("key-one-value-000000000", "a", "prod").unwrap();
        let pk = keys.plan_key(&prod).unwrap();
        assert_eq!(&*keys.plan(pk).id, "gold");
        let dev = keys.check("key-one-value-000000000", "a", "dev").unwrap();
        assert_eq!(&*keys.plan(keys.plan_key(&dev).unwrap()).id, "dev");
        // The method override replaces the plan's throttle for its method only; buckets are the
        // key's own in each plan.
        let method = pk.bucket_for("a", "prod", "GET /pets/{id}").unwrap();
        assert_eq!(method.burst, 3);
        assert_eq!(pk.bucket_for("a", "prod", "GET /pets").unwrap().burst, 10);
        assert_ne!(method.hash, pk.bucket.unwrap().hash);
        let dev_pk = keys.plan_key(&dev).unwrap();
        assert_ne!(dev_pk.bucket.unwrap().hash, pk.bucket.unwrap().hash);
        let quota = keys.plan(pk).quota.unwrap();
        assert_eq!(
            (quota.limit, quota.offset, quota.initial),
            (100, 10, Some(0))
        );
        assert_eq!(pk.base.day(5), 7);
        assert_eq!(pk.base.credit(QuotaPeriod::Week, 0), 4);
        assert_eq!(keys.counter(&prod).unwrap().label.as_ref(), b"key\tk1");
    }

    #[test]
    fn method_keys_name_a_path_and_a_method() {
        assert_eq!(route_key_of("//GET").as_deref(), Some("GET /"));
        assert_eq!(
            route_key_of("/pets/{id}/get").as_deref(),
            Some("GET /pets/{id}")
        );
        assert_eq!(route_key_of("pets/GET"), None);
        let mut bad = plan("p", &[], &[("a", "s")]);
        bad.stages[0].method_throttle = [(
            "GET".to_string(),
            LimitSpec {
                rate: 1.0,
                burst: 1,
            },
        )]
        .into_iter()
        .collect();
        let err = ApiKeys::compile(&[], &[bad]).unwrap_err();
        assert!(
            err.contains("usage_plans[0].stages[0].method_throttle"),
            "{err}"
        );
    }
}
