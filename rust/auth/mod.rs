//! The authorize phase: who may call a route, decided in the core before anything reaches the
//! integration (see docs/pipeline.md, "authorize").
//!
//! In AWS's order ("Controlling and managing access to a REST API" in the developer guide): the
//! REST API's resource policy, then the route's authorization (`AWS_IAM` SigV4, a JWT or Cognito
//! authorizer, a Lambda authorizer), then its API key. What each check learns (the caller's
//! identity, an authorizer's principal and context, the key) is kept in an `AuthContext`, which
//! the Lambda event, plugins and the access log read.

pub mod api_keys;
pub mod iam;
pub mod jwt;
pub mod lambda;
pub mod mtls;
pub mod policy;
pub mod sigv4;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::spec::{AuthorizationType, AuthorizerSpec, RouteAuthSpec, Settings};

/// A route's authorization, compiled.
#[derive(Debug)]
pub struct RouteAuth {
    pub authorization: AuthorizationType,
    /// The route's authorizer (JWT, COGNITO_USER_POOLS and CUSTOM routes), or why it cannot work
    /// (the route answers AUTHORIZER_CONFIGURATION_ERROR and the log says why).
    pub authorizer: Option<Result<Arc<Authorizer>, Box<str>>>,
    /// `authorizationScopes`: a JWT must carry one of them.
    pub scopes: Vec<Box<str>>,
    pub api_key_required: bool,
}

/// An authorizer, compiled once per deployment and shared by the routes that name it.
#[derive(Debug)]
pub enum Authorizer {
    /// A JWT authorizer of an HTTP API.
    Jwt(jwt::JwtAuthorizer),
    /// A Cognito user pool authorizer of a REST API.
    Cognito(jwt::JwtAuthorizer),
    /// A Lambda function decides (REST TOKEN/REQUEST, HTTP APIs' payload 1.0 and 2.0).
    Lambda(lambda::LambdaAuthorizer),
}

/// Where authorizers are compiled: the API and stage they serve, and what they keep across
/// snapshots (the gateway's caches).
pub struct AuthScope<'a> {
    pub api_id: &'a str,
    pub stage: &'a str,
    pub variables: &'a [(Box<str>, Box<str>)],
    pub settings: &'a Settings,
    /// The stage's authorizer-cache epoch: `FlushStageAuthorizersCache` moves it.
    pub authorizer_cache_epoch: u64,
    pub lambda_caches: &'a mut lambda::Caches,
}

impl Authorizer {
    pub fn compile(spec: &AuthorizerSpec, scope: &mut AuthScope<'_>) -> Result<Authorizer, String> {
        match spec {
            AuthorizerSpec::Jwt { .. } => jwt::JwtAuthorizer::compile(spec).map(Authorizer::Jwt),
            AuthorizerSpec::Cognito { .. } => jwt::JwtAuthorizer::compile(spec).map(Authorizer::Cognito),
            AuthorizerSpec::Lambda { .. } => lambda::LambdaAuthorizer::compile(spec, scope).map(Authorizer::Lambda),
        }
    }
}

impl RouteAuth {
    /// `shared` holds the authorizers compiled so far for this deployment, by id: routes naming
    /// the same authorizer share one (its caches included).
    pub fn compile(
        spec: &RouteAuthSpec,
        shared: &mut std::collections::HashMap<String, (AuthorizerSpec, Result<Arc<Authorizer>, Box<str>>)>,
        scope: &mut AuthScope<'_>,
    ) -> RouteAuth {
        let authorizer = spec.authorizer.as_ref().map(|a| match shared.get(a.id()) {
            Some((seen, compiled)) if seen == a => compiled.clone(),
            _ => {
                let compiled = Authorizer::compile(a, scope).map(Arc::new).map_err(Box::<str>::from);
                shared.insert(a.id().to_owned(), (a.clone(), compiled.clone()));
                compiled
            }
        });
        RouteAuth {
            authorization: spec.authorization,
            authorizer,
            scopes: spec.scopes.iter().map(|s| s.as_str().into()).collect(),
            api_key_required: spec.api_key_required,
        }
    }
}

/// What authorization learned about a request.
#[derive(Debug, Default, Clone)]
pub struct AuthContext {
    /// What the route's authorizer granted.
    pub granted: Granted,
    /// The SigV4 caller of an `AWS_IAM` route.
    pub iam: Option<IamIdentity>,
    /// The API key that passed (`$context.identity.apiKey`, `apiKeyId`).
    pub api_key: Option<ApiKeyIdentity>,
    /// The client's certificate, when the listener asks for one (mTLS).
    pub client_cert: Option<Arc<ClientCert>>,
}

/// What a route's authorizer granted.
#[derive(Debug, Default, Clone)]
pub enum Granted {
    /// No authorizer (NONE or AWS_IAM).
    #[default]
    Nothing,
    /// A JWT authorizer (HTTP APIs) or a Cognito user pool authorizer (REST APIs): the token's
    /// claims, and the scopes it carries when the route asks for some.
    Jwt {
        /// Shared with the authorizer's cache of verified tokens.
        claims: Arc<serde_json::Map<String, Value>>,
        scopes: Option<Vec<String>>,
    },
    /// A Lambda authorizer: its `principalId` and `context` (for simple responses, the context
    /// only), and how long it took.
    Lambda {
        principal_id: Option<String>,
        context: serde_json::Map<String, Value>,
        /// The API key the authorizer names (`usageIdentifierKey`), for APIs whose key source
        /// is AUTHORIZER.
        usage_identifier_key: Option<String>,
        latency_ms: u64,
    },
}

