//! The stage response cache of REST APIs (`cacheClusterEnabled`; "Cache settings for REST APIs
//! in API Gateway" in the API Gateway developer guide): what an integration answered, kept per
//! stage for its method's TTL and looked up by a key of the request's method, the route's
//! resource path and the values of the integration's `cacheKeyParameters`.
//!
//! - Bounded in bytes (`cacheClusterSize`): entries are weighed by their key, headers and body
//!   and kept in quick_cache's weighted concurrent cache, which evicts the least useful when a
//!   new entry would pass the budget. The budget holds in each serving process (every worker
//!   of `portico serve` keeps a cache of its own).
//! - Concurrent misses of one key reach the integration once: the first request leads a flight,
//!   the others wait for what it lands (`Lookup::Wait`) and are answered from it.
//! - Nothing here knows HTTP beyond a status, headers and bytes: the pipeline's phase
//!   (`crate::pipeline::cache`) decides what is cached and serves it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

use crate::lambda::event::parse_query;
use crate::spec::{
    CacheKeyParameterSpec, CachedMethods, ParameterLocation, UnauthorizedCacheControl,
};

/// AWS caches no answer whose body is larger than this (1,048,576 bytes).
pub const MAX_CACHED_BODY: usize = 1_048_576;
/// What an entry costs beyond its key, headers and body: the entry, its `Arc`, the header map's
/// table and the cache's slot, rounded up.
const ENTRY_OVERHEAD: u64 = 256;
/// What a header costs beyond its name and value in a `HeaderMap`.
const HEADER_OVERHEAD: u64 = 48;

/// How a route's answers are cached: its stage's `caching/*` method settings and its
/// integration's key parameters.
#[derive(Debug)]
pub struct RouteCache {
    /// What keys name the resource by: its path, or the `cacheNamespace` routes share.
    pub namespace: Box<str>,
    pub ttl_ns: u64,
    pub methods: CachedMethods,
    pub require_authorization: bool,
    pub unauthorized: UnauthorizedCacheControl,
    pub key: Arc<[KeyParameter]>,
}

// ------------------------------------------------------------------------------------ keys

/// A cache key parameter as the key builder reads it: header names lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyParameter {
    location: ParameterLocation,
    name: Box<str>,
}

/// An integration's `cacheKeyParameters`, in a canonical order (their order in the list, and
/// repeats, do not change the key).
pub fn key_parameters(specs: &[CacheKeyParameterSpec]) -> Arc<[KeyParameter]> {
    let mut params: Vec<KeyParameter> = specs
        .iter()
        .map(|p| KeyParameter {
            location: p.location,
            name: match p.location {
                ParameterLocation::Header | ParameterLocation::MultiValueHeader => {
                    p.name.to_ascii_lowercase().into()
                }
                _ => p.name.as_str().into(),
            },
        })
        .collect();
    params.sort();
    params.dedup();
    params.into()
}

/// What a key is built from: one request.
#[derive(Debug, Clone, Copy)]
pub struct KeyRequest<'r> {
    pub method: &'r str,
    /// The route's resource path (`/pets/{id}`, or the `cacheNamespace` it shares), not the
    /// request's path: without a path parameter among the key parameters, every path of a
    /// route shares its entries, as on AWS.
    pub resource_path: &'r str,
    /// Keeps a canary's entries apart from the stage's when it serves another deployment.
    pub variant: &'r str,
    pub raw_query: &'r str,
    pub headers: &'r HeaderMap,
    /// The route's path parameters, raw as the client sent them.
    pub path_params: &'r [(&'r str, &'r str)],
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn location_tag(location: ParameterLocation) -> u8 {
    match location {
        ParameterLocation::QueryString => b'q',
        ParameterLocation::MultiValueQueryString => b'Q',
        ParameterLocation::Header => b'h',
        ParameterLocation::MultiValueHeader => b'H',
        ParameterLocation::Path => b'p',
    }
}

