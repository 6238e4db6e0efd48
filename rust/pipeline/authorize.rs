//! The authorize phase (see `crate::auth` and docs/pipeline.md): the REST API's resource policy,
//! the route's authorization, then its API key, each failing with AWS's gateway response before
//! anything reaches the integration.

use http::header::{HeaderName, WWW_AUTHENTICATE};

use super::body::PipelineBody;
use super::{fail, header_str, ip_text, protocol, Connection, Exchange, Failure, Pipeline};
use crate::auth::policy::{Request as PolicyRequest, Verdict};
use crate::auth::jwt::{JwtAuthorizer, Rejection};
use crate::auth::lambda::{AuthRequest, LambdaAuthorizer};
use crate::auth::{execute_api_arn, Authorizer, Granted};
use crate::gateway::{ApiKind, Decision, Snapshot};
use crate::lambda::{EventSource, PayloadFormat};
use crate::pipeline::responses::ErrorType;
use crate::spec::{ApiKeySource, AuthorizationType};

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

impl Pipeline {
    /// Authorize the request routed by `d`: what was learned goes into `ex.auth`. `body` is read
    /// (and replaced by what was read) only when a signature's payload hash needs it.
    pub(super) async fn authorize(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        conn: &Connection,
        ex: &mut Exchange,
        d: &Decision<'_>,
        body: &mut PipelineBody,
    ) -> Result<(), Failure> {
        let Some(api) = ex.api.map(|a| snap.api(a)) else {
            return Ok(());
        };
        // The route through its own handle on the deployment, so that `ex` stays free to learn.
        let serving = ex.serving.clone();
        let route_auth = ex.route.and_then(|r| serving.as_ref()?.routes[r].auth.as_ref());
        if api.policy.is_none() && route_auth.is_none() {
            return Ok(());
        }
        let stage = serving.as_ref().map_or("", |s| &*s.stage);
        let settings = &snap.settings;
        let arn = match (api.kind, ex.route()) {
            // A WebSocket API authorizes its `$connect` route, whose ARN has no HTTP method:
            // `arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/$connect`.
            (ApiKind::Websocket, Some(route)) => {
                let (region, account) = (&settings.region, &settings.account_id);
                format!("arn:aws:execute-api:{region}:{account}:{}/{stage}/{}", api.id, route.key)
            }
            _ => execute_api_arn(&settings.region, &settings.account_id, &api.id, stage, parts.method.as_str(), d.path),
        };

        // The resource policy (REST APIs), for an anonymous caller: evaluated before any
        // authorizer runs, so that its explicit deny costs no authorizer call. AWS_IAM routes
        // evaluate it with the signer instead, together with the signer's identity policy.
        let resource_policy = match &api.policy {
            None => None,
            Some(Ok(policy)) => Some(policy),
            Some(Err(why)) => return fail(ErrorType::ApiConfigurationError, why.to_string()),
        };
        let iam = route_auth.is_some_and(|r| r.authorization == AuthorizationType::AwsIam);
        if let (Some(policy), false) = (resource_policy, iam) {
            let request = PolicyRequest {
                action: "execute-api:Invoke",
                resource: &arn,
                principal: None,
                principal_account: None,
                source_ip: conn.client_ip,
            };
            match policy.evaluate(&request) {
                Verdict::Allow => {}
                verdict => {
                    let explicit = if verdict == Verdict::Deny { " with an explicit deny" } else { "" };
                    return Err(Failure::new(ErrorType::AccessDenied, "the resource policy refuses the caller")
                        .saying(format!(
                            "User: anonymous is not authorized to perform: execute-api:Invoke on resource: {arn}{explicit}"
                        )));
                }
            }
        }
        let Some(route_auth) = route_auth else {
            return Ok(());
        };

        // The route's authorization.
        match route_auth.authorization {
            AuthorizationType::None => {}
            AuthorizationType::AwsIam => {
                self.authorize_iam(snap, parts, conn, ex, api.kind, resource_policy, &arn, "execute-api:Invoke", body)
                    .await?;
            }
            AuthorizationType::Jwt | AuthorizationType::Custom | AuthorizationType::CognitoUserPools => {
                match &route_auth.authorizer {
                    None => {
                        return fail(
                            ErrorType::AuthorizerConfigurationError,
                            "the route names no authorizer for its authorization type",
                        )
                    }
                    Some(Err(why)) => return fail(ErrorType::AuthorizerConfigurationError, why.to_string()),
                    Some(Ok(authorizer)) => match &**authorizer {
                        Authorizer::Jwt(jwt) | Authorizer::Cognito(jwt) => {
                            let scopes = &route_auth.scopes;
                            match jwt.authorize(parts, scopes, ex.epoch_ms, &self.upstream).await {
                                Ok(granted) => ex.auth.granted = granted,
                                Err(rejection) => return Err(jwt_failure(jwt, &rejection, scopes, api.kind)),
                            }
                        }
                        Authorizer::Lambda(lambda) => {
                            ex.auth.granted = self.lambda_authorizer(lambda, snap, parts, conn, ex, d, &arn).await?;
                        }
                    },
                }
            }
        }

        // The API key (REST APIs' methods, WebSocket APIs' `$connect`): from the header, or from
        // the Lambda authorizer's `usageIdentifierKey` when the API's key source is AUTHORIZER
        // (WebSocket APIs: `apiKeySelectionExpression`).
        if route_auth.api_key_required && api.kind != ApiKind::Http {
            let presented = match api.api_key_source {
                ApiKeySource::Header => header_str(&parts.headers, X_API_KEY).map(str::to_owned),
                ApiKeySource::Authorizer => match &ex.auth.granted {
                    Granted::Lambda { usage_identifier_key, .. } => usage_identifier_key.clone(),
                    _ => None,
                },
            };
            let key = presented.and_then(|value| snap.api_keys.check(&value, &api.id, stage));
            match key {
                Some(key) => ex.auth.api_key = Some(key),
                None => return fail(ErrorType::InvalidApiKey, "no API key, or one not bound to this stage"),
            }
        }
        Ok(())
    }

