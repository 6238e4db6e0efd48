//! `AWS_PROXY`: the request becomes a Lambda proxy event (payload 1.0 or 2.0, `crate::lambda`),
//! the Python side runs the handler (`crate::invoke`), and its result becomes the response.

use std::sync::Arc;
use std::time::Duration;

use http::Response;
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use crate::invoke::{Invoker, LambdaCall, LambdaStream, Reply, Throttled};
use crate::lambda::{self, EventSource, LambdaResponse, PayloadFormat};
use crate::pipeline::body::{full, ChannelBody, PipelineBody};
use crate::pipeline::response_of;
use crate::pipeline::responses::ErrorType;
use crate::spec::{ApiKind, PayloadVersion, Settings, TransferMode};

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
    /// `STREAM`: a generator handler's answer is passed on as it comes (`invoke_streaming`).
    transfer_mode: TransferMode,
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
            // WebSocket APIs build their own events (`crate::websocket::events`).
            (ApiKind::Rest | ApiKind::Websocket, _) => PayloadFormat::RestV1,
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
            transfer_mode: TransferMode::Buffered,
        }
    }

    /// With the integration's `responseTransferMode` (REST APIs).
    pub fn with_transfer_mode(mut self, mode: TransferMode) -> LambdaProxy {
        self.transfer_mode = mode;
        self
    }

    pub fn transfer_mode(&self) -> TransferMode {
        self.transfer_mode
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
        let call = self.call(source, region, account_id, invocation_id)?;
        let reply = invoker
            .call_function(call, &self.function, self.concurrency)
            .map_err(|t| self.throttled(t))?;
        match self.reply_within_timeout(reply).await? {
            Reply::Lambda(Ok(result)) => self.buffered(&result, accept, source),
            Reply::Lambda(Err(failure)) => Err((failure.error, failure.detail)),
            _ => Err((ErrorType::IntegrationFailure, "unexpected reply".into())),
        }
    }

    /// Invoke a streaming integration's function (`responseTransferMode: STREAM`): a handler that
    /// streams answers with its metadata, then its body as it produces it (read with
    /// `lambda::parse_stream_prelude`); any other handler's result is mapped as `invoke` maps it.
    /// The metadata must come within the integration's timeout, and the whole body too
    /// (`streaming::bounded`).
    pub async fn invoke_streaming(
        &self,
        invoker: &Invoker,
        source: &EventSource<'_>,
        accept: Option<&str>,
        region: &str,
        account_id: &str,
        invocation_id: String,
    ) -> Result<Response<PipelineBody>, (ErrorType, String)> {
        let started = tokio::time::Instant::now();
        let call = self.call(source, region, account_id, invocation_id)?;
        let reply = invoker
            .call_function_streaming(call, &self.function, self.concurrency)
            .map_err(|t| self.throttled(t))?;
        match self.reply_within_timeout(reply).await? {
            Reply::LambdaStream(LambdaStream { metadata, body }) => {
                // A malformed head drops the body's receiver: the handler is stopped.
                let (status, headers) =
                    lambda::parse_stream_prelude(&metadata).map_err(|m| (ErrorType::MalformedResponse, m.0))?;
                let body = super::streaming::bounded(ChannelBody::new(body).boxed(), started, self.timeout);
                Ok(response_of(status, headers, body))
            }
            Reply::Lambda(Ok(result)) => {
                let r = self.buffered(&result, accept, source)?;
                Ok(response_of(r.status, r.headers, full(r.body)))
            }
            Reply::Lambda(Err(failure)) => Err((failure.error, failure.detail)),
            _ => Err((ErrorType::IntegrationFailure, "unexpected reply".into())),
        }
    }

    /// Invoke the function with an event built elsewhere (WebSocket APIs' events,
    /// `crate::websocket::events`); the handler's result as JSON.
    pub async fn invoke_event(
        &self,
        invoker: &Invoker,
        event: Vec<u8>,
        region: &str,
        account_id: &str,
        invocation_id: String,
    ) -> Result<Vec<u8>, (ErrorType, String)> {
        let uri = match &self.uri {
            Ok(uri) => uri.clone(),
            Err(why) => return Err((ErrorType::FunctionError, why.to_string())),
        };
        let call = LambdaCall {
            invocation_id,
            uri,
            event,
            timeout_ms: self.timeout.as_millis() as u64,
            region: region.into(),
            account_id: account_id.into(),
        };
        let reply = invoker
            .call_function(call, &self.function, self.concurrency)
            .map_err(|t| self.throttled(t))?;
        match self.reply_within_timeout(reply).await? {
            Reply::Lambda(Ok(result)) => Ok(result),
            Reply::Lambda(Err(failure)) => Err((failure.error, failure.detail)),
            _ => Err((ErrorType::IntegrationFailure, "unexpected reply".into())),
        }
    }

    /// The call of the function with the event built from `source`.
    fn call(
        &self,
        source: &EventSource<'_>,
        region: &str,
        account_id: &str,
        invocation_id: String,
    ) -> Result<LambdaCall, (ErrorType, String)> {
        let uri = match &self.uri {
            Ok(uri) => uri.clone(),
            Err(why) => return Err((ErrorType::FunctionError, why.to_string())),
        };
        Ok(LambdaCall {
            invocation_id,
            uri,
            event: lambda::build_event(source),
            timeout_ms: self.timeout.as_millis() as u64,
            region: region.into(),
            account_id: account_id.into(),
        })
    }

    /// Lambda throttles a call past the function's concurrency (TooManyRequestsException), which
    /// API Gateway answers 500 (INTEGRATION_FAILURE).
    fn throttled(&self, t: Throttled) -> (ErrorType, String) {
        (
            ErrorType::IntegrationFailure,
            format!("function {} throttled: {} calls in flight already", self.function, t.limit),
        )
    }

    /// The Python side's reply, within the integration's timeout.
    async fn reply_within_timeout(&self, reply: oneshot::Receiver<Reply>) -> Result<Reply, (ErrorType, String)> {
        match tokio::time::timeout(self.timeout, reply).await {
            Err(_) => Err((
                ErrorType::IntegrationTimeout,
                format!("function timed out after {} ms", self.timeout.as_millis()),
            )),
            Ok(Err(_)) => Err((ErrorType::IntegrationFailure, "the Python side stopped".into())),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    /// A handler's whole result (JSON) as the response it maps to.
    fn buffered(
        &self,
        result: &[u8],
        accept: Option<&str>,
        source: &EventSource<'_>,
    ) -> Result<LambdaResponse, (ErrorType, String)> {
        if let Some(why) = lambda::response::payload_too_large(result) {
            return Err((ErrorType::FunctionError, why));
        }
        lambda::parse_response(self.format, result, accept, source.binary_media_types)
            .map_err(|m| (ErrorType::MalformedResponse, m.0))
    }
}

/// The function a URI names: a bare name (`name[:qualifier]`), a Lambda function ARN
/// (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`) or API Gateway's invocation URI
/// wrapping one (`arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/ARN/invocations`, or
/// for streaming `.../2021-11-15/functions/ARN/response-streaming-invocations`).
/// Concurrency is counted per function, whatever the version or alias (as Lambda reserves it).
pub fn function_name(uri: &str) -> &str {
    const FUNCTIONS: &str = "/functions/";
    let mut arn = uri.trim();
    if let Some(start) = arn.find(FUNCTIONS) {
        arn = &arn[start + FUNCTIONS.len()..];
        arn = arn
            .strip_suffix("/response-streaming-invocations")
            .or_else(|| arn.strip_suffix("/invocations"))
            .unwrap_or(arn);
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
            (
                "arn:aws:apigateway:us-east-1:lambda:path/2021-11-15/functions/arn:aws:lambda:us-east-1:123456789012:function:echo/response-streaming-invocations",
                "echo",
            ),
        ] {
            assert_eq!(function_name(uri), name, "{uri}");
        }
    }
}