/// The key of `request`: every part length-prefixed, so that two requests share a key exactly
/// when their method, resource path, variant and key parameters' values are equal (an absent
/// parameter differs from an empty one). The query string counts only through parameters
/// named in `params` (decoded, `+` as a space: `?a=%41` and `?a=A` are one key); headers and
/// path values are compared as sent.
pub fn key(params: &[KeyParameter], request: &KeyRequest<'_>) -> Box<[u8]> {
    let mut out = Vec::with_capacity(
        16 + request.method.len() + request.resource_path.len() + 32 * params.len(),
    );
    field(&mut out, request.method.as_bytes());
    field(&mut out, request.resource_path.as_bytes());
    field(&mut out, request.variant.as_bytes());
    let reads_query = params.iter().any(|p| {
        matches!(
            p.location,
            ParameterLocation::QueryString | ParameterLocation::MultiValueQueryString
        )
    });
    let query: Vec<(Cow<'_, str>, Cow<'_, str>)> = if reads_query {
        parse_query(request.raw_query)
    } else {
        Vec::new()
    };
    let mut values: Vec<&[u8]> = Vec::new();
    for p in params {
        out.push(location_tag(p.location));
        field(&mut out, p.name.as_bytes());
        values.clear();
        match p.location {
            ParameterLocation::QueryString | ParameterLocation::MultiValueQueryString => {
                values.extend(
                    query
                        .iter()
                        .filter(|(n, _)| **n == *p.name)
                        .map(|(_, v)| v.as_bytes()),
                );
            }
            ParameterLocation::Header | ParameterLocation::MultiValueHeader => {
                values.extend(
                    request
                        .headers
                        .get_all(&*p.name)
                        .iter()
                        .map(|v| v.as_bytes()),
                );
            }
            ParameterLocation::Path => {
                values.extend(
                    request
                        .path_params
                        .iter()
                        .filter(|(n, _)| *n == &*p.name)
                        .map(|(_, v)| v.as_bytes()),
                );
            }
        }
        // Single-value parameters are the last value sent, as the Lambda event's
        // `queryStringParameters` and `headers` show them.
        if matches!(
            p.location,
            ParameterLocation::QueryString | ParameterLocation::Header | ParameterLocation::Path
        ) && values.len() > 1
        {
            let last = values[values.len() - 1];
            values.clear();
            values.push(last);
        }
        out.extend_from_slice(&(values.len() as u32).to_le_bytes());
        for v in &values {
            field(&mut out, v);
        }
    }
    out.into_boxed_slice()
}

// --------------------------------------------------------------------------------- entries

/// A cached answer.
#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Monotonic nanoseconds (`crate::throttle::monotonic_ns`) after which it is not served.
    expires_ns: u64,
    weight: u64,
}

impl Entry {
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        expires_ns: u64,
        key_len: usize,
    ) -> Entry {
        let header_bytes: u64 = headers
            .iter()
            .map(|(n, v)| (n.as_str().len() + v.len()) as u64 + HEADER_OVERHEAD)
            .sum();
        let weight = ENTRY_OVERHEAD + key_len as u64 + header_bytes + body.len() as u64;
        Entry {
            status,
            headers,
            body,
            expires_ns,
            weight,
        }
    }

    pub fn is_fresh(&self, now_ns: u64) -> bool {
        now_ns < self.expires_ns
    }

    /// The bytes it counts against its cache's budget.
    pub fn weight(&self) -> u64 {
        self.weight
    }
}

#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl quick_cache::Weighter<Box<[u8]>, Arc<Entry>> for ByBytes {
    fn weight(&self, _key: &Box<[u8]>, entry: &Arc<Entry>) -> u64 {
        entry.weight
    }
}

// ---------------------------------------------------------------------------------- flights

