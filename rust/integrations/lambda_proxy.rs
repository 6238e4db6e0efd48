//! `AWS_PROXY`: the request becomes a Lambda proxy event (payload 1.0 or 2.0, `crate::lambda`),
//! the Python side runs the handler (`crate::invoke`), and its result becomes the response.

use std::time::Duration;

use crate::invoke::{Call, Invoker, LambdaCall, Reply};
use crate::lambda::{self, EventSource, LambdaResponse, PayloadFormat};
use crate::pipeline::responses::ErrorType;
use crate::spec::{ApiKind, PayloadVersion};

use super::http_proxy::substitute_stage_variables;

#[derive(Debug)]
pub struct LambdaProxy {
    /// The function URI with the stage's variables filled in, or why it cannot be.
    uri: Result<Box<str>, Box<str>>,
    pub format: PayloadFormat,
    pub timeout: Duration,
}

impl LambdaProxy {
    pub fn compile(
        uri: &str,
        kind: ApiKind,
        version: PayloadVersion,
        timeout_ms: u64,
        variables: &[(Box<str>, Box<str>)],
    ) -> LambdaProxy {
        let format = match (kind, version) {
            (ApiKind::Rest, _) => PayloadFormat::RestV1,
            (ApiKind::Http, PayloadVersion::V1) => PayloadFormat::HttpV1,
            (ApiKind::Http, PayloadVersion::V2) => PayloadFormat::HttpV2,
        };
        LambdaProxy {
            uri: resolve(uri, variables),
            format,
            timeout: Duration::from_millis(timeout_ms.max(1)),
        }
    }

    /// Invoke the function with the event built from `source`; the response it maps to, or the
    /// gateway response to answer with (and why, for the log).
    pub async fn invoke(
        &self,
        invoker: &Invoker,
        source: &EventSource<'_>,
        accept: Option<&str>,
        region: &str,
        account_id: &str,
        invocation_id: String,
    ) -> Result<LambdaResponse, (ErrorType, String)> {
        let uri = match &self.uri {
            Ok(uri) => uri.clone(),
            Err(why) => return Err((ErrorType::FunctionError, why.to_string())),
        };
        let event = lambda::build_event(source);
        let reply = invoker.call(Call::Lambda(LambdaCall {
            invocation_id,
            uri,
            event,
            timeout_ms: self.timeout.as_millis() as u64,
            region: region.into(),
            account_id: account_id.into(),
        }));
        let result = match tokio::time::timeout(self.timeout, reply).await {
            Err(_) => {
                return Err((
                    ErrorType::IntegrationTimeout,
                    format!("function timed out after {} ms", self.timeout.as_millis()),
                ))
            }
            Ok(Err(_)) => return Err((ErrorType::IntegrationFailure, "the Python side stopped".into())),
            Ok(Ok(Reply::Lambda(Ok(result)))) => result,
            Ok(Ok(Reply::Lambda(Err(failure)))) => return Err(failure),
            Ok(Ok(_)) => return Err((ErrorType::IntegrationFailure, "unexpected reply".into())),
        };
        if let Some(why) = lambda::response::payload_too_large(&result) {
            return Err((ErrorType::FunctionError, why));
        }
        lambda::parse_response(self.format, &result, accept, source.binary_media_types)
            .map_err(|m| (ErrorType::MalformedResponse, m.0))
    }
}

/// `uri` with `${stageVariables.NAME}` filled in; a variable the stage lacks is an error, reported
/// per request (the route answers as a failed function, as on AWS).
fn resolve(uri: &str, variables: &[(Box<str>, Box<str>)]) -> Result<Box<str>, Box<str>> {
    const MARK: &str = "${stageVariables.";
    let mut rest = uri;
    while let Some(start) = rest.find(MARK) {
        let Some(end) = rest[start..].find('}') else {
            return Err(format!("invalid function URI: unterminated stage variable in {uri:?}").into());
        };
        let name = &rest[start + MARK.len()..start + end];
        if !variables.iter().any(|(k, v)| &**k == name && !v.is_empty()) {
            return Err(format!("invalid function URI: stage variable {name:?} of {uri:?} is not set").into());
        }
        rest = &rest[start + end + 1..];
    }
    Ok(substitute_stage_variables(uri, variables).into())
}
