//! The compiled gateway snapshot and the phases that need no I/O: API and stage selection,
//! routing and throttling.
//!
//! Pure Rust, no PyO3. `Gateway` holds the current `Snapshot` behind an `ArcSwap`: `swap()`
//! compiles a new one and publishes it atomically while in-flight requests finish on the old one.
//! Token buckets live outside the snapshot, so their state survives reloads for keys (api id,
//! stage name, route key) that still exist.

use crate::auth;
use crate::cache::{self, CacheId, RouteCache, StageCache};
use crate::cluster::{Cluster, ClusterError, ClusterOptions};
use crate::integrations::{self, Integration};
use crate::pipeline::access_log::{AccessLog, LogSinks};
use crate::pipeline::cors::Cors;
use crate::pipeline::gateway_responses::GatewayResponses;
use crate::router::{RouteEntry, Router};
use crate::spec::{self, ApiSpec, CanarySpec, LimitSpec, RouteSpec, Spec, StageSpec};
use crate::throttle::{key_hash, monotonic_ns, Buckets, Limit, DEFAULT_CAPACITY, NEVER};
use crate::usage::{self, Labelled, Tally};
use ahash::RandomState;
use arc_swap::ArcSwap;
use smallvec::SmallVec;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::spec::ApiKind;

const DEFAULT_STAGE: &str = "$default";
const DEFAULT_ROUTE: &str = "$default";
/// Fixed seeds: these maps are not exposed to attacker-chosen keys beyond the spec author.
fn hasher() -> RandomState {
    RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    )
}

/// An invalid spec; the message names the offending element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug)]
pub enum GatewayError {
    Config(ConfigError),
    Io(io::Error),
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::Config(e) => e.fmt(f),
            GatewayError::Io(e) => e.fmt(f),
        }
    }
}

impl From<ConfigError> for GatewayError {
    fn from(e: ConfigError) -> Self {
        GatewayError::Config(e)
    }
}

/// A token bucket a request spends from: its key's hash in the bucket table and its limit.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    pub hash: u64,
    pub limit: Limit,
    /// Its size, for `RateLimit-Limit`.
    pub burst: u64,
}

/// What a WebSocket connection's messages spend (`Snapshot::message_buckets`).
#[derive(Debug, Clone)]
pub struct MessageBuckets {
    /// By route index of the connection's `Serving`.
    pub routes: Arc<[Option<Bucket>]>,
    pub account: Option<Bucket>,
}

impl MessageBuckets {
    /// The buckets a message of route `index` spends, in order: its route's, then the account's.
    pub fn chain(&self, index: usize) -> SmallVec<[Bucket; 2]> {
        self.routes.get(index).copied().flatten().into_iter().chain(self.account).collect()
    }
}

/// A compiled route set: the routes of one deployment (an API's, a stage's or a canary's).
#[derive(Debug)]
struct RouteSet {
    router: Router,
    default_route: Option<u32>,
    /// Route keys by route index (the `$default` route included).
    keys: Vec<Box<str>>,
}

/// A route as the pipeline serves it.
#[derive(Debug)]
pub struct RouteRuntime {
    /// `GET /pets/{id}` or `$default`.
    pub key: Box<str>,
    /// `/pets/{id}` (`$default` for the default route).
    pub resource_path: Box<str>,
    pub integration: Integration,
    /// Who may call it (None: anyone).
    pub auth: Option<auth::RouteAuth>,
    /// How its answers are cached (None: not cached).
    pub cache: Option<RouteCache>,
    /// REST APIs: how its requests are validated (None: they are not).
    pub validation: Option<crate::pipeline::validate::RouteValidation>,
    /// WebSocket APIs: the integration's answer is sent back (the route has a route response).
    pub two_way: bool,
}

/// The cache a stage (or its canary) serves from.
#[derive(Debug)]
pub struct ServingCache {
    pub store: Arc<StageCache>,
    /// Keeps a canary's entries apart from the stage's when it serves another deployment.
    pub variant: Box<str>,
}

/// What one stage (or its canary) serves: its deployment's routes with the stage's variables
/// filled in, its CORS policy and access log.
#[derive(Debug)]
pub struct Serving {
    pub stage: Box<str>,
    pub deployment_id: Box<str>,
    pub is_canary: bool,
    pub variables: Vec<(Box<str>, Box<str>)>,
    /// By route index (the `$default` route included).
    pub routes: Vec<RouteRuntime>,
    pub cors: Option<Arc<Cors>>,
    /// The stage's `accessLogSettings`.
    pub access_log: Option<Arc<AccessLog>>,
    /// The stage's response cache (REST APIs' `cacheClusterEnabled`).
    pub cache: Option<ServingCache>,
    /// The stage's counters of refused requests (its canary's too).
    pub counter: Labelled,
}

#[derive(Debug)]
struct Target {
    routes: Arc<RouteSet>,
    /// Per route index (the `$default` route included): the route's bucket, if throttled.
    buckets: Arc<[Option<Bucket>]>,
    serving: Arc<Serving>,
}

#[derive(Debug)]
struct Canary {
    /// The canary is picked when a uniform u64 is below this (`u64::MAX` with 100 %: always).
    threshold: u64,
    target: Target,
}

#[derive(Debug)]
struct Stage {
    name: Box<str>,
    main: Target,
    canary: Option<Canary>,
}

/// An API as the pipeline needs it.
#[derive(Debug)]
pub struct Api {
    pub id: Box<str>,
    pub name: Box<str>,
    pub kind: ApiKind,
    /// The API's CORS, for answers given before a stage is known.
    pub cors: Option<Arc<Cors>>,
    pub binary_media_types: Vec<Box<str>>,
    pub api_key_source: spec::ApiKeySource,
    /// REST APIs' resource policy, or why it cannot be applied (every request is then refused
    /// with AWS's 500 and the reason in the log: a policy is never skipped).
    pub policy: Option<Result<auth::policy::Policy, Box<str>>>,
    /// REST APIs' customised gateway responses (None: AWS's built-in ones only).
    pub gateway_responses: Option<Arc<GatewayResponses>>,
    /// WebSocket APIs: how a message's route is chosen (`routeSelectionExpression`).
    pub route_selection: Option<Arc<crate::websocket::selection::RouteSelection>>,
    stages: Vec<Stage>,
    /// Index of the `$default` stage (HTTP APIs).
    default_stage: Option<usize>,
}

impl Api {
    #[inline]
    fn stage(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| &*s.name == name)
    }
}

/// Gateway-wide settings, compiled.
#[derive(Debug)]
pub struct Settings {
    pub header_limit: usize,
    pub payload_limit: u64,
    pub body_timeout: std::time::Duration,
    pub account_id: Box<str>,
    pub region: Box<str>,
    pub plugins: spec::PluginHooks,
    pub access_log: Option<Arc<AccessLog>>,
    pub upstream_ca_file: Option<Box<str>>,
    /// `RateLimit-*` and `Retry-After` headers (AWS sends none).
    pub rate_limit_headers: bool,
    /// WebSocket APIs: how long a connection may go without a message, and live in all.
    pub websocket_idle_timeout: std::time::Duration,
    pub websocket_max_connection: std::time::Duration,
}

/// A compiled, immutable spec.
#[derive(Debug)]
pub struct Snapshot {
    apis: Vec<Api>,
    /// Case-sensitive API id -> index (path-style requests).
    by_id: HashMap<Box<str>, usize, RandomState>,
    /// Lower-cased API id -> index (Host `{id}.execute-api.*`).
    by_host_id: HashMap<Box<str>, usize, RandomState>,
    default_api: Option<usize>,
    account: Option<Bucket>,
    pub settings: Settings,
    pub api_keys: auth::api_keys::ApiKeys,
    /// Who may sign requests to `AWS_IAM` routes, by access key id.
    pub principals: auth::iam::Principals,
}

/// How a request fares in selection, routing and throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Routed (and, after `spend`, admitted).
    Route,
    /// No API, stage or route matches.
    NotFound,
    /// A bucket is empty.
    Throttled,
    /// The path is not a path (no leading '/', bad percent-encoding).
    BadRequest,
}

/// The outcome of selection and routing. Ranges in `params` are byte ranges of `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub outcome: Outcome,
    pub api: Option<usize>,
    pub stage: Option<usize>,
    pub route: Option<usize>,
    /// Whether the stage's canary was picked (`route` then indexes the canary's routes).
    pub canary: bool,
    /// The request path as the API sees it (a suffix of the raw path, or "/").
    pub path: &'a str,
    /// Whether the request was addressed path-style (`/restapis/{id}/{stage}/_user_request_/...`).
    pub path_style: bool,
    pub param_names: Option<Arc<[Box<str>]>>,
    pub params: SmallVec<[(u32, u32); 4]>,
    pub retry_after_ms: u64,
    /// The size of the bucket that refused a `Throttled` decision.
    pub throttle_burst: u64,
}

impl<'a> Decision<'a> {
    fn new(outcome: Outcome, path: &'a str) -> Self {
        Decision {
            outcome,
            api: None,
            stage: None,
            route: None,
            canary: false,
            path,
            path_style: false,
            param_names: None,
            params: SmallVec::new(),
            retry_after_ms: 0,
            throttle_burst: 0,
        }
    }

    /// Refused by a bucket of size `burst` that has a token in `wait_ns` (`NEVER`: never).
    pub fn throttle(&mut self, burst: u64, wait_ns: u64) {
        self.outcome = Outcome::Throttled;
        self.throttle_burst = burst;
        self.retry_after_ms = if wait_ns == NEVER {
            NEVER
        } else {
            wait_ns.div_ceil(1_000_000)
        };
    }

