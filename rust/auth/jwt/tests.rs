//! The JWT authorizer against a real issuer: a local HTTP server publishing a discovery document
//! and a JWK set, tokens signed by jsonwebtoken with keys of every family.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{encode, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use serde_json::{json, Value};

use super::*;

/// A 2048-bit RSA key made for these tests: PKCS#1 DER, and its modulus (base64url).
const RSA_DER: &[&str] = &[
    "MIIEpAIBAAKCAQEA3BU10aM4xdXc5+hUKctNklCQH13cx/m4rE9715sQDCCMEN8krJH+X69Z/5XYrsUjsunCFfPmbZKxQxa4",
    "RpeDrPDbtovK0HL7fZkbTYf1hsMebWojrDd8FoFFGRj6ksM5WNybKdyWbqUk9mFtlVUtF04CPDNb348+3Vqg+9WH3MIP2ba1",
    "hL5rC4WHqvPWDyTZICWXd3cGSGRPBXzqFnqK3196YGOMltjHME73mKdlXEJVy9aI/yfib3TgBTGYaf//uXEk7KS2RmSSY6sD",
    "e4OOxeWI7dKYLyPc0vrEd4Spxtlyup/O72aA016KXQkqyHUXVYV7erWsk4UK/1h9nupzzwIDAQABAoIBABXzw6eCeWI6X8t+",
    "AA8fKUCj6oxGZ4RG42XEk9zAqcwb3vy71UOlWFMhAYAd6Twdi98HtAVOi7h4Plgrxvu7lzXD3JaLwRIjtfQkNnX4TsQ/aCSP",
    "xrkh262+/S5wsGW9NVYoww1c5GBq9pHgy/ZuRY4iiNSKZuqYtjOMG6yi8udRALNKUhSqVXHDmQpJZaONy3HWSK9sz45FmhFP",
    "ewjKYwfiyIqarZdKlJmQJDxtxRzRQoU/FbFD+ksaMFU3x0BmAfaPJqbUwsPXGa4DqUeutxKimiJs3HEjC9rU5u/k3y6P62Vs",
    "ClAeItHUdmMM5+bFLtuq80xcst9z3uP6vvUOMaECgYEA9kf4RvxpQTF9jA9XPMpCb99JUZ0zY2cYRQ8RhxVr337bWdAldVrV",
    "uqcGjlrEieInlTtdxIYX5mhQrtIh/EfDClFpEcgTxxQi/p+b4N87RoxRkYcQiHHlW4q27KaASGfVa9k4Op57ejD6hU4O5hd/",
    "9uAvh16IRFInExysYHmRAX8CgYEA5MSTLschvWi8GFtomEq935NEbCoEZA+8k4qB7iyWr1xfTGjMUYIayQQQnRHKNBOunRBj",
    "qWYA7KxihUOBKRHbvsDskzPIrWGRmnVAn8H+yQOWNSiHwUJf8w1CAvEFCwqyVlOBM5ScbkvzJbMDtUs2TnCk05f3tRWsMy6e",
    "/0X3FbECgYEAzlmI5flRO2V7GuIzpuSU++UrKm27g9r6k8pHVlaVdsJ0iXEEIasFDwopTRcyO5E4tynxq9rqpYvbpk68WQPL",
    "oJaLoXFxWMk/dPZIhgakRL0HDxcKvDgqAyRbljb/nysYv+9V1I+7R6tIDG9VvmYMOs6mJBcJt6zZvoK0z3SsEYMCgYEAy0IR",
    "F63cP4MwJGALJcy6uUwKriQC9Li6r0iQOwMo+zQShDxU1VLI47OV40isJOsb6Pdn5Vn5Fk/v1UHuH4R7fxfA2uVWtx4KlXb6",
    "bTebXhSuwBp7y+1ifPxZm210MqRVYbgeAqtW9fTLW8KbV9g0rysMd+f9McrIzkzs/hi2+XECgYB4E+a9Izm6wrUXUN5yr8ui",
    "+gTnRvqL9itsBWgRxmVvmKGouS/Bf1maWG0Wg7f4HKhokTYpYLCcWII0o5y5QUHTc9yjDcqb6s2JKCaBMIOttiYzM4wm2LIL",
    "nlMWDp4N51gx/lu0Wea1hActPreBrpXaa9UTaJMW3n4MdAw2+fnKUg==",
];
const RSA_N: &[&str] = &[
    "3BU10aM4xdXc5-hUKctNklCQH13cx_m4rE9715sQDCCMEN8krJH-X69Z_5XYrsUjsunCFfPmbZKxQxa4RpeDrPDbtovK0HL7",
    "fZkbTYf1hsMebWojrDd8FoFFGRj6ksM5WNybKdyWbqUk9mFtlVUtF04CPDNb348-3Vqg-9WH3MIP2ba1hL5rC4WHqvPWDyTZ",
    "ICWXd3cGSGRPBXzqFnqK3196YGOMltjHME73mKdlXEJVy9aI_yfib3TgBTGYaf__uXEk7KS2RmSSY6sDe4OOxeWI7dKYLyPc",
    "0vrEd4Spxtlyup_O72aA016KXQkqyHUXVYV7erWsk4UK_1h9nupzzw",
];