/// How a flight ended, for the requests that waited on it.
#[derive(Debug, Clone)]
pub enum Landed {
    /// The answer, now in the cache: serve it.
    Stored(Arc<Entry>),
    /// The answer could not be cached (too large, failed): ask the integration yourself.
    NotStored,
}

type Landing = watch::Receiver<Option<Landed>>;

/// What a lookup found.
pub enum Lookup {
    /// A fresh entry.
    Hit(Arc<Entry>),
    /// Nothing: this request asks the integration, and lands the answer for the others.
    Lead(Flight),
    /// Another request is asking the integration: wait for what it lands (an error: it gave up,
    /// look up again).
    Wait(Landing),
}

/// The request that asks the integration for a key. Dropped without landing (the client went
/// away), the requests waiting on it look up again, and one of them leads.
pub struct Flight {
    cache: Arc<StageCache>,
    key: Box<[u8]>,
    /// None for a refresh (an authorized `Cache-Control: max-age=0`), which nobody waits on.
    sender: Option<(u64, watch::Sender<Option<Landed>>)>,
}

impl Flight {
    pub fn key_len(&self) -> usize {
        self.key.len()
    }

    /// Store `entry` (replacing what was there) and hand it to the requests waiting.
    pub fn store(mut self, entry: Arc<Entry>) {
        // In the cache before the flight ends: a request arriving in between finds one or the other.
        self.cache.entries.insert(self.key.clone(), entry.clone());
        self.finish(Some(Landed::Stored(entry)));
    }

    /// Nothing to store: the requests waiting ask the integration themselves.
    pub fn abandon(mut self) {
        self.finish(Some(Landed::NotStored));
    }

    fn finish(&mut self, landed: Option<Landed>) {
        let Some((id, sender)) = self.sender.take() else {
            return;
        };
        {
            let mut flights = self.cache.flights.lock().unwrap_or_else(|e| e.into_inner());
            if flights
                .get(&self.key)
                .is_some_and(|(other, _)| *other == id)
            {
                flights.remove(&self.key);
            }
        }
        if let Some(landed) = landed {
            let _ = sender.send(Some(landed));
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.finish(None);
    }
}

// ------------------------------------------------------------------------------ the caches

/// Hits and misses of one stage's cache (AWS's `CacheHitCount` and `CacheMissCount`), kept
/// across flushes and resizes.
#[derive(Debug, Default)]
pub struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// One stage's cache.
pub struct StageCache {
    entries: quick_cache::sync::Cache<Box<[u8]>, Arc<Entry>, ByBytes>,
    flights: Mutex<HashMap<Box<[u8]>, (u64, Landing), ahash::RandomState>>,
    next_flight: AtomicU64,
    counters: Arc<Counters>,
    capacity: u64,
}

impl std::fmt::Debug for StageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageCache")
            .field("capacity", &self.capacity)
            .field("entries", &self.entries.len())
            .field("bytes", &self.entries.weight())
            .finish_non_exhaustive()
    }
}

/// A cache's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
    /// What the entries weigh (`Entry::weight`), never more than `capacity`.
    pub bytes: u64,
    pub capacity: u64,
}

impl StageCache {
    pub fn new(capacity: u64, counters: Arc<Counters>) -> StageCache {
        // Shards of at least 16 MiB (one for a small cache), so that any cacheable answer fits
        // its shard; an entry heavier than its shard's share is never stored.
        let shards = (capacity / (16 << 20)).clamp(1, 16);
        let shards = 1usize << (63 - shards.leading_zeros());
        let estimated_items = (capacity / 4096).clamp(16, 1 << 16) as usize;
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(estimated_items)
            .weight_capacity(capacity)
            .shards(shards)
            .build()
            .expect("valid cache options");
        StageCache {
            entries: quick_cache::sync::Cache::with_options(
                options,
                ByBytes,
                Default::default(),
                Default::default(),
            ),
            flights: Mutex::new(HashMap::default()),
            next_flight: AtomicU64::new(0),
            counters,
            capacity,
        }
    }

