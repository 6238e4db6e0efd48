//! Hot-path benchmarks: route lookup at 10 / 1,000 / 10,000 routes, token bucket acquire
//! (anonymous and file-backed) and a full `Gateway::decide`.
//!
//! `cargo bench --bench core` (about a minute: 1 s of measurement per benchmark).

use _core::gateway::Gateway;
use _core::router::Router;
use _core::throttle::{key_hash, monotonic_ns, Buckets, Limit};
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
    let gw = Gateway::new(&spec(1_000), None).unwrap();
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = bench_router, bench_buckets, bench_gateway
}
criterion_main!(benches);
