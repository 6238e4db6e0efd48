//! `AWS_PROXY`: the request becomes a Lambda proxy event (payload 1.0 or 2.0, `crate::lambda`),
//! the Python side runs the handler (`crate::invoke`), and its result becomes the response.

use std::sync::Arc;
use std::time::Duration;

use crate::invoke::{Invoker, LambdaCall, Reply};
use crate::lambda::{self, EventSource, LambdaResponse, PayloadFormat};
use crate::pipeline::responses::ErrorType;
use crate::spec::{ApiKind, PayloadVersion, Settings};

use super::http_proxy::substitute_stage_variables;

#[derive(Debug)]
pub struct LambdaProxy {
    /// The function URI with the stage's variables filled in, or why it cannot be.
    uri: Result<Box<str>, Box<str>>,
    /// The function's name, whose calls in flight are counted against `concurrency`.
    function: Arc<str>,
    concurrency: usize,
    pub format: PayloadFormat,
    pub timeout: Duration,
    /// HTTP APIs' parameter mapping of the event's request and of the answer.
    pub mapping: super::parameter_mapping::Mapping,
}

impl LambdaProxy {
    pub fn compile(
        uri: &str,
        kind: ApiKind,
        version: PayloadVersion,
        timeout_ms: u64,
        variables: &[(Box<str>, Box<str>)],
        settings: &Settings,
    ) -> LambdaProxy {
        let format = match (kind, version) {
            (ApiKind::Rest, _) => PayloadFormat::RestV1,
            (ApiKind::Http, PayloadVersion::V1) => PayloadFormat::HttpV1,
            (ApiKind::Http, PayloadVersion::V2) => PayloadFormat::HttpV2,
        };
        let uri = resolve(uri, variables);
        let function: Arc<str> = uri.as_deref().map(function_name).unwrap_or_default().into();
        LambdaProxy {
            concurrency: settings.concurrency_of(&function),
            function,
            uri,
            format,
            timeout: Duration::from_millis(timeout_ms.max(1)),
            mapping: Default::default(),
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
        let call = LambdaCall {
            invocation_id,
            uri,
            event,
            timeout_ms: self.timeout.as_millis() as u64,
            region: region.into(),
            account_id: account_id.into(),
        };
        // Lambda throttles a call past the function's concurrency (TooManyRequestsException),
        // which API Gateway answers 500 (INTEGRATION_FAILURE).
        let reply = invoker.call_function(call, &self.function, self.concurrency).map_err(|t| {
            (
                ErrorType::IntegrationFailure,
                format!("function {} throttled: {} calls in flight already", self.function, t.limit),
            )
        })?;
        let result = match tokio::time::timeout(self.timeout, reply).await {
            Err(_) => {
                return Err((
                    ErrorType::IntegrationTimeout,
                    format!("function timed out after {} ms", self.timeout.as_millis()),
                ))
            }
            Ok(Err(_)) => return Err((ErrorType::IntegrationFailure, "the Python side stopped".into())),
            Ok(Ok(Reply::Lambda(Ok(result)))) => result,
            Ok(Ok(Reply::Lambda(Err(failure)))) => return Err((failure.error, failure.detail)),
            Ok(Ok(_)) => return Err((ErrorType::IntegrationFailure, "unexpected reply".into())),
        };
        if let Some(why) = lambda::response::payload_too_large(&result) {
            return Err((ErrorType::FunctionError, why));
        }
        lambda::parse_response(self.format, &result, accept, source.binary_media_types)
            .map_err(|m| (ErrorType::MalformedResponse, m.0))
    }
}

/// The function a URI names: a bare name (`name[:qualifier]`), a Lambda function ARN
/// (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`) or API Gateway's invocation URI
/// wrapping one (`arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/ARN/invocations`).
/// Concurrency is counted per function, whatever the version or alias (as Lambda reserves it).
pub fn function_name(uri: &str) -> &str {
    const FUNCTIONS: &str = "/functions/";
    let mut arn = uri.trim();
    if let Some(start) = arn.find(FUNCTIONS) {
        arn = &arn[start + FUNCTIONS.len()..];
        arn = arn.strip_suffix("/invocations").unwrap_or(arn);
    }
    let name = match arn.find(":function:") {
        Some(at) => &arn[at + ":function:".len()..],
        None => arn,
    };
    name.split(':').next().unwrap_or(name)
}

/// `uri` with `${stageVariables.NAME}` filled in; a variable the stage lacks is an error, reported
/// per request (the route answers as a failed function, as on AWS).
pub(crate) fn resolve(uri: &str, variables: &[(Box<str>, Box<str>)]) -> Result<Box<str>, Box<str>> {
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

#[cfg(test)]
mod tests {
    use super::function_name;

    #[test]
    fn the_function_of_each_uri_form() {
        for (uri, name) in [
            ("echo", "echo"),
            ("echo:prod", "echo"),
            ("arn:aws:lambda:us-east-1:123456789012:function:echo", "echo"),
            ("arn:aws:lambda:us-east-1:123456789012:function:echo:$LATEST", "echo"),
            (
                "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:echo:3/invocations",
                "echo",
            ),
        ] {
            assert_eq!(function_name(uri), name, "{uri}");
        }
    }
}
