//! Hot-path benchmarks: route lookup at 10 / 1,000 / 10,000 routes, token bucket acquire
//! (anonymous and file-backed), a usage plan's per-key work (its bucket and its quota count, in
//! the shared usage table), a full `Gateway::decide`, an `AWS_IAM` route's SigV4 check, and a
//! REST method's request validation of a 10 KB JSON body (parsing it, then checking it).
//!
//! `cargo bench --bench core` (about a minute: 1 s of measurement per benchmark).

use _core::gateway::Gateway;
use _core::router::Router;
use _core::throttle::{key_hash, monotonic_ns, Buckets, Limit};
use _core::time::wall_clock_ms;
use _core::usage::{usage_label, Labelled, Quota, QuotaPeriod, Tally, UsageBase};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;

/// A realistic route set of `n` routes: services with resources, ids, sub-collections and a
/// greedy file route per resource.
fn route_keys(n: usize) -> Vec<String> {
    let mut keys = Vec::with_capacity(n);
    let mut i = 0;
    while keys.len() < n {
        let base = format!("/svc{}/res{}", i % 10, i);
        let candidates = [
            format!("GET {base}"),
            format!("GET {base}/{{id}}"),
            format!("POST {base}/{{id}}/items"),
            format!("PUT {base}/{{id}}/items/{{item}}"),
            format!("ANY {base}/files/{{path+}}"),
        ];
        for k in candidates {
            if keys.len() < n {
                keys.push(k);
            }
        }
        i += 1;
    }
    keys
}

fn router(n: usize) -> Router {
    let mut r = Router::new();
    for (i, k) in route_keys(n).iter().enumerate() {
        r.insert(k, i as i64).unwrap();
    }
    r
}

fn bench_router(c: &mut Criterion) {
    let mut g = c.benchmark_group("router_lookup");
    for n in [10usize, 1_000, 10_000] {
        let r = router(n);
        // A resource in the middle of the set (so hash maps, not only small vectors, are hit).
        let k = (n / 5) / 2;
        let base = format!("/svc{}/res{}", k % 10, k);
        let cases = [
            ("literal", "GET", base.clone()),
            ("param", "GET", format!("{base}/12345")),
            ("param2", "PUT", format!("{base}/12345/items/678")),
            ("greedy", "DELETE", format!("{base}/files/a/b/c.txt")),
            ("miss", "GET", format!("{base}/12345/nope")),
        ];
        for (name, method, path) in cases {
            assert_eq!(
                r.lookup(method, &path).is_some(),
                name != "miss",
                "{n} {name} {path}"
            );
            g.bench_with_input(BenchmarkId::new(name, n), &path, |b, p| {
                b.iter(|| r.lookup(black_box(method), black_box(p)))
            });
        }
    }
    g.finish();
}

fn bench_buckets(c: &mut Criterion) {
    let mut g = c.benchmark_group("bucket_acquire");
    let limit = Limit::new(1e12, 1_000_000_000);
    let hash = key_hash(b"api\0stage\0GET /pets/{id}");
    let anon = Buckets::anonymous(16384).unwrap();
    g.bench_function("anonymous", |b| {
        b.iter(|| anon.try_acquire(black_box(hash), &limit, monotonic_ns()))
    });
    g.bench_function("anonymous_hash_key", |b| {
        b.iter(|| {
            anon.try_acquire(
                key_hash(black_box(b"api\0stage\0GET /pets/{id}")),
                &limit,
                monotonic_ns(),
            )
        })
    });
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm".into()
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("portico-bench-{}", std::process::id()));
    let shared = Buckets::shared(&path, 16384).unwrap();
    g.bench_function("file_backed", |b| {
        b.iter(|| shared.try_acquire(black_box(hash), &limit, monotonic_ns()))
    });
    g.bench_function("monotonic_ns", |b| b.iter(monotonic_ns));
    g.finish();
    let _ = std::fs::remove_file(&path);
}