    /// The fresh entry of `key`, a flight of this request's own, or one to wait on.
    pub fn lookup(self: &Arc<Self>, key: &[u8], now_ns: u64) -> Lookup {
        if let Some(entry) = self.entries.get(key) {
            if entry.is_fresh(now_ns) {
                return Lookup::Hit(entry);
            }
        }
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, landing)) = flights.get(key) {
            return Lookup::Wait(landing.clone());
        }
        // Landed between the lookup above and the lock.
        if let Some(entry) = self.entries.peek(key) {
            if entry.is_fresh(now_ns) {
                return Lookup::Hit(entry);
            }
        }
        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
        let (sender, landing) = watch::channel(None);
        let key: Box<[u8]> = key.into();
        flights.insert(key.clone(), (id, landing));
        Lookup::Lead(Flight {
            cache: self.clone(),
            key,
            sender: Some((id, sender)),
        })
    }

    /// A flight that asks the integration whatever the cache holds, and replaces the entry
    /// (an authorized `Cache-Control: max-age=0`).
    pub fn refresh(self: &Arc<Self>, key: Box<[u8]>) -> Flight {
        Flight {
            cache: self.clone(),
            key,
            sender: None,
        }
    }

    pub fn count_hit(&self) {
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_miss(&self) {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            entries: self.entries.len() as u64,
            bytes: self.entries.weight(),
            capacity: self.capacity,
        }
    }
}

/// Which cache a stage uses: a new size (AWS recreates the cache) or a new epoch
/// (`FlushStageCache`) is a new, empty cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheId {
    pub api: Box<str>,
    pub stage: Box<str>,
    pub capacity: u64,
    pub epoch: u64,
}

type StageName = (Box<str>, Box<str>);

/// Every stage's cache, kept by the gateway across snapshots: a reload compiles against a
/// successor that takes over the caches (and counters) of stages whose cache it claims again.
#[derive(Default)]
pub struct Caches {
    caches: HashMap<CacheId, Arc<StageCache>>,
    inherited: HashMap<CacheId, Arc<StageCache>>,
    counters: HashMap<StageName, Arc<Counters>>,
    inherited_counters: HashMap<StageName, Arc<Counters>>,
}

impl Caches {
    pub fn claim(&mut self, id: CacheId) -> Arc<StageCache> {
        if let Some(cache) = self.caches.get(&id) {
            return cache.clone();
        }
        let stage: StageName = (id.api.clone(), id.stage.clone());
        let counters = match self.counters.get(&stage) {
            Some(c) => c.clone(),
            None => self.inherited_counters.remove(&stage).unwrap_or_default(),
        };
        self.counters.insert(stage, counters.clone());
        let cache = self
            .inherited
            .remove(&id)
            .unwrap_or_else(|| Arc::new(StageCache::new(id.capacity, counters)));
        self.caches.insert(id, cache.clone());
        cache
    }

    /// The caches for the next snapshot.
    pub fn successor(&self) -> Caches {
        Caches {
            caches: HashMap::new(),
            inherited: self.caches.clone(),
            counters: HashMap::new(),
            inherited_counters: self.counters.clone(),
        }
    }