fn rsa_der() -> Vec<u8> {
    STANDARD.decode(RSA_DER.concat()).unwrap()
}

/// A signing key and its public JWK.
struct Signer {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

fn rsa(kid: &str) -> Signer {
    Signer {
        kid: kid.into(),
        key: EncodingKey::from_rsa_der(&rsa_der()),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "n": RSA_N.concat(), "e": "AQAB"}),
    }
}

fn ec(kid: &str, p384: bool) -> Signer {
    let rng = SystemRandom::new();
    let alg = if p384 {
        &ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &ECDSA_P256_SHA256_FIXED_SIGNING
    };
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = &pair.public_key().as_ref()[1..];
    let (x, y) = point.split_at(point.len() / 2);
    Signer {
        kid: kid.into(),
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "EC", "kid": kid, "crv": if p384 { "P-384" } else { "P-256" },
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }),
    }
}

fn ed(kid: &str) -> Signer {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    Signer {
        kid: kid.into(),
        key: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}),
    }
}

impl Signer {
    fn sign(&self, alg: Algorithm, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.key).unwrap()
    }
}

/// An OpenID issuer on a loopback port: its key set can change, it can go down, it counts.
struct LocalIssuer {
    url: String,
    jwks: Arc<Mutex<Value>>,
    up: Arc<AtomicBool>,
    jwks_hits: Arc<AtomicU64>,
}

impl LocalIssuer {
    async fn start(keys: &[&Signer]) -> LocalIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Issuers are kept per process by URL: a path of its own, should a port be used again.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let url = format!("http://127.0.0.1:{port}/pool{}", NEXT.fetch_add(1, Ordering::SeqCst));
        let issuer = LocalIssuer {
            url: url.clone(),
            jwks: Arc::new(Mutex::new(json!({}))),
            up: Arc::new(AtomicBool::new(true)),
            jwks_hits: Arc::new(AtomicU64::new(0)),
        };
        issuer.publish(keys);
        let (jwks, up, hits) = (issuer.jwks.clone(), issuer.up.clone(), issuer.jwks_hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                if !up.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let (jwks, hits, url) = (jwks.clone(), hits.clone(), url.clone());
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = match req.uri().path() {
                        path if path.ends_with("/.well-known/openid-configuration") => {
                            json!({"issuer": url, "jwks_uri": format!("{url}/jwks.json")}).to_string()
                        }
                        _ => {
                            hits.fetch_add(1, Ordering::SeqCst);
                            jwks.lock().unwrap().to_string()
                        }
                    };
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        issuer
    }

    fn publish(&self, keys: &[&Signer]) {
        *self.jwks.lock().unwrap() = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }

    fn hits(&self) -> u64 {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

fn client() -> UpstreamClient {
    UpstreamClient::new(None).unwrap()
}

fn jwt_authorizer(issuer: &str, audience: &[&str]) -> JwtAuthorizer {
    JwtAuthorizer::compile(&AuthorizerSpec::Jwt {
        id: "auth1".into(),
        name: String::new(),
        identity_source: "$request.header.Authorization".into(),
        issuer: issuer.into(),
        audience: audience.iter().map(|a| a.to_string()).collect(),
    })
    .unwrap()
}

const NOW_MS: u64 = 1_800_000_000_000;
const NOW: i64 = 1_800_000_000;

fn claims(issuer: &str) -> Value {
    json!({"iss": issuer, "aud": "app", "sub": "user-1", "exp": NOW + 600, "iat": NOW - 10, "nbf": NOW - 10,
           "groups": ["a", "b"], "scope": "read write"})
}

fn with(issuer: &str, change: &[(&str, Value)]) -> Value {
    let mut c = claims(issuer);
    for (k, v) in change {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(*k);
        } else {
            c[*k] = v.clone();
        }
    }
    c
}

fn scopes(names: &[&str]) -> Vec<Box<str>> {
    names.iter().map(|s| (*s).into()).collect()
}

async fn check(
    a: &JwtAuthorizer,
    token: &str,
    route_scopes: &[&str],
    c: &UpstreamClient,
) -> Result<Granted, Rejection> {
    a.authorize_token(token, &scopes(route_scopes), NOW_MS, c).await
}

fn described(r: Result<Granted, Rejection>) -> String {
    match r {
        Ok(_) => "accepted".into(),
        Err(Rejection::Invalid(why)) => why.into_owned(),
        Err(other) => format!("{other:?}"),
    }
}

#[tokio::test]
async fn every_algorithm_family_verifies() {
    let (r, e256, e384, e) = (rsa("r1"), ec("e1", false), ec("e2", true), ed("d1"));
    let issuer = LocalIssuer::start(&[&r, &e256, &e384, &e]).await;
    let a = jwt_authorizer(&issuer.url, &["app"]);
    let c = client();
    let body = claims(&issuer.url);
    for (signer, alg) in [
        (&r, Algorithm::RS256),
        (&r, Algorithm::RS384),
        (&r, Algorithm::RS512),
        (&r, Algorithm::PS256),
        (&r, Algorithm::PS384),
        (&r, Algorithm::PS512),
        (&e256, Algorithm::ES256),
        (&e384, Algorithm::ES384),
        (&e, Algorithm::EdDSA),
    ] {
        let token = signer.sign(alg, &body);
        match check(&a, &token, &[], &c).await {
            Ok(Granted::Jwt { claims, scopes }) => {
                assert_eq!(claims["sub"], "user-1", "{alg:?}");
                assert_eq!(scopes, None);
            }
            other => panic!("{alg:?}: {other:?}"),
        }
        // A Bearer prefix is the same token.
        let parts = http::Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(
            a.authorize(&parts, &[], NOW_MS, &c).await.is_ok(),
            "{alg:?} with Bearer"
        );
    }
    // One fetch served them all.
    assert_eq!(issuer.hits(), 1);
    // A key of one family does not take another family's algorithm.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("r1".into());
    let forged = encode(&header, &body, &e256.key).unwrap();
    assert_eq!(
        described(check(&a, &forged, &[], &c).await),
        "signing method ES256 is invalid"
    );
}

#[tokio::test]
async fn claims_are_checked_as_aws_lists_them() {
    let r = rsa("r1");
    let issuer = LocalIssuer::start(&[&r]).await;
    let url = issuer.url.clone();
    let a = jwt_authorizer(&url, &["app", "other-app"]);
    let c = client();
    let token = |change: &[(&str, Value)]| r.sign(Algorithm::RS256, &with(&url, change));
    let cases: Vec<(String, &str)> = vec![
        (token(&[("iss", json!("https://elsewhere.example"))]), BAD_ISSUER),
        (token(&[("iss", Value::Null)]), BAD_ISSUER),
        (token(&[("aud", json!("someone-else"))]), BAD_AUDIENCE),
        (token(&[("aud", json!(["x", "y"]))]), BAD_AUDIENCE),
        // aud wins over client_id when both are there.
        (token(&[("aud", json!("x")), ("client_id", json!("app"))]), BAD_AUDIENCE),
        (token(&[("aud", Value::Null)]), BAD_AUDIENCE),
        (token(&[("exp", json!(NOW - 1))]), EXPIRED),
        (token(&[("exp", json!(NOW))]), EXPIRED),
        (token(&[("exp", Value::Null)]), EXPIRED),
        (token(&[("exp", json!("soon"))]), EXPIRED),
        (token(&[("nbf", json!(NOW + 60))]), NOT_YET),
        (token(&[("iat", json!(NOW + 60))]), ISSUED_LATER),
    ];
    for (token, want) in &cases {
        assert_eq!(described(check(&a, token, &[], &c).await), *want);
    }
    // client_id stands in for a missing aud; aud may be a list.
    for change in [
        vec![("aud", Value::Null), ("client_id", json!("other-app"))],
        vec![("aud", json!(["x", "app"]))],
        vec![("nbf", Value::Null), ("iat", Value::Null)],
    ] {
        assert_eq!(
            described(check(&a, &token(&change), &[], &c).await),
            "accepted",
            "{change:?}"
        );
    }
    // Scopes: one of the route's, from `scope` or `scp`.
    let plain = token(&[]);
    assert_eq!(check(&a, &plain, &["admin"], &c).await.unwrap_err(), Rejection::Scope);
    match check(&a, &plain, &["admin", "write"], &c).await.unwrap() {
        Granted::Jwt { scopes, .. } => assert_eq!(scopes, Some(vec!["read".to_string(), "write".to_string()])),
        other => panic!("{other:?}"),
    }
    let scp = token(&[("scope", Value::Null), ("scp", json!(["admin"]))]);
    assert!(check(&a, &scp, &["admin"], &c).await.is_ok());
    let scp_text = token(&[("scope", Value::Null), ("scp", json!("x admin"))]);
    assert!(check(&a, &scp_text, &["admin"], &c).await.is_ok());
}

#[tokio::test]
async fn malformed_and_forged_tokens_are_refused() {
    let r = rsa("r1");
    let issuer = LocalIssuer::start(&[&r]).await;
    let a = jwt_authorizer(&issuer.url, &["app"]);
    let c = client();
    let good = r.sign(Algorithm::RS256, &claims(&issuer.url));
    let (head, rest) = good.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged_payload = URL_SAFE_NO_PAD.encode(with(&issuer.url, &[("sub", json!("admin"))]).to_string());
    let unsigned = |alg: &str, kid: &str| {
        let h = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": kid}).to_string());
        format!("{h}.{}.", URL_SAFE_NO_PAD.encode(claims(&issuer.url).to_string()))
    };
    let cases = [
        ("abc".to_string(), SEGMENTS),
        ("a.b".to_string(), SEGMENTS),
        (format!("{good}.x"), SEGMENTS),
        ("!!.??.**".to_string(), MALFORMED),
        (format!("{head}.bm90IGpzb24.{signature}"), MALFORMED),
        (format!("{head}.{forged_payload}.{signature}"), BAD_SIGNATURE),
        (format!("{head}.{}.", rest.split_once('.').unwrap().0), BAD_SIGNATURE),
        (unsigned("none", "r1"), NONE_ALG),
        (unsigned("HS256", "r1"), "signing method HS256 is invalid"),
        (unsigned("RS256", "nope"), UNKNOWN_KID),
    ];
    for (token, want) in &cases {
        assert_eq!(described(check(&a, token, &[], &c).await), *want, "{token}");
    }
    assert!(check(&a, &good, &[], &c).await.is_ok());
}

#[tokio::test]
async fn a_verified_token_is_remembered_until_it_expires() {
    let r = rsa("r1");
    let issuer = LocalIssuer::start(&[&r]).await;
    let a = jwt_authorizer(&issuer.url, &["app"]);
    let c = client();
    let token = r.sign(Algorithm::RS256, &with(&issuer.url, &[("exp", json!(NOW + 5))]));
    let now = NOW_MS as f64 / 1000.0;
    assert!(a.remembered(&token, now).is_none());
    assert!(check(&a, &token, &[], &c).await.is_ok());
    assert!(a.remembered(&token, now).is_some());
    // Still held to the route's scopes.
    assert_eq!(check(&a, &token, &["admin"], &c).await.unwrap_err(), Rejection::Scope);
    // Past its exp the cache does not answer, and the token is refused.
    assert!(a.remembered(&token, now + 5.0).is_none());
    let later = a.authorize_token(&token, &[], NOW_MS + 5_000, &c).await;
    assert_eq!(described(later), EXPIRED);
}

#[tokio::test]
async fn keys_rotate_on_an_unknown_kid_and_a_flood_fetches_once() {
    let (old, new) = (rsa("old"), ec("new", false));
    let issuer = LocalIssuer::start(&[&old]).await;
    let a = Arc::new(jwt_authorizer(&issuer.url, &["app"]));
    let c = Arc::new(client());
    let body = claims(&issuer.url);
    let old_token = old.sign(Algorithm::RS256, &body);
    assert!(check(&a, &old_token, &[], &c).await.is_ok());
    assert_eq!(issuer.hits(), 1);

    // The issuer rotates: a new kid appears, the old one is gone.
    issuer.publish(&[&new]);
    let new_token = new.sign(Algorithm::ES256, &body);
    // Many requests with the new kid at once: one fetch between them.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (a, c, t) = (a.clone(), c.clone(), new_token.clone());
        tasks.spawn(async move { a.authorize_token(&t, &[], NOW_MS, &c).await.is_ok() });
    }
    while let Some(ok) = tasks.join_next().await {
        assert!(ok.unwrap());
    }
    assert_eq!(issuer.hits(), 2);
    // The old key is no longer the issuer's: its token, remembered or not, is refused (after
    // one more fetch, which finds it gone).
    assert!(a.remembered(&old_token, NOW_MS as f64 / 1000.0).is_none());
    assert_eq!(described(check(&a, &old_token, &[], &c).await), UNKNOWN_KID);
    assert_eq!(issuer.hits(), 3);