/// What a request of a usage-plan key costs beyond its API key check: the key's bucket, the wall
/// clock, and the quota's count (period and day words, CAS) in a file-backed table.
fn bench_usage(c: &mut Criterion) {
    let mut g = c.benchmark_group("usage_plan");
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm".into()
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("portico-bench-usage-{}", std::process::id()));
    let tally = Tally::shared(&path, 65_536).unwrap();
    let buckets = Buckets::anonymous(16384).unwrap();
    let usage = Labelled::new(usage_label("plan01", "key0123456"));
    let base = UsageBase::default();
    let quota = Quota {
        period: QuotaPeriod::Month,
        limit: u64::MAX >> 24,
        offset: 0,
        initial: None,
    };
    let limit = Limit::new(1e12, 1_000_000_000);
    let bucket = key_hash(b"plan\0plan01\0key0123456");
    g.bench_function("wall_clock_ms", |b| b.iter(wall_clock_ms));
    g.bench_function("count_without_quota", |b| {
        b.iter(|| tally.count(black_box(&usage), None, &base, wall_clock_ms()))
    });
    g.bench_function("count_monthly_quota", |b| {
        b.iter(|| tally.count(black_box(&usage), Some(&quota), &base, wall_clock_ms()))
    });
    g.bench_function("bucket_and_quota", |b| {
        b.iter(|| {
            buckets.try_acquire(black_box(bucket), &limit, monotonic_ns());
            tally.count(black_box(&usage), Some(&quota), &base, wall_clock_ms())
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&path);
}

fn spec(n: usize) -> String {
    let routes: Vec<String> = route_keys(n)
        .into_iter()
        .chain(["$default".to_string()])
        .collect();
    format!(
        r#"{{"apis": [{{"id": "a1b2c3d4e5", "kind": "http", "routes": {routes:?},
             "stages": [{{"name": "$default"}},
                        {{"name": "prod", "default_throttle": {{"rate": 1e12, "burst": 1000000000}}}}]}}],
            "default_api": 0, "account_throttle": {{"rate": 1e12, "burst": 1000000000}}}}"#
    )
}

fn bench_gateway(c: &mut Criterion) {
    let mut g = c.benchmark_group("gateway_decide");
    let gw = Gateway::new(&spec(1_000), None, None).unwrap();
    let host = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com";
    let cases = [
        ("param_account_bucket", "/svc0/res100/12345"),
        ("param_2_buckets", "/prod/svc0/res100/12345"),
        ("greedy_2_buckets", "/prod/svc0/res100/files/a/b/c.txt"),
        ("default_route", "/nothing/here"),
    ];
    for (name, path) in cases {
        assert_eq!(
            gw.decide(host, "GET", path).outcome,
            _core::gateway::Outcome::Route,
            "{name}"
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                gw.decide(black_box(host), black_box("GET"), black_box(path))
                    .outcome
            })
        });
    }
    g.finish();
}