    /// The verdict for a path that is not even a string of characters.
    pub fn bad_request() -> Decision<'static> {
        Decision::new(Outcome::BadRequest, "/")
    }

    fn at(mut self, api: usize, stage: Option<usize>) -> Self {
        self.api = Some(api);
        self.stage = stage;
        self
    }

    /// (name, raw value) pairs of the path variables.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.param_names
            .iter()
            .flat_map(|n| n.iter())
            .zip(self.params.iter())
            .map(|(n, (s, e))| (&**n, &self.path[*s as usize..*e as usize]))
    }
}

// ---------------------------------------------------------------------------------------------
// Spec compilation

fn limit(l: &LimitSpec, at: &str) -> Result<Limit, ConfigError> {
    if !l.rate.is_finite() || l.rate < 0.0 {
        return Err(ConfigError(format!("{at}.rate: expected a number >= 0")));
    }
    if l.burst < 0 {
        return Err(ConfigError(format!("{at}.burst: expected an integer >= 0")));
    }
    Ok(Limit::new(l.rate, l.burst))
}

fn burst_of(l: &LimitSpec) -> u64 {
    l.burst.max(0) as u64
}

fn bucket_key(api: &str, stage: &str, route: &str) -> u64 {
    let mut k = Vec::with_capacity(api.len() + stage.len() + route.len() + 2);
    k.extend_from_slice(api.as_bytes());
    k.push(0);
    k.extend_from_slice(stage.as_bytes());
    k.push(0);
    k.extend_from_slice(route.as_bytes());
    key_hash(&k)
}

/// The bucket key hash of the account-level throttle.
pub fn account_key() -> u64 {
    key_hash(b"account")
}

/// The bucket key hash of route `route_key` in `stage` of API `api_id`.
pub fn route_bucket_key(api_id: &str, stage: &str, route_key: &str) -> u64 {
    bucket_key(api_id, stage, route_key)
}

/// `GET /pets/{id}` -> `/pets/{id}`; `$default` stays `$default`.
fn resource_path_of(key: &str) -> &str {
    if key == DEFAULT_ROUTE {
        key
    } else {
        key.split_once(' ').map_or(key, |(_, p)| p)
    }
}

/// A deployment's routes. A WebSocket API's keys (`$connect`, `sendmessage`) are chosen per
/// message by its selection expression (`crate::websocket`), not routed by method and path:
/// only `$default` is marked.
fn compile_routes(routes: &[RouteSpec], at: &str, kind: ApiKind) -> Result<RouteSet, ConfigError> {
    let mut router = Router::new();
    let mut default_route = None;
    let mut keys: Vec<Box<str>> = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let rat = format!("{at}[{i}]");
        let key = r.key();
        if key == DEFAULT_ROUTE {
            if default_route.is_some() {
                return Err(ConfigError(format!("{rat}: \"$default\": duplicate route")));
            }
            default_route = Some(i as u32);
        } else if kind == ApiKind::Websocket {
            if key.is_empty() || keys.iter().any(|k| &**k == key) {
                return Err(ConfigError(format!("{rat}: {key:?}: empty or duplicate route key")));
            }
        } else {
            router
                .insert(key, i as i64)
                .map_err(|e| ConfigError(format!("{rat}: {e}")))?;
        }
        keys.push(key.into());
    }
    Ok(RouteSet {
        router,
        default_route,
        keys,
    })
}

/// Throttle settings as written in a stage or canary.
struct ThrottleSpec<'v> {
    /// (limit, burst)
    default: Option<(Limit, u64)>,
    per_route: Vec<(&'v str, (Limit, u64))>,
}

fn parse_throttles<'v>(
    default: Option<&LimitSpec>,
    per_route: Option<&'v BTreeMap<String, LimitSpec>>,
    at: &str,
) -> Result<Option<ThrottleSpec<'v>>, ConfigError> {
    if default.is_none() && per_route.is_none() {
        return Ok(None);
    }
    let default = default
        .map(|t| Ok((limit(t, &format!("{at}.default_throttle"))?, burst_of(t))))
        .transpose()?;
    let mut routes = Vec::new();
    for (k, t) in per_route.into_iter().flatten() {
        routes.push((k.as_str(), (limit(t, &format!("{at}.route_throttle[{k:?}]"))?, burst_of(t))));
    }
    Ok(Some(ThrottleSpec {
        default,
        per_route: routes,
    }))
}

/// The buckets of `routes` under `throttles`. With `strict`, a `route_throttle` key that is not a
/// route is an error; otherwise (settings inherited by a canary) it is ignored.
fn target_buckets(
    routes: &RouteSet,
    throttles: Option<&ThrottleSpec<'_>>,
    strict: bool,
    api_id: &str,
    stage: &str,
    at: &str,
) -> Result<Vec<Option<Bucket>>, ConfigError> {
    let mut per_route: Vec<Option<(Limit, u64)>> =
        vec![throttles.and_then(|t| t.default); routes.keys.len()];
    for (k, limit) in throttles.iter().flat_map(|t| t.per_route.iter()) {
        match routes.keys.iter().position(|x| &**x == *k) {
            Some(idx) => per_route[idx] = Some(*limit),
            None if strict => {
                return Err(ConfigError(format!(
                    "{at}.route_throttle: {k:?}: no such route"
                )))
            }
            None => {}
        }
    }
    Ok(per_route
        .into_iter()
        .zip(routes.keys.iter())
        .map(|(l, k)| {
            l.map(|(limit, burst)| Bucket {
                // Canary and main routes of a stage share keys: AWS throttles the stage as a whole.
                hash: bucket_key(api_id, stage, k),
                limit,
                burst,
            })
        })
        .collect())
}

/// Everything compilation needs beyond the spec: where access logs go.
pub struct CompileContext<'c> {
    pub sinks: &'c mut LogSinks,
    pub settings: &'c spec::Settings,
    /// Lambda authorizers' caches, kept across snapshots.
    pub lambda_caches: &'c mut auth::lambda::Caches,
    /// Stages' response caches, kept across snapshots.
    pub response_caches: &'c mut cache::Caches,
}

struct ServingSpec<'s> {
    stage: &'s str,
    deployment_id: &'s str,
    is_canary: bool,
    variables: &'s BTreeMap<String, String>,
    routes: &'s [RouteSpec],
    /// The deployment's models (REST APIs' request validation).
    models: &'s [spec::ModelSpec],
    cors: Option<Arc<Cors>>,
    access_log: Option<Arc<AccessLog>>,
    settings: &'s spec::Settings,
    /// The stage's authorizer-cache epoch.
    authorizer_cache_epoch: u64,
    /// The stage's response cache and its settings, when this serving uses it.
    cache: Option<(&'s spec::StageCacheSpec, ServingCache)>,
}

fn compile_serving(
    s: ServingSpec<'_>,
    api: &ApiSpec,
    at: &str,
    lambda_caches: &mut auth::lambda::Caches,
) -> Result<Serving, ConfigError> {
    let variables: Vec<(Box<str>, Box<str>)> = s
        .variables
        .iter()
        .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
        .collect();
    let mut routes = Vec::with_capacity(s.routes.len());
    let mut authorizers = HashMap::new();
    let mut scope = auth::AuthScope {
        api_id: &api.id,
        stage: s.stage,
        variables: &variables,
        settings: s.settings,
        authorizer_cache_epoch: s.authorizer_cache_epoch,
        lambda_caches,
    };
    // Compiled once per deployment: every stage and snapshot serving the same models shares them.
    let validated = s.routes.iter().any(|r| r.validation().is_some());
    if validated && !matches!(api.kind, ApiKind::Rest | ApiKind::Websocket) {
        return Err(ConfigError(format!("{at}: only REST and WebSocket APIs validate requests")));
    }
    let models = validated.then(|| crate::pipeline::validate::ModelSet::of(&api.id, s.models));
    for (i, r) in s.routes.iter().enumerate() {
        let key = r.key();
        let integration = match r.integration() {
            None => Integration::Unset,
            Some(spec) => integrations::compile(spec, key, api.kind, &api.id, &variables, s.settings)
                .map_err(|e| ConfigError(format!("{at}[{i}].integration: {e}")))?,
        };
        let cache = s
            .cache
            .as_ref()
            .and_then(|(c, _)| c.routes.get(key))
            .map(|rc| RouteCache {
                namespace: r.cache_namespace().unwrap_or(resource_path_of(key)).into(),
                ttl_ns: u64::from(rc.ttl_s) * 1_000_000_000,
                methods: rc.methods,
                require_authorization: rc.require_authorization,
                unauthorized: rc.unauthorized,
                key: cache::key_parameters(r.cache_key()),
            });
        routes.push(RouteRuntime {
            key: key.into(),
            resource_path: resource_path_of(key).into(),
            integration,
            auth: r.auth().map(|a| auth::RouteAuth::compile(a, &mut authorizers, &mut scope)),
            cache,
            two_way: r.two_way(),
            validation: match (r.validation(), &models) {
                (Some(v), Some(models)) => Some(
                    crate::pipeline::validate::RouteValidation::compile(v, models)
                        .map_err(|e| ConfigError(format!("{at}[{i}].validation.{e}")))?,
                ),
                _ => None,
            },
        });
    }
    Ok(Serving {
        stage: s.stage.into(),
        deployment_id: s.deployment_id.into(),
        is_canary: s.is_canary,
        variables,
        routes,
        cors: s.cors,
        access_log: s.access_log,
        cache: s.cache.map(|(_, c)| c),
        counter: Labelled::new(usage::stage_label(&api.id, s.stage)),
    })
}