    // A flood of made-up kids right after that miss: no fetch within the retry delay.
    for i in 0..50 {
        let made_up = ec(&format!("forged-{i}"), false).sign(Algorithm::ES256, &body);
        assert_eq!(described(check(&a, &made_up, &[], &c).await), UNKNOWN_KID);
    }
    assert_eq!(issuer.hits(), 3);
    // Known keys keep working meanwhile.
    assert!(check(&a, &new_token, &[], &c).await.is_ok());
}

#[tokio::test]
async fn keys_are_served_from_cache_while_the_issuer_is_down() {
    let r = rsa("r1");
    let issuer = LocalIssuer::start(&[&r]).await;
    let a = jwt_authorizer(&issuer.url, &["app"]);
    let c = client();
    assert!(check(&a, &r.sign(Algorithm::RS256, &claims(&issuer.url)), &[], &c)
        .await
        .is_ok());
    issuer.up.store(false, Ordering::SeqCst);
    // A token not seen before, signed with a known key: verified with the cached key.
    let other = r.sign(Algorithm::PS256, &with(&issuer.url, &[("sub", json!("user-2"))]));
    assert!(check(&a, &other, &[], &c).await.is_ok());
    // An unknown kid cannot be fetched: refused, and no other fetch is tried for a while.
    let unknown = ed("new").sign(Algorithm::EdDSA, &claims(&issuer.url));
    assert_eq!(described(check(&a, &unknown, &[], &c).await), UNKNOWN_KID);
    let fetches = a.issuers[0].fetches();
    assert_eq!(described(check(&a, &unknown, &[], &c).await), UNKNOWN_KID);
    assert_eq!(a.issuers[0].fetches(), fetches);
}

