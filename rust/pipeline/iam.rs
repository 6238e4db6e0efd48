//! The authorize phase's `AWS_IAM` arm (see `crate::auth::sigv4` and `crate::auth::iam`): the
//! request's SigV4 signature is verified against the principals the gateway knows, then the
//! signer's identity policy and the REST API's resource policy decide; the caller reaches the
//! integration as `requestContext.identity` / `authorizer.iam`.
//!
//! The payload hash is the `X-Amz-Content-Sha256` header when the request sends one; otherwise the
//! body is read whole (within the payload limit) to hash it, and handed on to the integration as
//! read. Checks that need no body (the credential scope, the date, the key, the session token)
//! come first, so a request refused for them is refused before its body is read.

use http::header::HeaderName;
use hyper::body::Body as _;

use super::body::{self, full, PipelineBody};
use super::{body_failure, declared_length, fail, header_str, Connection, Exchange, Failure, Pipeline};
use crate::auth::iam::{self, Decision};
use crate::auth::policy::{Policy, Request as PolicyRequest};
use crate::auth::sigv4::{self, Presented, Refusal};
use crate::gateway::{ApiKind, Snapshot};
use crate::pipeline::responses::ErrorType;

const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");

/// AWS's answer to a refused signature, for an API of `kind`.
fn refused(refusal: Refusal, kind: ApiKind) -> Failure {
    match refusal {
        // A REST API's unsigned request is AWS's MISSING_AUTHENTICATION_TOKEN; an HTTP API
        // answers 403 Forbidden.
        Refusal::Missing => match kind {
            ApiKind::Rest => Failure::new(ErrorType::MissingAuthenticationToken, "SigV4: the request is not signed"),
            ApiKind::Http | ApiKind::Websocket => Failure::new(ErrorType::AccessDenied, "SigV4: the request is not signed"),
        },
        Refusal::Incomplete(message) => {
            Failure::new(ErrorType::IncompleteSignature, "SigV4: the signature cannot be read").saying(message)
        }
        Refusal::Invalid(why, message) => Failure::new(ErrorType::InvalidSignature, format!("SigV4: {why}")).saying(message),
        Refusal::Unrecognized => Failure::new(
            ErrorType::UnrecognizedClient,
            "SigV4: an unknown access key, or a session token that is not the key's",
        ),
    }
}

impl Pipeline {
    /// Authorize an `AWS_IAM` route's request: what was learned goes into `ex.auth.iam`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn authorize_iam(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        conn: &Connection,
        ex: &mut Exchange,
        kind: ApiKind,
        resource_policy: Option<&Policy>,
        arn: &str,
        action: &str,
        body: &mut PipelineBody,
    ) -> Result<(), Failure> {
        let settings = &snap.settings;
        let raw_query = parts.uri.query().unwrap_or("");
        let presented = Presented::parse(&parts.headers, raw_query).map_err(|r| refused(r, kind))?;
        let now_s = (ex.epoch_ms / 1000) as i64;
        let principal = snap
            .principals
            .authenticate(&presented, &settings.region, now_s)
            .map_err(|r| refused(r, kind))?;

        let payload_hash = match header_str(&parts.headers, X_AMZ_CONTENT_SHA256) {
            Some(hash) => hash.to_owned(),
            None if body.is_end_stream() => sigv4::EMPTY_SHA256.to_owned(),
            None => {
                if declared_length(&parts.headers).is_some_and(|n| n > settings.payload_limit) {
                    return fail(ErrorType::RequestTooLarge, "declared Content-Length over the payload limit");
                }
                let taken = std::mem::replace(body, body::empty());
                let bytes = body::read_all(taken, settings.payload_limit).await.map_err(body_failure)?;
                let hash = sigv4::sha256_hex(&bytes);
                *body = full(bytes);
                hash
            }
        };
        let canonical =
            presented.canonical_request(parts.method.as_str(), parts.uri.path(), raw_query, &parts.headers, &payload_hash);
        principal.verify(&presented, &canonical).map_err(|r| refused(r, kind))?;

        let identity = &principal.identity;
        let request = PolicyRequest {
            action,
            resource: arn,
            principal: Some(&identity.user_arn),
            principal_account: Some(&identity.account_id),
            source_ip: conn.client_ip,
        };
        match iam::authorize(principal, resource_policy, &settings.account_id, &request) {
            Decision::Allow => {
                ex.auth.iam = Some(identity.clone());
                Ok(())
            }
            Decision::Deny { explicit } => {
                let detail = format!("IAM: {} may not {action} {arn}", identity.user_arn);
                let failure = Failure::new(ErrorType::AccessDenied, detail);
                // REST APIs word the refusal with the caller and the resource; HTTP APIs answer
                // 403 Forbidden.
                Err(match kind {
                    ApiKind::Rest => failure.saying(format!(
                        "User: {} is not authorized to perform: execute-api:Invoke on resource: {arn}{}",
                        identity.user_arn,
                        if explicit { " with an explicit deny" } else { "" }
                    )),
                    ApiKind::Http | ApiKind::Websocket => failure,
                })
            }
        }
    }
}