/// A stage's response cache (REST APIs): its settings checked, its cache claimed.
fn compile_stage_cache<'s>(
    api: &ApiSpec,
    s: &'s StageSpec,
    sat: &str,
    caches: &mut cache::Caches,
) -> Result<Option<(&'s spec::StageCacheSpec, Arc<StageCache>)>, ConfigError> {
    let Some(c) = &s.cache else {
        return Ok(None);
    };
    if api.kind != ApiKind::Rest {
        return Err(ConfigError(format!(
            "{sat}.cache: only REST APIs have a stage cache"
        )));
    }
    if c.capacity_bytes == 0 {
        return Err(ConfigError(format!(
            "{sat}.cache.capacity_bytes: expected a number > 0"
        )));
    }
    for (key, rc) in &c.routes {
        if !(1..=3600).contains(&rc.ttl_s) {
            return Err(ConfigError(format!(
                "{sat}.cache.routes[{key:?}].ttl_s: expected 1..=3600"
            )));
        }
    }
    let store = caches.claim(CacheId {
        api: api.id.as_str().into(),
        stage: s.name.as_str().into(),
        capacity: c.capacity_bytes,
        epoch: c.epoch,
    });
    Ok(Some((c, store)))
}

/// The models of the deployment a stage serves: its own with its routes, else the API's.
fn stage_models<'s>(api: &'s ApiSpec, s: &'s StageSpec) -> &'s [spec::ModelSpec] {
    match &s.routes {
        Some(_) => s.models.as_deref().unwrap_or(&[]),
        None => &api.models,
    }
}

fn compile_cors(c: Option<&spec::CorsSpec>) -> Option<Arc<Cors>> {
    c.map(|c| Arc::new(Cors::compile(c)))
}

fn compile_stage(
    api: &ApiSpec,
    api_routes: &Arc<RouteSet>,
    s: &StageSpec,
    sat: &str,
    cx: &mut CompileContext<'_>,
) -> Result<Stage, ConfigError> {
    let id = api.id.as_str();
    let name = s.name.as_str();
    let (routes, route_specs, rat) = match &s.routes {
        Some(r) => {
            let rat = format!("{sat}.routes");
            (Arc::new(compile_routes(r, &rat, api.kind)?), r.as_slice(), rat)
        }
        None => (api_routes.clone(), api.routes.as_slice(), "routes".to_string()),
    };
    let models = stage_models(api, s);
    // A stage serving a deployment of its own carries that deployment's CORS.
    let cors = if s.routes.is_some() {
        compile_cors(s.cors.as_ref())
    } else {
        compile_cors(s.cors.as_ref().or(api.cors.as_ref()))
    };
    let access_log = s
        .access_log
        .as_ref()
        .map(|l| cx.sinks.open(l).map_err(|e| ConfigError(format!("{sat}.access_log: {e}"))))
        .transpose()?;
    let throttles = parse_throttles(s.default_throttle.as_ref(), s.route_throttle.as_ref(), sat)?;
    let stage_cache = compile_stage_cache(api, s, sat, cx.response_caches)?;
    let main_serving = compile_serving(
        ServingSpec {
            stage: name,
            deployment_id: &s.deployment_id,
            is_canary: false,
            variables: &s.variables,
            routes: route_specs,
            models,
            cors: cors.clone(),
            access_log: access_log.clone(),
            settings: cx.settings,
            authorizer_cache_epoch: s.authorizer_cache_epoch,
            cache: stage_cache.as_ref().map(|(spec, store)| {
                (
                    *spec,
                    ServingCache {
                        store: store.clone(),
                        variant: "".into(),
                    },
                )
            }),
        },
        api,
        &rat,
        cx.lambda_caches,
    )?;
    let main = Target {
        buckets: target_buckets(&routes, throttles.as_ref(), true, id, name, sat)?.into(),
        routes: routes.clone(),
        serving: Arc::new(main_serving),
    };
    let canary = match &s.canary {
        None => None,
        Some(c) => Some(compile_canary(
            api,
            s,
            c,
            &main,
            throttles.as_ref(),
            cors,
            access_log,
            sat,
            cx.settings,
            cx.lambda_caches,
            stage_cache.as_ref(),
        )?),
    };
    Ok(Stage {
        name: name.into(),
        main,
        canary,
    })
}

#[allow(clippy::too_many_arguments)]
fn compile_canary(
    api: &ApiSpec,
    s: &StageSpec,
    c: &CanarySpec,
    main: &Target,
    stage_throttles: Option<&ThrottleSpec<'_>>,
    stage_cors: Option<Arc<Cors>>,
    access_log: Option<Arc<AccessLog>>,
    sat: &str,
    settings: &spec::Settings,
    lambda_caches: &mut auth::lambda::Caches,
    stage_cache: Option<&(&spec::StageCacheSpec, Arc<StageCache>)>,
) -> Result<Canary, ConfigError> {
    let cat = format!("{sat}.canary");
    if !(0.0..=100.0).contains(&c.percent) {
        return Err(ConfigError(format!("{cat}.percent: expected a number in 0..=100")));
    }
    let (routes, route_specs, rat) = match &c.routes {
        Some(r) => {
            let rat = format!("{cat}.routes");
            (Arc::new(compile_routes(r, &rat, api.kind)?), r.as_slice(), rat)
        }
        None => (
            main.routes.clone(),
            s.routes.as_deref().unwrap_or(api.routes.as_slice()),
            format!("{sat}.routes"),
        ),
    };
    // A canary without throttle settings of its own inherits the stage's.
    let own = parse_throttles(c.default_throttle.as_ref(), c.route_throttle.as_ref(), &cat)?;
    let (id, name) = (api.id.as_str(), s.name.as_str());
    let buckets: Arc<[Option<Bucket>]> = match &own {
        Some(t) => target_buckets(&routes, Some(t), true, id, name, &cat)?,
        None => target_buckets(&routes, stage_throttles, false, id, name, &cat)?,
    }
    .into();
    let cors = if c.routes.is_some() {
        compile_cors(c.cors.as_ref())
    } else {
        stage_cors
    };
    let serving = compile_serving(
        ServingSpec {
            stage: name,
            deployment_id: &c.deployment_id,
            is_canary: true,
            variables: c.variables.as_ref().unwrap_or(&s.variables),
            routes: route_specs,
            models: match &c.routes {
                Some(_) => c.models.as_deref().unwrap_or(&[]),
                None => stage_models(api, s),
            },
            cors,
            access_log,
            settings,
            authorizer_cache_epoch: s.authorizer_cache_epoch,
            // `useStageCache`: the stage's cache, its entries apart when the deployments differ.
            cache: stage_cache
                .filter(|_| c.use_stage_cache)
                .map(|(spec, store)| {
                    let variant = if c.deployment_id == s.deployment_id {
                        ""
                    } else {
                        c.deployment_id.as_str()
                    };
                    (
                        *spec,
                        ServingCache {
                            store: store.clone(),
                            variant: variant.into(),
                        },
                    )
                }),
        },
        api,
        &rat,
        lambda_caches,
    )?;
    let threshold = if c.percent >= 100.0 {
        u64::MAX
    } else {
        (c.percent / 100.0 * 18_446_744_073_709_551_616.0) as u64
    };
    Ok(Canary {
        threshold,
        target: Target {
            routes,
            buckets,
            serving: Arc::new(serving),
        },
    })
}

fn compile_api(a: &ApiSpec, at: &str, cx: &mut CompileContext<'_>) -> Result<Api, ConfigError> {
    let id = a.id.as_str();
    if id.is_empty()
        || id.contains(['/', '.'])
        || id.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError(format!("{at}.id: {id:?}: invalid API id")));
    }
    let api_routes = Arc::new(compile_routes(&a.routes, &format!("{at}.routes"), a.kind)?);
    let mut stages: Vec<Stage> = Vec::new();
    for (si, s) in a.stages.iter().enumerate() {
        let sat = format!("{at}.stages[{si}]");
        let name = s.name.as_str();
        if name.is_empty()
            || name.contains('/')
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError(format!("{sat}.name: {name:?}: invalid stage name")));
        }
        if stages.iter().any(|x| &*x.name == name) {
            return Err(ConfigError(format!("{sat}.name: {name:?}: duplicate stage")));
        }
        stages.push(compile_stage(a, &api_routes, s, &sat, cx)?);
    }
    let gateway_responses = match (a.kind, a.gateway_responses.is_empty()) {
        (_, true) => None,
        (ApiKind::Http | ApiKind::Websocket, false) => {
            let kind = if a.kind == ApiKind::Http { "HTTP" } else { "WebSocket" };
            return Err(ConfigError(format!("{at}.gateway_responses: {kind} APIs have no gateway responses")))
        }
        (ApiKind::Rest, false) => Some(Arc::new(
            GatewayResponses::compile(&a.gateway_responses).map_err(|e| ConfigError(format!("{at}.{e}")))?,
        )),
    };
    let default_stage = match a.kind {
        ApiKind::Http => stages.iter().position(|s| &*s.name == DEFAULT_STAGE),
        ApiKind::Rest | ApiKind::Websocket => None,
    };
    Ok(Api {
        id: id.into(),
        name: a.name.as_str().into(),
        kind: a.kind,
        cors: compile_cors(a.cors.as_ref()),
        binary_media_types: a.binary_media_types.iter().map(|t| t.as_str().into()).collect(),
        api_key_source: a.api_key_source,
        policy: a.policy.as_ref().map(|p| {
            let p = expand_execute_api(p, &cx.settings.region, &cx.settings.account_id, id);
            auth::policy::Policy::parse(&p).map_err(|e| format!("{at}.policy: {e}").into())
        }),
        gateway_responses,
        route_selection: route_selection(a, at)?,
        stages,
        default_stage,
    })
}