#[tokio::test]
async fn a_redeployed_authorizer_keeps_the_issuer_s_keys() {
    let r = rsa("r1");
    let issuer = LocalIssuer::start(&[&r]).await;
    let c = client();
    let token = r.sign(Algorithm::RS256, &claims(&issuer.url));
    assert!(check(&jwt_authorizer(&issuer.url, &["app"]), &token, &[], &c)
        .await
        .is_ok());
    // Another deployment's authorizer (a new cache of tokens), the same issuer: no fetch.
    assert!(check(&jwt_authorizer(&issuer.url, &["app"]), &token, &[], &c)
        .await
        .is_ok());
    assert_eq!(issuer.hits(), 1);
}

#[tokio::test]
async fn cognito_takes_id_tokens_without_scopes_and_access_tokens_with() {
    let r = rsa("r1");
    let pool_a = LocalIssuer::start(&[&r]).await;
    let pool_b = LocalIssuer::start(&[&r]).await;
    let a = JwtAuthorizer::compile(&AuthorizerSpec::Cognito {
        id: "cog".into(),
        name: String::new(),
        identity_source: "method.request.header.Authorization".into(),
        issuers: vec![pool_a.url.clone(), pool_b.url.clone()],
        ttl_s: 300,
    })
    .unwrap();
    let c = client();
    let id_token = |iss: &str| {
        r.sign(
            Algorithm::RS256,
            &json!({"iss": iss, "aud": "any-client", "token_use": "id", "sub": "u", "exp": NOW + 60}),
        )
    };
    let access = r.sign(
        Algorithm::RS256,
        &json!({"iss": pool_b.url, "client_id": "c", "token_use": "access", "scope": "pets/read", "exp": NOW + 60}),
    );
    assert!(check(&a, &id_token(&pool_a.url), &[], &c).await.is_ok());
    assert!(check(&a, &id_token(&pool_b.url), &[], &c).await.is_ok());
    assert_eq!(
        described(check(&a, &id_token("https://cognito-idp.example/other"), &[], &c).await),
        BAD_ISSUER
    );
    assert_eq!(described(check(&a, &access, &[], &c).await), ID_TOKEN_WANTED);
    assert_eq!(
        described(check(&a, &id_token(&pool_a.url), &["pets/read"], &c).await),
        ACCESS_TOKEN_WANTED
    );
    match check(&a, &access, &["pets/read"], &c).await {
        Ok(Granted::Jwt { claims, scopes }) => {
            assert_eq!(claims["client_id"], "c");
            assert_eq!(scopes, None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        check(&a, &access, &["pets/write"], &c).await.unwrap_err(),
        Rejection::Scope
    );
}

#[test]
fn the_token_is_the_identity_source_bare_or_after_bearer() {
    for (value, token) in [
        ("abc", Some("abc")),
        ("Bearer abc", Some("abc")),
        ("bearer   abc ", Some("abc")),
        ("  BEARER abc", Some("abc")),
        ("Bearer", Some("Bearer")),
        // (HTTP trims the value: "Bearer " arrives as "Bearer", a token of its own.)
        ("Bearer ", Some("Bearer")),
        ("Bearer \t ", Some("Bearer")),
        ("", None),
        ("   ", None),
    ] {
        assert_eq!(bare_token(value).map(|r| &value[r]), token, "{value:?}");
    }
    let a = JwtAuthorizer::compile(&AuthorizerSpec::Jwt {
        id: "q".into(),
        name: String::new(),
        identity_source: "$request.querystring.access_token".into(),
        issuer: "https://issuer.example".into(),
        audience: vec![],
    })
    .unwrap();
    let parts = |uri: &str| http::Request::get(uri).body(()).unwrap().into_parts().0;
    assert_eq!(
        a.token(&parts("/x?access_token=Bearer%20t.o.k&b=1")).as_deref(),
        Some("t.o.k")
    );
    assert_eq!(a.token(&parts("/x?other=1")), None);
    assert_eq!(a.token(&parts("/x?access_token=")), None);
}

#[test]
fn issuers_are_https_or_loopback() {
    for ok in [
        "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc",
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://[::1]:8080",
    ] {
        assert!(check_url(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://issuer.example",
        "http://10.0.0.1/x",
        "ftp://x",
        "issuer.example",
        "",
        "https://",
    ] {
        assert!(check_url(bad).is_err(), "{bad}");
    }
    let spec = |issuer: &str, source: &str| AuthorizerSpec::Jwt {
        id: "x".into(),
        name: String::new(),
        identity_source: source.into(),
        issuer: issuer.into(),
        audience: vec![],
    };
    assert!(JwtAuthorizer::compile(&spec("http://issuer.example", "$request.header.Authorization")).is_err());
    assert!(JwtAuthorizer::compile(&spec("https://issuer.example", "$context.routeKey")).is_err());
}

#[test]
fn www_authenticate_reads_as_aws_writes_it() {
    let invalid = Rejection::Invalid(Cow::Borrowed(BAD_AUDIENCE));
    assert_eq!(
        invalid.www_authenticate(&[]),
        r#"Bearer scope="" error="invalid_token" error_description="the token does not have a valid audience""#
    );
    assert_eq!(
        Rejection::Invalid(Cow::Borrowed(EXPIRED)).www_authenticate(&scopes(&["a/read", "b"])),
        r#"Bearer scope="a/read b" error="invalid_token" error_description="the token has expired""#
    );
    assert_eq!(
        Rejection::Scope.www_authenticate(&scopes(&["x\"y"])),
        r#"Bearer scope="x\"y" error="insufficient_scope" error_description="the token does not have the required scope""#
    );
    assert_eq!(Rejection::Missing.www_authenticate(&[]), "Bearer");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, .. Default::default() })]

    /// Whatever is sent as a token, it is refused, without a panic.
    #[test]
    fn arbitrary_tokens_are_refused(
        parts in proptest::collection::vec("[A-Za-z0-9_=+/.-]{0,40}", 0..5),
        noise in ".{0,60}",
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let a = jwt_authorizer("http://127.0.0.1:9/nobody", &["app"]);
            let c = client();
            for token in [parts.join("."), noise.clone(), format!("{}.{}", parts.join("."), noise)] {
                proptest::prop_assert!(check(&a, &token, &[], &c).await.is_err());
            }
            Ok(())
        })?;
    }
}