/// The caller of an `AWS_IAM` route, as `requestContext.identity` (REST, HTTP 1.0) and
/// `requestContext.authorizer.iam` (HTTP 2.0) show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamIdentity {
    pub access_key: String,
    pub account_id: String,
    /// The caller's unique id (`AIDA...` for users; the session's for roles).
    pub caller: String,
    pub user: String,
    pub user_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyIdentity {
    pub value: String,
    pub id: String,
    /// The key's index in the snapshot's `ApiKeys` (its refusal counters).
    pub index: u32,
    /// Its membership in the usage plan bound to the request's stage (`ApiKeys::plan_key`).
    pub plan_key: Option<u32>,
}

/// A client certificate, as `requestContext.identity.clientCert` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub pem: String,
    pub subject_dn: String,
    pub issuer_dn: String,
    pub serial_number: String,
    pub not_before: String,
    pub not_after: String,
}

/// Where an authorizer reads its identity: AWS's identity-source expressions, in the REST
/// dialect (`method.request.header.X`), the HTTP API one (`$request.header.X`) or the WebSocket
/// one (`route.request.header.X`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    Header(String),
    Query(String),
    StageVariable(String),
    Context(String),
}

impl IdentitySource {
    pub fn parse(expression: &str) -> Result<IdentitySource, String> {
        let e = expression.trim();
        let body = e
            .strip_prefix("method.request.")
            .or_else(|| e.strip_prefix("$request."))
            // WebSocket APIs' dialect: `route.request.header.X`, `route.request.querystring.X`.
            .or_else(|| e.strip_prefix("route.request."))
            .map(|rest| ("request", rest))
            .or_else(|| e.strip_prefix("$stageVariables.").or_else(|| e.strip_prefix("stageVariables.")).map(|r| ("stage", r)))
            .or_else(|| e.strip_prefix("$context.").or_else(|| e.strip_prefix("context.")).map(|r| ("context", r)));
        let bad = || format!("{expression:?} is not an identity source (method.request.header.NAME, $request.querystring.NAME, stageVariables.NAME, context.NAME)");
        let (kind, rest) = body.ok_or_else(bad)?;
        let named = |name: &str| (!name.is_empty()).then(|| name.to_owned()).ok_or_else(bad);
        Ok(match kind {
            "request" => match rest.split_once('.') {
                Some(("header", name)) => IdentitySource::Header(named(name)?.to_ascii_lowercase()),
                Some(("querystring", name)) => IdentitySource::Query(named(name)?),
                _ => return Err(bad()),
            },
            "stage" => IdentitySource::StageVariable(named(rest)?),
            _ => IdentitySource::Context(named(rest)?),
        })
    }
}

/// `arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/PATH`: what policies name, with the
/// request's actual path (`methodArn`, `routeArn`). The root path gives `.../GET/`.
pub fn execute_api_arn(region: &str, account_id: &str, api_id: &str, stage: &str, method: &str, path: &str) -> String {
    let path = path.strip_prefix('/').unwrap_or(path);
    format!("arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/{method}/{path}")
}

/// Claims as API Gateway hands them on: strings as they are, other scalars as their JSON text,
/// arrays as `[a b]` (HTTP APIs' rendering), objects as JSON.
pub fn flatten_claims(claims: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    claims.iter().map(|(k, v)| (k.clone(), claim_text(v))).collect()
}

pub fn claim_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(claim_text).collect();
            format!("[{}]", parts.join(" "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_sources_in_both_dialects() {
        for (expression, source) in [
            ("method.request.header.Authorization", IdentitySource::Header("authorization".into())),
            ("$request.header.X-Token", IdentitySource::Header("x-token".into())),
            ("method.request.querystring.token", IdentitySource::Query("token".into())),
            ("$request.querystring.token", IdentitySource::Query("token".into())),
            ("route.request.header.Auth", IdentitySource::Header("auth".into())),
            ("route.request.querystring.token", IdentitySource::Query("token".into())),
            ("stageVariables.realm", IdentitySource::StageVariable("realm".into())),
            ("$stageVariables.realm", IdentitySource::StageVariable("realm".into())),
            ("context.routeKey", IdentitySource::Context("routeKey".into())),
            ("$context.routeKey", IdentitySource::Context("routeKey".into())),
        ] {
            assert_eq!(IdentitySource::parse(expression).unwrap(), source, "{expression}");
        }
        for bad in ["", "header.x", "method.request.path.id", "$request.header.", "$request.body.x"] {
            assert!(IdentitySource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn method_arns_keep_the_actual_path() {
        assert_eq!(
            execute_api_arn("us-east-1", "123456789012", "abc", "prod", "GET", "/"),
            "arn:aws:execute-api:us-east-1:123456789012:abc/prod/GET/"
        );
        assert_eq!(
            execute_api_arn("us-east-1", "123456789012", "abc", "$default", "POST", "/pets/7"),
            "arn:aws:execute-api:us-east-1:123456789012:abc/$default/POST/pets/7"
        );
    }

    #[test]
    fn claims_render_as_api_gateway_shows_them() {
        let claims = json!({"sub": "u1", "n": 5, "ok": true, "groups": ["a", "b"], "o": {"k": 1}});
        let flat = flatten_claims(claims.as_object().unwrap());
        assert_eq!(flat["sub"], "u1");
        assert_eq!(flat["n"], "5");
        assert_eq!(flat["ok"], "true");
        assert_eq!(flat["groups"], "[a b]");
        assert_eq!(flat["o"], r#"{"k":1}"#);
    }
}