/// A WebSocket API's `routeSelectionExpression`, compiled (required of WebSocket APIs only).
fn route_selection(
    a: &ApiSpec,
    at: &str,
) -> Result<Option<Arc<crate::websocket::selection::RouteSelection>>, ConfigError> {
    match (a.kind, &a.route_selection_expression) {
        (ApiKind::Websocket, None) => Err(ConfigError(format!(
            "{at}.route_selection_expression: WebSocket APIs need one ($request.body.action)"
        ))),
        (ApiKind::Websocket, Some(expression)) => crate::websocket::selection::RouteSelection::parse(expression)
            .map(|s| Some(Arc::new(s)))
            .map_err(|e| ConfigError(format!("{at}.route_selection_expression: {e}"))),
        (_, _) => Ok(None),
    }
}

/// A resource policy with AWS's shorthand expanded: a `Resource` / `NotResource` of the form
/// `execute-api:/STAGE/METHOD/PATH` is `arn:aws:execute-api:REGION:ACCOUNT:API_ID/STAGE/...`
/// (see `x-amazon-apigateway-policy` in the developer guide: AWS converts `execute-api:/*` with
/// the current Region, account ID and REST API ID).
fn expand_execute_api(policy: &serde_json::Value, region: &str, account: &str, api_id: &str) -> serde_json::Value {
    use serde_json::Value;
    let expand = |v: &Value| match v {
        Value::String(s) => match s.strip_prefix("execute-api:/") {
            Some(rest) => Value::String(format!("arn:aws:execute-api:{region}:{account}:{api_id}/{rest}")),
            None => v.clone(),
        },
        other => other.clone(),
    };
    let statement = |st: &Value| {
        let mut st = st.clone();
        if let Value::Object(map) = &mut st {
            for key in ["Resource", "NotResource"] {
                if let Some(v) = map.get_mut(key) {
                    *v = match &*v {
                        Value::Array(items) => Value::Array(items.iter().map(expand).collect()),
                        one => expand(one),
                    };
                }
            }
        }
        st
    };
    let mut out = policy.clone();
    if let Value::Object(map) = &mut out {
        if let Some(v) = map.get_mut("Statement") {
            *v = match &*v {
                Value::Array(items) => Value::Array(items.iter().map(statement).collect()),
                one => statement(one),
            };
        }
    }
    out
}

impl Snapshot {
    /// Compile a spec given as JSON (with access logs opened on their own writers).
    pub fn compile(spec_json: &str) -> Result<Snapshot, ConfigError> {
        Snapshot::compile_with(
            spec_json,
            &mut LogSinks::default(),
            &mut auth::lambda::Caches::default(),
            &mut cache::Caches::default(),
        )
    }

    /// Compile a spec given as JSON, reusing the access-log writers in `sinks`, the Lambda
    /// authorizers' caches in `lambda_caches` and the stages' caches in `response_caches`.
    pub fn compile_with(
        spec_json: &str,
        sinks: &mut LogSinks,
        lambda_caches: &mut auth::lambda::Caches,
        response_caches: &mut cache::Caches,
    ) -> Result<Snapshot, ConfigError> {
        let spec = Spec::from_json(spec_json).map_err(ConfigError)?;
        Snapshot::compile_spec(
            &spec,
            &mut CompileContext {
                sinks,
                settings: &spec.settings,
                lambda_caches,
                response_caches,
            },
        )
    }

    pub fn compile_spec(spec: &Spec, cx: &mut CompileContext<'_>) -> Result<Snapshot, ConfigError> {
        let mut apis = Vec::new();
        let mut by_id = HashMap::with_hasher(hasher());
        let mut by_host_id = HashMap::with_hasher(hasher());
        for (i, a) in spec.apis.iter().enumerate() {
            let at = format!("apis[{i}]");
            let api = compile_api(a, &at, cx)?;
            if by_host_id
                .insert(api.id.to_ascii_lowercase().into_boxed_str(), i)
                .is_some()
            {
                return Err(ConfigError(format!("{at}.id: {:?}: duplicate API id", api.id)));
            }
            by_id.insert(api.id.clone(), i);
            apis.push(api);
        }
        let default_api = match spec.default_api {
            None => None,
            Some(n) if n < apis.len() => Some(n),
            Some(n) => {
                return Err(ConfigError(format!(
                    "default_api: {n}: not an index into apis"
                )))
            }
        };
        let account = spec
            .account_throttle
            .as_ref()
            .map(|t| limit(t, "account_throttle"))
            .transpose()?
            .map(|limit| Bucket {
                hash: account_key(),
                limit,
                burst: spec.account_throttle.as_ref().map_or(0, burst_of),
            });
        let s = &spec.settings;
        let access_log = s
            .access_log
            .as_ref()
            .map(|l| cx.sinks.open(l).map_err(|e| ConfigError(format!("settings.access_log: {e}"))))
            .transpose()?;
        let api_keys = auth::api_keys::ApiKeys::compile(&spec.api_keys, &spec.usage_plans)
            .map_err(ConfigError)?;
        let principals = auth::iam::Principals::compile(&spec.principals).map_err(ConfigError)?;
        Ok(Snapshot {
            apis,
            by_id,
            by_host_id,
            default_api,
            account,
            api_keys,
            principals,
            settings: Settings {
                header_limit: s.header_limit,
                payload_limit: s.payload_limit,
                body_timeout: std::time::Duration::from_millis(s.body_timeout_ms.max(1)),
                account_id: s.account_id.as_str().into(),
                region: s.region.as_str().into(),
                plugins: s.plugins,
                access_log,
                upstream_ca_file: s.upstream_ca_file.as_deref().map(Into::into),
                rate_limit_headers: s.rate_limit_headers,
                websocket_idle_timeout: std::time::Duration::from_millis(s.websocket_idle_timeout_ms.max(1)),
                websocket_max_connection: std::time::Duration::from_millis(s.websocket_max_connection_ms.max(1)),
            },
        })
    }

    pub fn api_count(&self) -> usize {
        self.apis.len()
    }

    pub fn api(&self, index: usize) -> &Api {
        &self.apis[index]
    }