    /// (API id, stage, figures) of every stage cache, sorted.
    pub fn stats(&self) -> Vec<(String, String, CacheStats)> {
        let mut out: Vec<_> = self
            .caches
            .iter()
            .map(|(id, cache)| (id.api.to_string(), id.stage.to_string(), cache.stats()))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn spec(location: ParameterLocation, name: &str) -> CacheKeyParameterSpec {
        CacheKeyParameterSpec {
            location,
            name: name.into(),
        }
    }

    fn request<'r>(
        raw_query: &'r str,
        headers: &'r HeaderMap,
        path_params: &'r [(&'r str, &'r str)],
    ) -> KeyRequest<'r> {
        KeyRequest {
            method: "GET",
            resource_path: "/users/{id}",
            variant: "",
            raw_query,
            headers,
            path_params,
        }
    }

    #[test]
    fn the_query_string_counts_only_through_key_parameters() {
        let headers = HeaderMap::new();
        let none = key_parameters(&[]);
        let typed = key_parameters(&[spec(ParameterLocation::QueryString, "type")]);
        let k =
            |params: &[KeyParameter], q: &str| key(params, &request(q, &headers, &[("id", "7")]));
        // AWS's example: `type` in the key, `department` not.
        assert_eq!(
            k(&typed, "type=admin&department=A"),
            k(&typed, "type=admin&department=B")
        );
        assert_ne!(k(&typed, "type=admin"), k(&typed, "type=regular"));
        // Without key parameters neither the query string nor the path's values count.
        assert_eq!(k(&none, "type=admin"), k(&none, "type=regular"));
        assert_eq!(
            key(&none, &request("", &headers, &[("id", "1")])),
            key(&none, &request("", &headers, &[("id", "2")]))
        );
        // Decoded: one value however it is written; absent differs from empty.
        assert_eq!(k(&typed, "type=a%20b"), k(&typed, "type=a+b"));
        assert_ne!(k(&typed, ""), k(&typed, "type="));
        // The last value counts for a single-value parameter, every one for a multi-value one.
        assert_eq!(k(&typed, "type=a&type=b"), k(&typed, "type=b"));
        let multi = key_parameters(&[spec(ParameterLocation::MultiValueQueryString, "type")]);
        assert_ne!(k(&multi, "type=a&type=b"), k(&multi, "type=b"));
    }

    #[test]
    fn headers_and_path_parameters() {
        let params = key_parameters(&[
            spec(ParameterLocation::Header, "Accept-Language"),
            spec(ParameterLocation::Path, "id"),
        ]);
        let mut en = HeaderMap::new();
        en.insert("accept-language", HeaderValue::from_static("en"));
        let mut fr = HeaderMap::new();
        fr.insert("accept-language", HeaderValue::from_static("fr"));
        let k = |h: &HeaderMap, id: &str| key(&params, &request("", h, &[("id", id)]));
        assert_eq!(k(&en, "1"), k(&en, "1"));
        assert_ne!(k(&en, "1"), k(&fr, "1"));
        assert_ne!(k(&en, "1"), k(&en, "2"));
        assert_ne!(k(&en, "1"), k(&HeaderMap::new(), "1"));
        // The order and repeats of the parameters do not matter.
        let reordered = key_parameters(&[
            spec(ParameterLocation::Path, "id"),
            spec(ParameterLocation::Header, "accept-language"),
            spec(ParameterLocation::Path, "id"),
        ]);
        assert_eq!(params, reordered);
    }

    proptest! {
        #[test]
        fn keys_are_equal_exactly_when_their_parts_are(
            a in proptest::collection::vec("[a-z%+=&]{0,6}", 0..4),
            b in proptest::collection::vec("[a-z%+=&]{0,6}", 0..4),
            method in "(GET|POST)",
        ) {
            // Path values made of anything: length prefixes keep every split apart.
            let params = key_parameters(&[spec(ParameterLocation::Path, "p0"), spec(ParameterLocation::Path, "p1"),
                spec(ParameterLocation::Path, "p2"), spec(ParameterLocation::Path, "p3")]);
            let names = ["p0", "p1", "p2", "p3"];
            let pa: Vec<(&str, &str)> = names.iter().copied().zip(a.iter().map(String::as_str)).collect();
            let pb: Vec<(&str, &str)> = names.iter().copied().zip(b.iter().map(String::as_str)).collect();
            let headers = HeaderMap::new();
            let mut ra = request("", &headers, &pa);
            ra.method = &method;
            let rb = request("", &headers, &pb);
            prop_assert_eq!(key(&params, &ra) == key(&params, &rb), method == "GET" && a == b);
        }
    }

    fn entry(body: &'static [u8], expires_ns: u64) -> Arc<Entry> {
        Arc::new(Entry::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(body),
            expires_ns,
            8,
        ))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn misses_of_one_key_share_a_flight() {
        let cache = Arc::new(StageCache::new(1 << 20, Arc::default()));
        let key = || b"k".to_vec().into_boxed_slice();
        let Lookup::Lead(flight) = cache.lookup(&key(), 0) else {
            panic!("the first lookup leads")
        };
        let Lookup::Wait(mut waiting) = cache.lookup(&key(), 0) else {
            panic!("the second waits")
        };
        flight.store(entry(b"body", 100));
        let landed = waiting.wait_for(Option::is_some).await.unwrap().clone();
        assert!(matches!(landed, Some(Landed::Stored(e)) if &e.body[..] == b"body"));
        assert!(matches!(cache.lookup(&key(), 50), Lookup::Hit(_)));
        // Expired: the next request leads again.
        assert!(matches!(cache.lookup(&key(), 100), Lookup::Lead(_)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_flight_given_up_lets_a_waiter_lead() {
        let cache = Arc::new(StageCache::new(1 << 20, Arc::default()));
        let key = || b"k".to_vec().into_boxed_slice();
        let Lookup::Lead(flight) = cache.lookup(&key(), 0) else {
            panic!()
        };
        let Lookup::Wait(mut waiting) = cache.lookup(&key(), 0) else {
            panic!()
        };
        drop(flight);
        assert!(waiting.wait_for(Option::is_some).await.is_err());
        assert!(matches!(cache.lookup(&key(), 0), Lookup::Lead(_)));
        // Abandoned (not cacheable): waiters are told, and nothing is stored.
        let Lookup::Lead(flight) = cache.lookup(&key(), 0) else {
            panic!()
        };
        let Lookup::Wait(mut waiting) = cache.lookup(&key(), 0) else {
            panic!()
        };
        flight.abandon();
        assert!(matches!(
            waiting.wait_for(Option::is_some).await.unwrap().clone(),
            Some(Landed::NotStored)
        ));
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn the_byte_budget_holds_under_many_keys() {
        let capacity = 256 * 1024;
        let cache = Arc::new(StageCache::new(capacity, Arc::default()));
        for i in 0..5_000u32 {
            let key = i.to_le_bytes().to_vec().into_boxed_slice();
            let Lookup::Lead(flight) = cache.lookup(&key, 0) else {
                panic!()
            };
            let len = flight.key_len();
            flight.store(Arc::new(Entry::new(
                StatusCode::OK,
                HeaderMap::new(),
                Bytes::from(vec![b'x'; 1000]),
                10,
                len,
            )));
            assert!(cache.stats().bytes <= capacity);
        }
        let stats = cache.stats();
        assert!(stats.entries > 100, "{stats:?}");
        assert!(
            stats.bytes <= capacity && stats.bytes > capacity / 2,
            "{stats:?}"
        );
    }

    #[test]
    fn caches_carry_over_unless_resized_or_flushed() {
        let id = |capacity, epoch| CacheId {
            api: "a".into(),
            stage: "prod".into(),
            capacity,
            epoch,
        };
        let mut caches = Caches::default();
        let first = caches.claim(id(1 << 20, 0));
        first.count_hit();
        let mut next = caches.successor();
        assert!(Arc::ptr_eq(&first, &next.claim(id(1 << 20, 0))));
        let mut flushed = next.successor();
        let fresh = flushed.claim(id(1 << 20, 1));
        assert!(!Arc::ptr_eq(&first, &fresh));
        // Counters outlive a flush.
        assert_eq!(fresh.stats().hits, 1);
        let mut resized = flushed.successor();
        assert!(!Arc::ptr_eq(&fresh, &resized.claim(id(2 << 20, 1))));
    }
}