/// What an `AWS_IAM` route adds per request: reading the signature, finding the principal and
/// checking scope, date and session token, building the canonical request and verifying the HMAC
/// (a GET with a query string and four signed headers, as botocore signs it).
fn bench_sigv4(c: &mut Criterion) {
    use _core::auth::iam::Principals;
    use _core::auth::sigv4::{format_basic, sign, signing_key, Presented, EMPTY_SHA256};
    use http::{HeaderMap, HeaderValue};

    let principals = Principals::compile(&[_core::spec::PrincipalSpec {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
        arn: "arn:aws:iam::123456789012:user/alice".into(),
        account_id: "123456789012".into(),
        policy: None,
    }])
    .unwrap();
    let now = 1_700_000_000;
    let date = format_basic(now);
    let (path, query) = ("/prod/pets/42", "limit=10&sort=name&filter=a%20b");
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"));
    headers.insert("accept", HeaderValue::from_static("application/json"));
    headers.insert("x-amz-date", HeaderValue::from_str(&date).unwrap());
    headers.insert("x-request-id", HeaderValue::from_static("9f6c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"));
    let credential = format!("AKIAIOSFODNN7EXAMPLE/{}/us-east-1/execute-api/aws4_request", &date[..8]);
    let draft = format!("AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=accept;host;x-amz-date;x-request-id, Signature=00");
    headers.insert("authorization", HeaderValue::from_str(&draft).unwrap());
    let unsigned = Presented::parse(&headers, query).unwrap();
    let canonical = unsigned.canonical_request("GET", path, query, &headers, EMPTY_SHA256);
    let key = signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &date[..8], "us-east-1", "execute-api");
    let signed = draft.replace("Signature=00", &format!("Signature={}", sign(&key, &unsigned.string_to_sign(&canonical))));
    headers.insert("authorization", HeaderValue::from_str(&signed).unwrap());

    let verify = |headers: &HeaderMap| {
        let presented = Presented::parse(headers, query).unwrap();
        let principal = principals.authenticate(&presented, "us-east-1", now).unwrap();
        let canonical = presented.canonical_request("GET", path, query, headers, EMPTY_SHA256);
        principal.verify(&presented, &canonical).is_ok()
    };
    assert!(verify(&headers));
    c.bench_function("sigv4_verify_header", |b| b.iter(|| verify(black_box(&headers))));
}

/// A validated POST's body work: the 10 KB order `benches/validate.py` sends, parsed alone, then
/// parsed and checked against its `Order` model (what the validate phase adds to a request).
fn bench_validate(c: &mut Criterion) {
    use _core::pipeline::validate::{check_body, ModelSet};
    use _core::spec::ModelSpec;

    let order = serde_json::json!({
        "type": "object",
        "properties": {
            "orderId": {"type": "string", "pattern": "^ord-[0-9]{10}$"},
            "customer": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "email": {"type": "string", "format": "email"},
                    "tier": {"type": "string", "enum": ["bronze", "silver", "gold"]}
                },
                "required": ["id", "email"]
            },
            "items": {
                "type": "array", "minItems": 1, "maxItems": 100,
                "items": {
                    "type": "object",
                    "properties": {
                        "sku": {"type": "string", "pattern": "^SKU-[0-9]{4}$"},
                        "qty": {"type": "integer", "minimum": 1, "maximum": 99},
                        "price": {"type": "number", "minimum": 0}
                    },
                    "required": ["sku", "qty", "price"],
                    "additionalProperties": false
                }
            },
            "note": {"type": "string", "maxLength": 20000}
        },
        "required": ["orderId", "customer", "items"]
    });
    let items: Vec<serde_json::Value> = (0..8)
        .map(|i| serde_json::json!({"sku": format!("SKU-{i:04}"), "qty": i % 5 + 1, "price": 9.99 + f64::from(i)}))
        .collect();
    let mut doc = serde_json::json!({
        "orderId": "ord-0001234567",
        "customer": {"id": "cus-42", "email": "jane@example.com", "tier": "gold"},
        "items": items,
        "note": ""
    });
    let pad = 10 * 1024 - doc.to_string().len();
    doc["note"] = serde_json::Value::String("n".repeat(pad));
    let body = doc.to_string().into_bytes();
    assert_eq!(body.len(), 10 * 1024);
    let set = ModelSet::of("bench", &[ModelSpec { name: "Order".into(), schema: order.to_string() }]);
    let validator = set.validator("Order").unwrap();
    assert!(check_body(&validator, &body).is_ok());
    c.bench_function("validate_10k_parse_only", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap())
    });
    c.bench_function("validate_10k_parse_and_check", |b| b.iter(|| check_body(&validator, black_box(&body))));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = bench_router, bench_buckets, bench_usage, bench_gateway, bench_sigv4, bench_validate
}
criterion_main!(benches);