    /// What serves a routed decision's stage (its canary's when it picked the canary).
    pub fn serving(&self, d: &Decision<'_>) -> Option<&Arc<Serving>> {
        let stage = self.apis.get(d.api?)?.stages.get(d.stage?)?;
        Some(match (&stage.canary, d.canary) {
            (Some(c), true) => &c.target.serving,
            _ => &stage.main.serving,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Canary selection

thread_local! {
    static RNG: Cell<u64> = Cell::new(rng_seed());
}

fn rng_seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let addr = &local as *const u8 as u64;
    // splitmix64 of time, pid and a stack address (distinct per thread); never zero.
    let mut z = t ^ (u64::from(std::process::id()) << 32) ^ addr;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

/// A uniform u64 from a thread-local xorshift64* (a few ns; not for secrets).
#[inline]
fn random_u64() -> u64 {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

// ---------------------------------------------------------------------------------------------
// Selection and routing

/// Every '%' is followed by two hex digits.
#[inline]
fn valid_percent_encoding(p: &[u8]) -> bool {
    let mut i = 0;
    while let Some(off) = p[i..].iter().position(|&b| b == b'%') {
        let j = i + off;
        if j + 2 >= p.len() {
            return false;
        }
        if !p[j + 1].is_ascii_hexdigit() || !p[j + 2].is_ascii_hexdigit() {
            return false;
        }
        i = j + 3;
    }
    true
}

/// `s` as an API path: "/" when empty.
#[inline]
fn api_path(s: &str) -> &str {
    if s.is_empty() {
        "/"
    } else {
        s
    }
}

/// `/restapis/{id}/{stage}/_user_request_[/...]` -> (id, stage, rest).
#[inline]
fn path_style(raw: &str) -> Option<(&str, &str, &str)> {
    let rest = raw.strip_prefix("/restapis/")?;
    let (id, rest) = rest.split_once('/')?;
    let (stage, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("_user_request_")?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    Some((id, stage, rest))
}

/// The API id named by a Host `{id}.execute-api.<anything>[:port]`, lower-cased into `buf`.
#[inline]
fn host_api_id<'b>(host: &str, buf: &'b mut [u8; 128]) -> Option<&'b str> {
    let mut h = host.as_bytes();
    if let Some(c) = h.iter().rposition(|&b| b == b':') {
        if h[c + 1..].iter().all(u8::is_ascii_digit) {
            h = &h[..c];
        }
    }
    let dot = h.iter().position(|&b| b == b'.')?;
    let (id, rest) = (&h[..dot], &h[dot + 1..]);
    const SUFFIX: &[u8] = b"execute-api.";
    if id.is_empty()
        || id.len() > buf.len()
        || rest.len() < SUFFIX.len()
        || !rest[..SUFFIX.len()].eq_ignore_ascii_case(SUFFIX)
    {
        return None;
    }
    let out = &mut buf[..id.len()];
    out.copy_from_slice(id);
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

impl Snapshot {
    /// The decision for one request, spending tokens from `buckets` at time `now_ns`.
    pub fn decide<'a>(
        &self,
        buckets: &Buckets,
        host: &str,
        method: &str,
        raw_path: &'a str,
        now_ns: u64,
    ) -> Decision<'a> {
        self.decide_with_clock(buckets, host, method, raw_path, || now_ns)
    }

    /// `decide`, reading the clock only if a bucket applies (the clock costs ~20 ns).
    #[inline]
    pub fn decide_with_clock<'a, C: Fn() -> u64>(
        &self,
        buckets: &Buckets,
        host: &str,
        method: &str,
        raw_path: &'a str,
        clock: C,
    ) -> Decision<'a> {
        let mut d = self.classify(host, method, raw_path);
        self.spend_with_clock(&mut d, buckets, clock);
        d
    }

    /// Select the API and stage and match the route, without spending tokens: a `Route`
    /// decision is final only after `spend_with_clock` (the pipeline answers CORS preflights
    /// in between, which AWS does not count against the route's limits).
    #[inline]
    pub fn classify<'a>(&self, host: &str, method: &str, raw_path: &'a str) -> Decision<'a> {
        if !raw_path.starts_with('/') {
            return Decision::new(Outcome::BadRequest, "/");
        }
        if !valid_percent_encoding(raw_path.as_bytes()) {
            return Decision::new(Outcome::BadRequest, raw_path);
        }
        let mut by_path = false;
        let (ai, si, path) = if let Some((id, stage, rest)) = path_style(raw_path) {
            by_path = true;
            let Some(&ai) = self.by_id.get(id) else {
                let mut d = Decision::new(Outcome::NotFound, api_path(rest));
                d.path_style = true;
                return d;
            };
            let stage = if stage == "%24default" {
                DEFAULT_STAGE
            } else {
                stage
            };
            let Some(si) = self.apis[ai].stage(stage) else {
                let mut d = Decision::new(Outcome::NotFound, api_path(rest)).at(ai, None);
                d.path_style = true;
                return d;
            };
            (ai, si, api_path(rest))
        } else {
            let mut buf = [0u8; 128];
            let ai = match host_api_id(host, &mut buf).and_then(|id| self.by_host_id.get(id)) {
                Some(&ai) => ai,
                None => match self.default_api {
                    Some(ai) => ai,
                    None => return Decision::new(Outcome::NotFound, raw_path),
                },
            };
            let api = &self.apis[ai];
            let after = &raw_path[1..];
            let (first, rest) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            };
            let named = if first.is_empty() || (api.kind == ApiKind::Http && first == DEFAULT_STAGE)
            {
                None
            } else {
                api.stage(first)
            };
            match (named, api.kind, api.default_stage) {
                (Some(si), _, _) => (ai, si, api_path(rest)),
                (None, ApiKind::Http, Some(si)) => (ai, si, raw_path),
                _ => return Decision::new(Outcome::NotFound, raw_path).at(ai, None),
            }
        };
        let stage = &self.apis[ai].stages[si];
        let mut d = Decision::new(Outcome::Route, path).at(ai, Some(si));
        d.path_style = by_path;
        if self.apis[ai].kind == ApiKind::Websocket {
            // Routes are chosen per message (`crate::websocket`); the handshake and the
            // `@connections` API are served by the stage.
            return d;
        }
        let target = match &stage.canary {
            Some(c)
                if c.threshold == u64::MAX || (c.threshold != 0 && random_u64() < c.threshold) =>
            {
                d.canary = true;
                &c.target
            }
            _ => &stage.main,
        };
        let routes = &*target.routes;
        let route_index = match routes.router.lookup(method, path) {
            Some(m) => {
                let entry: &RouteEntry = &routes.router.routes()[m.route as usize];
                if !entry.param_names.is_empty() {
                    d.param_names = Some(entry.param_names.clone());
                    d.params = m.params;
                }
                entry.id as usize
            }
            None => match routes.default_route {
                Some(r) => r as usize,
                None => {
                    d.outcome = Outcome::NotFound;
                    return d;
                }
            },
        };
        d.route = Some(route_index);
        d
    }

    /// Spend the tokens a `Route` decision (made without spending) needs: the route's bucket,
    /// then the account's. Turns the decision into `Throttled` when one is empty.
    pub fn spend_with_clock<C: Fn() -> u64>(&self, d: &mut Decision<'_>, buckets: &Buckets, clock: C) {
        let Some(route_bucket) = self.route_bucket(d) else {
            return;
        };
        let mut now = None;
        for b in route_bucket.iter().chain(self.account.iter()) {
            let now_ns = *now.get_or_insert_with(&clock);
            let wait = buckets.try_acquire(b.hash, &b.limit, now_ns);
            if wait != 0 {
                d.throttle(b.burst, wait);
                return;
            }
        }
    }

    /// The buckets a `Route` decision spends from, in order (its route's, then the account's);
    /// None for any other decision.
    pub fn chain(&self, d: &Decision<'_>) -> Option<SmallVec<[Bucket; 2]>> {
        let route_bucket = self.route_bucket(d)?;
        Some(
            route_bucket
                .iter()
                .chain(self.account.iter())
                .copied()
                .collect(),
        )
    }

    /// The bucket of a `Route` decision's route (the canary's when the canary was picked); None
    /// for any other decision, `Some(None)` for a route without a throttle.
    fn route_bucket(&self, d: &Decision<'_>) -> Option<Option<Bucket>> {
        let (Outcome::Route, Some(api), Some(stage), Some(route)) = (d.outcome, d.api, d.stage, d.route)
        else {
            return None;
        };
        let stage = &self.apis[api].stages[stage];
        let target = match (&stage.canary, d.canary) {
            (Some(c), true) => &c.target,
            _ => &stage.main,
        };
        Some(target.buckets[route])
    }

    /// The buckets a WebSocket connection's messages spend from, held by the connection for its
    /// life: its stage's per route index (`defaultRouteSettings`, `routeSettings`), and the
    /// account's. None for a decision without a stage.
    pub fn message_buckets(&self, d: &Decision<'_>) -> Option<MessageBuckets> {
        let stage = self.apis.get(d.api?)?.stages.get(d.stage?)?;
        Some(MessageBuckets {
            routes: stage.main.buckets.clone(),
            account: self.account,
        })
    }

    /// The limits a request would spend from, in the order they are spent (its route's, the
    /// account's, then, for a method that requires an API key and `api_key` a key of a usage plan
    /// with a throttle, the plan's per-key limit for the method), without spending; None when the
    /// request reaches no route. For reports such as `portico bench`'s admitted-against-configured
    /// figure.
    pub fn limits_for(
        &self,
        host: &str,
        method: &str,
        raw_path: &str,
        api_key: Option<&str>,
    ) -> Option<Vec<Limit>> {
        let d = self.classify(host, method, raw_path);
        let route_bucket = self.route_bucket(&d)?;
        let mut limits: Vec<Limit> = route_bucket.iter().chain(self.account.iter()).map(|b| b.limit).collect();
        if let Some(plan) = api_key.and_then(|value| self.plan_limit(&d, value)) {
            limits.push(plan);
        }
        Some(limits)
    }

    /// The usage-plan throttle the API key `value` is held to on the routed request `d`.
    fn plan_limit(&self, d: &Decision<'_>, value: &str) -> Option<Limit> {
        let api = self.apis.get(d.api?)?;
        let serving = self.serving(d)?;
        let route = serving.routes.get(d.route?)?;
        if !route.auth.as_ref().is_some_and(|a| a.api_key_required) {
            return None;
        }
        let key = self.api_keys.check(value, &api.id, &serving.stage)?;
        let plan_key = self.api_keys.plan_key(&key)?;
        Some(plan_key.bucket_for(&api.id, &serving.stage, &route.key)?.limit)
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway

/// The current snapshot plus the bucket table it spends from and the access-log writers.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    buckets: Arc<Buckets>,
    /// Usage plans' usage and quotas, and the counters of refused requests.
    tally: Arc<Tally>,
    sinks: std::sync::Mutex<LogSinks>,
    /// Lambda authorizers' result caches, outside the snapshot: a reload keeps those of
    /// authorizers it leaves unchanged.
    lambda_caches: std::sync::Mutex<auth::lambda::Caches>,
    /// Stages' response caches, outside the snapshot too.
    response_caches: std::sync::Mutex<cache::Caches>,
    /// Cluster mode: the buckets and usage counts shared through Redis.
    cluster: Option<Arc<Cluster>>,
}

impl Gateway {
    /// A gateway whose buckets and usage counters live in the files at `shared_buckets_path` and
    /// `shared_usage_path` (shared by every process that maps them), or in this process only.
    pub fn new(
        spec_json: &str,
        shared_buckets_path: Option<&Path>,
        shared_usage_path: Option<&Path>,
    ) -> Result<Gateway, GatewayError> {
        let buckets = match shared_buckets_path {
            Some(p) => Buckets::shared(p, DEFAULT_CAPACITY),
            None => Buckets::anonymous(DEFAULT_CAPACITY),
        }
        .map_err(GatewayError::Io)?;
        let tally = match shared_usage_path {
            Some(p) => Tally::shared(p, usage::DEFAULT_CAPACITY),
            None => Tally::anonymous(usage::DEFAULT_CAPACITY),
        }
        .map_err(GatewayError::Io)?;
        Ok(Gateway::with_tables(
            spec_json,
            Arc::new(buckets),
            Arc::new(tally),
        )?)
    }

    /// A gateway spending from an existing bucket table (e.g. another gateway's, so that a
    /// reload that builds a new gateway keeps every bucket's state), with usage counters of its own.
    pub fn with_buckets(spec_json: &str, buckets: Arc<Buckets>) -> Result<Gateway, ConfigError> {
        let tally =
            Tally::anonymous(usage::DEFAULT_CAPACITY).map_err(|e| ConfigError(e.to_string()))?;
        Gateway::with_tables(spec_json, buckets, Arc::new(tally))
    }

    /// A gateway spending from existing bucket and usage tables.
    pub fn with_tables(
        spec_json: &str,
        buckets: Arc<Buckets>,
        tally: Arc<Tally>,
    ) -> Result<Gateway, ConfigError> {
        let mut sinks = LogSinks::default();
        let mut lambda_caches = auth::lambda::Caches::default();
        let mut response_caches = cache::Caches::default();
        let snapshot = Snapshot::compile_with(
            spec_json,
            &mut sinks,
            &mut lambda_caches,
            &mut response_caches,
        )?;
        Ok(Gateway {
            snapshot: ArcSwap::from_pointee(snapshot),
            buckets,
            tally,
            sinks: std::sync::Mutex::new(sinks),
            lambda_caches: std::sync::Mutex::new(lambda_caches),
            response_caches: std::sync::Mutex::new(response_caches),
            cluster: None,
        })
    }