    /// A Lambda authorizer's decision (`crate::auth::lambda`), on the request as its event shows
    /// it: what the route's integration would see, without the body.
    #[allow(clippy::too_many_arguments)]
    async fn lambda_authorizer(
        &self,
        lambda: &LambdaAuthorizer,
        snap: &Snapshot,
        parts: &http::request::Parts,
        conn: &Connection,
        ex: &Exchange,
        d: &Decision<'_>,
        arn: &str,
    ) -> Result<Granted, Failure> {
        let settings = &snap.settings;
        let api = snap.api(ex.api.unwrap_or(0));
        let serving = ex.serving.as_deref();
        let route = ex.route();
        let params: smallvec::SmallVec<[(&str, &str); 4]> = d.params().collect();
        let mut ip = [0u8; 48];
        let source = EventSource {
            format: lambda.payload_format().unwrap_or(PayloadFormat::RestV1),
            request_id: &ex.request_id,
            extended_request_id: ex.extended_request_id(),
            trace_id: "",
            method: parts.method.as_str(),
            raw_path: ex.addressed_path(parts),
            path: d.path,
            raw_query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            host: header_str(&parts.headers, http::header::HOST).unwrap_or(""),
            scheme: conn.scheme,
            protocol: protocol(parts.version),
            client_ip: ip_text(conn.client_ip, &mut ip),
            time_epoch_ms: ex.epoch_ms,
            account_id: &settings.account_id,
            api_id: &api.id,
            stage: serving.map_or("", |s| &s.stage),
            deployment_id: serving.map_or("", |s| &s.deployment_id),
            route_key: route.map_or("", |r| &r.key),
            resource_path: route.map_or("", |r| &r.resource_path),
            path_params: &params,
            stage_variables: serving.map_or(&[], |s| &s.variables),
            body: &[],
            binary_media_types: &api.binary_media_types,
            // Nothing granted yet; the client's certificate (mTLS) is in the event, as on AWS.
            auth: &ex.auth,
        };
        lambda
            .authorize(AuthRequest {
                invoker: &self.invoker,
                source,
                ids: &self.ids,
                kind: api.kind,
                arn,
                region: &settings.region,
                client_ip: conn.client_ip,
                connection: ex.websocket.as_deref(),
            })
            .await
    }
}

/// A JWT or Cognito authorizer's refusal: HTTP APIs answer 401 (403 for a missing scope) with
/// `www-authenticate`; REST APIs' Cognito authorizers answer 401 `Unauthorized` whatever failed.
fn jwt_failure(jwt: &JwtAuthorizer, rejection: &Rejection, scopes: &[Box<str>], kind: ApiKind) -> Failure {
    let detail = format!("authorizer {}: {}", jwt.id(), rejection.describe());
    match kind {
        ApiKind::Http | ApiKind::Websocket => {
            let error = match rejection {
                Rejection::Scope => ErrorType::AccessDenied,
                _ => ErrorType::Unauthorized,
            };
            Failure::new(error, detail).with_header(WWW_AUTHENTICATE, rejection.www_authenticate(scopes))
        }
        ApiKind::Rest => Failure::new(ErrorType::Unauthorized, detail),
    }
}