    /// In cluster mode: share buckets and usage counts through the Redis of `options`, falling
    /// back on this gateway's own tables.
    pub fn with_cluster(mut self, options: ClusterOptions) -> Result<Gateway, ClusterError> {
        let cluster = Cluster::new(options, self.buckets.clone(), self.tally.clone())?;
        self.cluster = Some(Arc::new(cluster));
        Ok(self)
    }

    /// The cluster link (cluster mode only).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    pub fn shared_buckets(&self) -> Arc<Buckets> {
        self.buckets.clone()
    }

    /// Compile `spec_json` and publish it; the old snapshot stays valid for in-flight requests.
    /// Access-log writers of destinations still in use are kept (their queues carry over).
    pub fn swap(&self, spec_json: &str) -> Result<(), ConfigError> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        let mut caches = self.lambda_caches.lock().unwrap_or_else(|e| e.into_inner());
        let mut responses = self
            .response_caches
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut next = sinks.successor();
        let mut next_caches = caches.successor();
        let mut next_responses = responses.successor();
        let snapshot =
            Snapshot::compile_with(spec_json, &mut next, &mut next_caches, &mut next_responses)?;
        *sinks = next;
        *caches = next_caches;
        *responses = next_responses;
        self.snapshot.store(Arc::new(snapshot));
        Ok(())
    }

    /// (API id, stage, figures) of every stage's response cache in this process.
    pub fn cache_stats(&self) -> Vec<(String, String, cache::CacheStats)> {
        self.response_caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn buckets(&self) -> &Buckets {
        &self.buckets
    }

    /// The usage and refusal counters.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    pub fn shared_tally(&self) -> Arc<Tally> {
        self.tally.clone()
    }

    /// Write out every access-log line handed in so far.
    pub fn flush_logs(&self) {
        self.sinks.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }

    #[inline]
    pub fn decide<'a>(&self, host: &str, method: &str, raw_path: &'a str) -> Decision<'a> {
        self.snapshot
            .load()
            .decide_with_clock(&self.buckets, host, method, raw_path, monotonic_ns)
    }

    #[inline]
    pub fn decide_at<'a>(
        &self,
        host: &str,
        method: &str,
        raw_path: &'a str,
        now_ns: u64,
    ) -> Decision<'a> {
        self.snapshot
            .load()
            .decide(&self.buckets, host, method, raw_path, now_ns)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn resource_policy_shorthand_names_the_api() {
        let policy = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Resource": ["execute-api:/*", "arn:aws:execute-api:*:*:x/*"]},
            {"Effect": "Deny", "NotResource": "execute-api:/prod/GET/"}
        ]});
        let out = super::expand_execute_api(&policy, "eu-west-1", "111122223333", "abc");
        assert_eq!(out["Statement"][0]["Resource"][0], "arn:aws:execute-api:eu-west-1:111122223333:abc/*");
        assert_eq!(out["Statement"][0]["Resource"][1], "arn:aws:execute-api:*:*:x/*");
        assert_eq!(out["Statement"][1]["NotResource"], "arn:aws:execute-api:eu-west-1:111122223333:abc/prod/GET/");
    }

    use super::*;

    const SPEC: &str = r#"{
      "apis": [
        {"id": "a1b2c3d4e5", "kind": "http",
         "routes": ["GET /pets/dog/1", "GET /pets/dog/{id}", "GET /pets/{proxy+}", "$default", "POST /x"],
         "stages": [{"name": "$default"}, {"name": "prod",
                     "default_throttle": {"rate": 1.0, "burst": 2},
                     "route_throttle": {"POST /x": {"rate": 0, "burst": 5}}}]},
        {"id": "Rest123456", "kind": "rest",
         "routes": ["GET /items/{id}", "ANY /{proxy+}"],
         "stages": [{"name": "v1"}]},
        {"id": "nodefault", "kind": "http", "routes": ["GET /a"], "stages": [{"name": "dev"}]}
      ],
      "default_api": 0,
      "account_throttle": {"rate": 1000.0, "burst": 1000}
    }"#;

    fn gw() -> Gateway {
        Gateway::new(SPEC, None, None).unwrap()
    }

    const ROUTE: Outcome = Outcome::Route;
    const NOT_FOUND: Outcome = Outcome::NotFound;
    const THROTTLED: Outcome = Outcome::Throttled;
    const BAD_REQUEST: Outcome = Outcome::BadRequest;

    fn idx(i: Option<usize>) -> i64 {
        i.map_or(-1, |i| i as i64)
    }

    fn summary(d: &Decision<'_>) -> (Outcome, i64, i64, i64, String) {
        (d.outcome, idx(d.api), idx(d.stage), idx(d.route), d.path.to_string())
    }

    #[test]
    fn host_selection_and_default_stage() {
        let g = gw();
        let d = g.decide_at(
            "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "GET",
            "/pets/dog/2",
            1,
        );
        assert_eq!(summary(&d), (ROUTE, 0, 0, 1, "/pets/dog/2".into()));
        assert_eq!(d.params().collect::<Vec<_>>(), vec![("id", "2")]);
        let d = g.decide_at(
            "A1B2C3D4E5.Execute-Api.localhost:8080",
            "GET",
            "/pets/dog/1",
            1,
        );
        assert_eq!(summary(&d), (ROUTE, 0, 0, 0, "/pets/dog/1".into()));
        assert!(d.param_names.is_none());
        // Unknown host -> default_api.
        let d = g.decide_at("example.com", "GET", "/pets/cat/1", 1);
        assert_eq!(summary(&d), (ROUTE, 0, 0, 2, "/pets/cat/1".into()));
        assert_eq!(d.params().collect::<Vec<_>>(), vec![("proxy", "cat/1")]);
        // $default route.
        let d = g.decide_at("example.com", "POST", "/test/5", 1);
        assert_eq!(summary(&d), (ROUTE, 0, 0, 3, "/test/5".into()));
        assert!(d.param_names.is_none());
    }

    #[test]
    fn websocket_apis_select_the_stage_and_leave_routes_to_messages() {
        let spec = r#"{"apis": [{"id": "wsapi", "kind": "websocket",
            "route_selection_expression": "$request.body.action",
            "routes": ["$connect", "$disconnect", "$default", "sendmessage"],
            "stages": [{"name": "prod"}]}], "default_api": 0}"#;
        let g = Gateway::new(spec, None, None).unwrap();
        let snap = g.snapshot();
        assert_eq!(snap.api(0).kind, ApiKind::Websocket);
        assert!(snap.api(0).route_selection.is_some());
        // The handshake at the stage's root and the @connections API below it: the stage is
        // chosen, no route (messages choose theirs).
        let d = g.decide_at("wsapi.execute-api.localhost:8080", "GET", "/prod", 1);
        assert_eq!(summary(&d), (ROUTE, 0, 0, -1, "/".into()));
        let d = g.decide_at("example.com", "POST", "/prod/@connections/abc%3D", 1);
        assert_eq!(summary(&d), (ROUTE, 0, 0, -1, "/@connections/abc%3D".into()));
        let d = g.decide_at("example.com", "GET", "/dev", 1);
        assert_eq!(d.outcome, NOT_FOUND);
        // A WebSocket API needs its selection expression, and unique keys.
        for (spec, problem) in [
            (
                r#"{"apis": [{"id": "w", "kind": "websocket", "routes": ["$connect"], "stages": []}]}"#,
                "apis[0].route_selection_expression: WebSocket APIs need one",
            ),
            (
                r#"{"apis": [{"id": "w", "kind": "websocket", "route_selection_expression": "$request.header.x",
                    "routes": [], "stages": []}]}"#,
                "apis[0].route_selection_expression: ",
            ),
            (
                r#"{"apis": [{"id": "w", "kind": "websocket", "route_selection_expression": "$request.body.a",
                    "routes": ["go", "go"], "stages": []}]}"#,
                "apis[0].routes[1]: \"go\": empty or duplicate route key",
            ),
        ] {
            let err = Snapshot::compile(spec).unwrap_err().0;
            assert!(err.starts_with(problem), "{err}");
        }
    }

    #[test]
    fn named_stage_is_stripped() {
        let g = gw();
        let d = g.decide_at("h", "GET", "/prod/pets/dog/2/", 1);
        assert_eq!(summary(&d), (ROUTE, 0, 1, 1, "/pets/dog/2/".into()));
        let d = g.decide_at("h", "GET", "/prod", 1);
        assert_eq!(summary(&d), (ROUTE, 0, 1, 3, "/".into()));
        // "$default" as a first segment is not a stage prefix.
        let d = g.decide_at("h", "GET", "/$default/pets/dog/1", 1);
        assert_eq!(summary(&d), (ROUTE, 0, 0, 3, "/$default/pets/dog/1".into()));
        // HTTP API without $default stage: the stage segment is required.
        let d = g.decide_at("nodefault.execute-api.x", "GET", "/a", 1);
        assert_eq!(summary(&d), (NOT_FOUND, 2, -1, -1, "/a".into()));
        let d = g.decide_at("nodefault.execute-api.x", "GET", "/dev/a", 1);
        assert_eq!(summary(&d), (ROUTE, 2, 0, 0, "/a".into()));
        let d = g.decide_at("nodefault.execute-api.x", "GET", "/dev/b", 1);
        assert_eq!(summary(&d), (NOT_FOUND, 2, 0, -1, "/b".into()));
    }

    #[test]
    fn rest_kind_and_path_style() {
        let g = gw();
        let d = g.decide_at("rest123456.execute-api.x", "GET", "/v1/items/7", 1);
        assert_eq!(summary(&d), (ROUTE, 1, 0, 0, "/items/7".into()));
        let d = g.decide_at("rest123456.execute-api.x", "GET", "/items/7", 1);
        assert_eq!(summary(&d), (NOT_FOUND, 1, -1, -1, "/items/7".into()));
        let d = g.decide_at(
            "h",
            "GET",
            "/restapis/Rest123456/v1/_user_request_/items/a%2Fb",
            1,
        );
        assert_eq!(summary(&d), (ROUTE, 1, 0, 0, "/items/a%2Fb".into()));
        assert_eq!(d.params().collect::<Vec<_>>(), vec![("id", "a%2Fb")]);
        let d = g.decide_at("h", "GET", "/restapis/Rest123456/v1/_user_request_", 1);
        assert_eq!(summary(&d), (NOT_FOUND, 1, 0, -1, "/".into()));
        let d = g.decide_at(
            "h",
            "DELETE",
            "/restapis/Rest123456/v1/_user_request_/x//y/",
            1,
        );
        assert_eq!(summary(&d), (ROUTE, 1, 0, 1, "/x//y/".into()));
        assert_eq!(d.params().collect::<Vec<_>>(), vec![("proxy", "x//y")]);
        // Path-style ids are case-sensitive.
        let d = g.decide_at(
            "h",
            "GET",
            "/restapis/rest123456/v1/_user_request_/items/7",
            1,
        );
        assert_eq!(summary(&d), (NOT_FOUND, -1, -1, -1, "/items/7".into()));
        let d = g.decide_at(
            "h",
            "GET",
            "/restapis/Rest123456/v2/_user_request_/items/7",
            1,
        );
        assert_eq!(summary(&d), (NOT_FOUND, 1, -1, -1, "/items/7".into()));
        let d = g.decide_at(
            "h",
            "GET",
            "/restapis/a1b2c3d4e5/%24default/_user_request_/pets/dog/1",
            1,
        );
        assert_eq!(summary(&d), (ROUTE, 0, 0, 0, "/pets/dog/1".into()));
        let d = g.decide_at(
            "h",
            "GET",
            "/restapis/a1b2c3d4e5/$default/_user_request_/pets/dog/1",
            1,
        );
        assert_eq!(summary(&d), (ROUTE, 0, 0, 0, "/pets/dog/1".into()));
        // Not quite path style: routed normally.
        let d = g.decide_at("h", "GET", "/restapis/a1b2c3d4e5/prod/_user_request_x", 1);
        assert_eq!(
            summary(&d),
            (
                ROUTE,
                0,
                0,
                3,
                "/restapis/a1b2c3d4e5/prod/_user_request_x".into()
            )
        );
    }

    #[test]
    fn bad_requests() {
        let g = gw();
        for p in ["/%zz", "/a%2", "/a%", "/%g0", "x", ""] {
            assert_eq!(g.decide_at("h", "GET", p, 1).outcome, BAD_REQUEST, "{p}");
        }
        assert_eq!(g.decide_at("h", "GET", "/a%2F%2f", 1).outcome, ROUTE);
        let long = "/a".repeat(10_000);
        assert_eq!(g.decide_at("h", "GET", &long, 1).route, Some(3));
        assert_eq!(g.decide_at("h", "GET", &"/".repeat(20_000), 1).route, Some(3));
        assert_eq!(g.decide_at("h", "GET", "/", 1).route, Some(3));
    }

    #[test]
    fn throttling() {
        let g = gw();
        let t = 5_000_000_000;
        assert_eq!(g.decide_at("h", "GET", "/prod/pets/dog/1", t).outcome, ROUTE);
        assert_eq!(g.decide_at("h", "GET", "/prod/pets/dog/1", t).outcome, ROUTE);
        let d = g.decide_at("h", "GET", "/prod/pets/dog/1", t);
        assert_eq!(summary(&d), (THROTTLED, 0, 1, 0, "/pets/dog/1".into()));
        assert_eq!(d.retry_after_ms, 1000);
        // Other routes have their own bucket; $default stage is not throttled per route.
        assert_eq!(g.decide_at("h", "GET", "/prod/pets/dog/2", t).outcome, ROUTE);
        assert_eq!(g.decide_at("h", "GET", "/pets/dog/1", t).outcome, ROUTE);
        // rate 0 refuses everything.
        let d = g.decide_at("h", "POST", "/prod/x", t);
        assert_eq!((d.outcome, d.retry_after_ms), (THROTTLED, NEVER));
        // State survives a swap for keys that still exist.
        g.swap(SPEC).unwrap();
        assert_eq!(
            g.decide_at("h", "GET", "/prod/pets/dog/1", t).outcome,
            THROTTLED
        );
        assert_eq!(
            g.decide_at("h", "GET", "/prod/pets/dog/1", t + 1_000_000_000)
                .outcome,
            ROUTE
        );
    }

    #[test]
    fn limits_for_reports_without_spending() {
        let g = gw();
        let snap = g.snapshot();
        let limits = |m: &str, p: &str| {
            snap.limits_for("h", m, p, None)
                .map(|ls| ls.iter().map(|l| (l.rate(), l.burst())).collect::<Vec<_>>())
        };
        // The stage default, then the account's; asking spends nothing.
        for _ in 0..5 {
            assert_eq!(limits("GET", "/prod/pets/dog/1"), Some(vec![(1.0, 2), (1000.0, 1000)]));
        }
        assert_eq!(g.decide_at("h", "GET", "/prod/pets/dog/1", 1).outcome, ROUTE);
        // A route's own setting wins over the stage default; an unthrottled stage has the account's.
        assert_eq!(limits("POST", "/prod/x"), Some(vec![(0.0, 0), (1000.0, 1000)]));
        assert_eq!(limits("GET", "/pets/dog/1"), Some(vec![(1000.0, 1000)]));
        assert_eq!(limits("GET", "/nope/nope"), Some(vec![(1000.0, 1000)]), "$default route");
        assert_eq!(snap.limits_for("Rest123456.execute-api.x", "GET", "/nostage", None), None);
    }

    #[test]
    fn account_throttle() {
        let spec = r#"{"apis": [{"id": "x", "kind": "http", "routes": ["GET /a"], "stages": [{"name": "$default"}]}],
                       "default_api": 0, "account_throttle": {"rate": 0.5, "burst": 3}}"#;
        let g = Gateway::new(spec, None, None).unwrap();
        let kinds: Vec<Outcome> = (0..4)
            .map(|_| g.decide_at("h", "GET", "/a", 1).outcome)
            .collect();
        assert_eq!(kinds, vec![ROUTE, ROUTE, ROUTE, THROTTLED]);
        assert_eq!(g.decide_at("h", "GET", "/a", 1).retry_after_ms, 2000);
        // Not-found requests spend nothing.
        assert_eq!(
            g.decide_at("h", "GET", "/b", 10_000_000_000).outcome,
            NOT_FOUND
        );
    }

    #[test]
    fn swap_replaces_snapshot() {
        let g = gw();
        let old = g.snapshot();
        g.swap(r#"{"apis": [{"id": "n", "kind": "http", "routes": ["GET /new"], "stages": [{"name": "$default"}]}], "default_api": 0}"#)
            .unwrap();
        assert_eq!(g.decide_at("h", "GET", "/new", 1).outcome, ROUTE);
        assert_eq!(g.decide_at("h", "GET", "/pets/dog/1", 1).outcome, NOT_FOUND);
        // The old snapshot is still usable by whoever holds it.
        assert_eq!(
            old.decide(g.buckets(), "h", "GET", "/pets/dog/1", 1).outcome,
            ROUTE
        );
        assert!(g.swap("{").is_err());
        assert_eq!(g.decide_at("h", "GET", "/new", 1).outcome, ROUTE);
    }

    #[test]
    fn no_default_api() {
        let g = Gateway::new(
            r#"{"apis": [{"id": "n", "kind": "http", "routes": [], "stages": []}]}"#,
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            summary(&g.decide_at("h", "GET", "/x", 1)),
            (NOT_FOUND, -1, -1, -1, "/x".into())
        );
        assert_eq!(
            summary(&g.decide_at("n.execute-api.h", "GET", "/x", 1)),
            (NOT_FOUND, 0, -1, -1, "/x".into())
        );
    }

    #[test]
    fn config_errors() {
        let cases = [
            ("{", "not valid JSON"),
            ("[]", "spec: invalid length 0"),
            ("{}", "missing field `apis`"),
            (
                r#"{"apis": [{"id": "a", "routes": ["GET /x", "GETT /x"], "stages": []}]}"#,
                r#"apis[0].routes[1]: "GETT /x": unknown method"#,
            ),
            (
                r#"{"apis": [{"id": "a", "routes": ["GET /x", "GET /x"], "stages": []}]}"#,
                r#"apis[0].routes[1]: "GET /x": duplicate route"#,
            ),
            (
                r#"{"apis": [{"id": "a", "routes": ["$default", "$default"], "stages": []}]}"#,
                "apis[0].routes[1]: \"$default\": duplicate route",
            ),
            (
                r#"{"apis": [{"id": "a", "routes": [3], "stages": []}]}"#,
                "apis[0].routes[0]: data did not match any variant",
            ),
            (
                r#"{"apis": [{"id": "a", "kind": "soap", "stages": []}]}"#,
                "apis[0].kind",
            ),
            (
                r#"{"apis": [{"routes": [], "stages": []}]}"#,
                "apis[0]: missing field `id`",
            ),
            (
                r#"{"apis": [{"id": "a", "stages": []}, {"id": "A", "stages": []}]}"#,
                "apis[1].id: \"A\": duplicate API id",
            ),
            (r#"{"apis": [{"id": "a"}]}"#, "apis[0]: missing field `stages`"),
            (
                r#"{"apis": [{"id": "a", "stages": [{"name": "p"}, {"name": "p"}]}]}"#,
                "apis[0].stages[1].name: \"p\": duplicate stage",
            ),
            (
                r#"{"apis": [{"id": "a", "stages": [{"name": "p", "default_throttle": {"rate": -1, "burst": 1}}]}]}"#,
                "apis[0].stages[0].default_throttle.rate",
            ),
            (
                r#"{"apis": [{"id": "a", "stages": [{"name": "p", "default_throttle": {"rate": 1, "burst": 1.5}}]}]}"#,
                "apis[0].stages[0].default_throttle.burst: invalid type: floating point",
            ),
            (
                r#"{"apis": [{"id": "a", "stages": [{"name": "p", "route_throttle": {"GET /nope": {"rate": 1, "burst": 1}}}]}]}"#,
                "apis[0].stages[0].route_throttle: \"GET /nope\": no such route",
            ),
            (
                r#"{"apis": [], "default_api": 0}"#,
                "default_api: 0: not an index",
            ),
            (
                r#"{"apis": [], "account_throttle": {"rate": 1}}"#,
                "account_throttle: missing field `burst`",
            ),
        ];
        for (spec, want) in cases {
            let e = Snapshot::compile(spec).unwrap_err();
            assert!(e.0.contains(want), "{spec}: got {e}, want {want}");
        }
    }

    const STAGED: &str = r#"{
      "apis": [
        {"id": "st", "kind": "rest",
         "routes": ["GET /shared"],
         "stages": [
           {"name": "old"},
           {"name": "prod", "routes": ["GET /v1", "ANY /{proxy+}"],
            "default_throttle": {"rate": 0, "burst": 0},
            "route_throttle": {"GET /v1": {"rate": 1, "burst": 1}},
            "canary": {"percent": 100.0, "routes": ["GET /v2", "GET /v1"]}},
           {"name": "never", "routes": ["GET /v1"],
            "canary": {"percent": 0, "routes": ["GET /v2"]}},
           {"name": "half", "routes": ["GET /x"],
            "canary": {"percent": 50, "routes": ["GET /x"], "default_throttle": {"rate": 5, "burst": 3}}}
         ]}
      ]
    }"#;

    #[test]
    fn stage_caches_are_shared_by_canaries_and_kept_across_reloads() {
        let spec = |epoch: u64, use_stage_cache: bool| {
            serde_json::json!({
                "apis": [{"id": "rc", "kind": "rest", "routes": ["GET /a"], "stages": [{
                    "name": "prod", "deployment_id": "d1",
                    "cache": {"capacity_bytes": 1000, "epoch": epoch, "routes": {
                        "GET /a": {"ttl_s": 60, "methods": "GET"}}},
                    "canary": {"percent": 100.0, "deployment_id": "d2", "use_stage_cache": use_stage_cache},
                }]}],
                "default_api": 0,
            })
            .to_string()
        };
        let g = Gateway::new(&spec(0, true), None, None).unwrap();
        let serving = |g: &Gateway, canary: bool| {
            let snap = g.snapshot();
            let mut d = g.decide_at("rc.execute-api.x", "GET", "/prod/a", 1);
            d.canary = canary;
            snap.serving(&d).cloned().unwrap()
        };
        let (main, canary) = (serving(&g, false), serving(&g, true));
        let (main_cache, canary_cache) = (main.cache.as_ref().unwrap(), canary.cache.as_ref().unwrap());
        assert!(Arc::ptr_eq(&main_cache.store, &canary_cache.store));
        // Another deployment: its entries apart from the stage's.
        assert_eq!((&*main_cache.variant, &*canary_cache.variant), ("", "d2"));
        assert_eq!(main.routes[0].cache.as_ref().unwrap().ttl_ns, 60_000_000_000);
        // A reload keeps the cache; a new epoch (FlushStageCache) is a new one; without
        // useStageCache the canary is not cached.
        g.swap(&spec(0, false)).unwrap();
        assert!(Arc::ptr_eq(&serving(&g, false).cache.as_ref().unwrap().store, &main_cache.store));
        assert!(serving(&g, true).cache.is_none());
        g.swap(&spec(1, false)).unwrap();
        assert!(!Arc::ptr_eq(&serving(&g, false).cache.as_ref().unwrap().store, &main_cache.store));
        // HTTP APIs have no stage cache.
        let http = spec(0, false).replace("\"rest\"", "\"http\"");
        assert!(Gateway::new(&http, None, None).is_err());
    }

    #[test]
    fn per_stage_routes_and_canary() {
        let g = Gateway::new(STAGED, None, None).unwrap();
        let d = g.decide_at("st.execute-api.x", "GET", "/old/shared", 1);
        assert_eq!(summary(&d), (ROUTE, 0, 0, 0, "/shared".into()));
        assert!(!d.canary);
        assert_eq!(
            g.decide_at("st.execute-api.x", "GET", "/old/v1", 1).outcome,
            NOT_FOUND
        );
        // 100 %: always the canary, whose routes differ from the stage's (its `GET /v2` matches;
        // the stage's default throttle, rate 0, inherited by the canary, refuses it).
        let d = g.decide_at("st.execute-api.x", "GET", "/prod/v2", 1);
        assert_eq!(summary(&d), (THROTTLED, 0, 1, 0, "/v2".into()));
        assert!(d.canary);
        // The canary's routes: `GET /shared` is not one of them.
        let d = g.decide_at("st.execute-api.x", "GET", "/prod/shared", 1);
        assert_eq!((d.outcome, d.canary), (NOT_FOUND, true));
        // 0 %: never.
        let d = g.decide_at("st.execute-api.x", "GET", "/never/v2", 1);
        assert_eq!((d.outcome, d.canary), (NOT_FOUND, false));
        let d = g.decide_at("st.execute-api.x", "GET", "/never/v1", 1);
        assert_eq!((d.outcome, idx(d.route), d.canary), (ROUTE, 0, false));
    }

    #[test]
    fn canary_shares_stage_buckets() {
        let g = Gateway::new(STAGED, None, None).unwrap();
        let t = 5_000_000_000;
        // The canary inherits the stage's throttles: `GET /v1` has burst 1 for both halves.
        let d = g.decide_at("st.execute-api.x", "GET", "/prod/v1", t);
        assert_eq!((d.outcome, idx(d.route), d.canary), (ROUTE, 1, true));
        let d = g.decide_at("st.execute-api.x", "GET", "/prod/v1", t);
        assert_eq!((d.outcome, d.canary), (THROTTLED, true));
        // And the same key as the main route set: after a reload without the canary, still empty.
        let spec = STAGED.replace(
            r#""canary": {"percent": 100.0, "routes": ["GET /v2", "GET /v1"]}"#,
            r#""canary": null"#,
        );
        let g2 = Gateway::with_buckets(&spec, g.shared_buckets()).unwrap();
        let d = g2.decide_at("st.execute-api.x", "GET", "/prod/v1", t);
        assert_eq!((d.outcome, idx(d.route), d.canary), (THROTTLED, 0, false));
        assert_eq!(
            g2.decide_at("st.execute-api.x", "GET", "/prod/v1", t + 1_000_000_000)
                .outcome,
            ROUTE
        );
        // The stage default (rate 0) applies to the canary's routes without a route setting.
        let d = g.decide_at("st.execute-api.x", "GET", "/prod/v2", t);
        assert_eq!((d.outcome, d.retry_after_ms), (THROTTLED, NEVER));
    }

    #[test]
    fn canary_split_is_roughly_even() {
        let g = Gateway::new(STAGED, None, None).unwrap();
        let n = 20_000;
        let canary = (0..n)
            .filter(|_| g.decide_at("st.execute-api.x", "GET", "/half/x", 1).canary)
            .count();
        assert!((9_000..11_000).contains(&canary), "{canary}");
        // Other threads get other sequences.
        let a: Vec<u64> = (0..4).map(|_| random_u64()).collect();
        let b: Vec<u64> = std::thread::spawn(|| (0..4).map(|_| random_u64()).collect())
            .join()
            .unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn canary_config_errors() {
        let cases = [
            (
                r#"{"apis": [{"id": "a", "stages": [{"name": "p", "canary": {"percent": 101}}]}]}"#,
                "apis[0].stages[0].canary.percent",
            ),
            (
                r#"{"apis": [{"id": "a", "stages": [{"name": "p", "canary": {"routes": ["GET x"]}}]}]}"#,
                "apis[0].stages[0].canary.routes[0]",
            ),
            (
                r#"{"apis": [{"id": "a", "stages": [{"name": "p", "routes": ["GET /a", "GET /a"]}]}]}"#,
                "apis[0].stages[0].routes[1]",
            ),
            (
                r#"{"apis": [{"id": "a", "stages": [{"name": "p", "canary": {"routes": [], "route_throttle": {"GET /a": {"rate": 1, "burst": 1}}}}]}]}"#,
                "apis[0].stages[0].canary.route_throttle: \"GET /a\": no such route",
            ),
        ];
        for (spec, want) in cases {
            let e = Snapshot::compile(spec).unwrap_err();
            assert!(e.0.contains(want), "{spec}: got {e}, want {want}");
        }
    }

    #[test]
    fn percent_validation() {
        assert!(valid_percent_encoding(b"/a%20b%2F"));
        assert!(!valid_percent_encoding(b"/a%2"));
        assert!(!valid_percent_encoding(b"%"));
        assert!(!valid_percent_encoding(b"/%%41"));
        assert!(valid_percent_encoding(b""));
    }

    #[test]
    fn host_parsing() {
        let mut b = [0u8; 128];
        assert_eq!(
            host_api_id("AbC.execute-api.us-east-1.amazonaws.com:443", &mut b),
            Some("abc")
        );
        assert_eq!(host_api_id("abc.execute-api.", &mut b), Some("abc"));
        assert_eq!(host_api_id("abc.execute-apix.foo", &mut b), None);
        assert_eq!(host_api_id("abc.example.com", &mut b), None);
        assert_eq!(host_api_id(".execute-api.foo", &mut b), None);
        assert_eq!(host_api_id("", &mut b), None);
    }
}
