//! What a WebSocket route's integration answers ("Setting up WebSocket API integrations",
//! "Integration requests/responses" and "Data transformations for WebSocket APIs" in the API
//! Gateway developer guide; docs/websocket.md).
//!
//! - `AWS_PROXY`: the Lambda proxy event (`crate::websocket::events`); its `statusCode`, headers
//!   and `body` are the answer.
//! - `HTTP_PROXY`: the message is the request body sent to the integration's URI; the upstream's
//!   status, headers and body are the answer.
//! - `HTTP`, `AWS` (a Lambda function) and AWS's `MOCK` map both ways:
//!
//! ```text
//! requestParameters (route.request.*, context.*, stageVariables.*, 'static')
//!   -> request template chosen by the integration's templateSelectionExpression (else
//!      passthroughBehavior) -> backend (`crate::integrations::non_proxy::Backend`)
//!   -> integration response chosen by the answer (HTTP, MOCK: its status; AWS: a function
//!      error's errorMessage) by key ($default, /REGEX/, or the exact value)
//!   -> response template chosen by that response's templateSelectionExpression
//! ```
//!
//! `contentHandlingStrategy` ("Binary media types for WebSocket APIs"): messages are text, so an
//! integration's `CONVERT_TO_BINARY` takes the message as base64 and sends the backend its bytes
//! (no request template applies to them); an integration response's `CONVERT_TO_TEXT` sends the
//! backend's bytes back as base64 text (which its template may map), `CONVERT_TO_BINARY` takes
//! the backend's answer as base64 and sends its bytes back in a binary frame.
//!
//! The rules are the core's: parameters and passthrough (`crate::pipeline::mapping`), the
//! backends and template rendering (`crate::integrations::non_proxy`), selection expressions
//! (`crate::websocket::selection`). What differs from REST APIs is only what selects.

use bytes::Bytes;
use http::{HeaderMap, Method};
use regex::Regex;
use serde_json::Value;

use crate::gateway::RouteRuntime;
use crate::integrations::http_proxy::UpstreamClient;
use crate::integrations::non_proxy::{configuration_error, render, Backend, BackendCall};
use crate::integrations::Integration;
use crate::invoke::Invoker;
use crate::lambda::event::{json_string_into, parse_query};
use crate::pipeline::mapping::{
    decode_base64, encode_base64, passes_through, selection_regex, MethodRequest, RequestParameters, Template,
};
use crate::spec::{BackendSpec, ContentHandling, PassthroughBehavior, Settings, WebsocketIntegrationSpec};
use crate::websocket::selection::{AnswerView, TemplateSelection};

/// The key of the template chosen when the selection expression selects no template of its own
/// (and what an integration without an expression selects).
const DEFAULT_KEY: &str = "$default";

/// What a route's integration answered.
#[derive(Debug, Default)]
pub struct Answer {
    /// Its status (None: a Lambda proxy answer without a usable `statusCode`).
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    /// What a two-way route sends back (None: nothing).
    pub body: Option<Reply>,
}

/// What a two-way route sends back: a text frame, or a binary one (an integration response's
/// `CONVERT_TO_BINARY`).
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Text(String),
    Binary(Bytes),
}

impl Reply {
    pub fn into_bytes(self) -> Bytes {
        match self {
            Reply::Text(text) => Bytes::from(text),
            Reply::Binary(bytes) => bytes,
        }
    }
}

impl Answer {
    /// A Lambda proxy result: `{"statusCode", "headers", "body"}` (a body that is not a string is
    /// sent as its JSON text).
    pub fn of_lambda(result: &[u8]) -> Answer {
        let Ok(value) = serde_json::from_slice::<Value>(result) else {
            return Answer::default();
        };
        let Some(object) = value.as_object() else {
            return Answer {
                body: (!value.is_null()).then(|| Reply::Text(value.to_string())),
                ..Answer::default()
            };
        };
        let status = match object.get("statusCode") {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        let headers = object
            .get("headers")
            .and_then(|h| h.as_object())
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        let body = match object.get("body") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Reply::Text(s.clone())),
            Some(other) => Some(Reply::Text(other.to_string())),
        };
        Answer { status, headers, body }
    }

    fn of_backend(status: http::StatusCode, headers: &HeaderMap, body: Option<Reply>) -> Answer {
        Answer {
            status: Some(status.as_u16()),
            headers: headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body,
        }
    }
}

/// One invocation of a route's integration.
pub struct Invocation<'a> {
    pub invoker: &'a Invoker,
    pub client: &'a UpstreamClient,
    pub region: &'a str,
    pub account_id: &'a str,
    /// The Lambda invocation's id (`context.aws_request_id`).
    pub invocation_id: String,
    /// The Lambda proxy event: an `AWS_PROXY` function's input, and its `requestContext` is
    /// what templates and mappings read as `$context`.
    pub event: Vec<u8>,
    /// `$connect`'s handshake headers and query string (a message has neither).
    pub headers: &'a HeaderMap,
    pub raw_query: &'a str,
    /// The message (empty on `$connect` and `$disconnect`).
    pub body: &'a str,
    pub stage_variables: &'a [(Box<str>, Box<str>)],
}

/// Invoke a route's integration; the error (for the log) when it failed, which the client sees
/// as AWS's `Internal server error`.
pub async fn invoke(route: &RouteRuntime, call: Invocation<'_>) -> Result<Answer, String> {
    match &route.integration {
        Integration::LambdaProxy(lambda) => lambda
            .invoke_event(call.invoker, call.event, call.region, call.account_id, call.invocation_id)
            .await
            .map(|result| Answer::of_lambda(&result))
            .map_err(|(error, why)| format!("{}: {why}", error.name())),
        Integration::Mock(mock) => Ok(Answer {
            status: Some(mock.status.as_u16()),
            headers: Vec::new(),
            body: Some(Reply::Text(String::from_utf8_lossy(&mock.body).into_owned())),
        }),
        // Boxed: a connection's task awaits `$disconnect` inline, and this future's state (the
        // request, its templates' output, the backend call) would otherwise be part of every idle
        // connection's memory (~1 KB; `python benches/websocket.py`).
        Integration::Websocket(integration) => Box::pin(integration.invoke(&call)).await,
        Integration::Unavailable(why) => Err(why.to_string()),
        Integration::Unset => Err("the route has no integration".into()),
        _ => Err("this integration type is not served on WebSocket APIs".into()),
    }
}

/// Templates by selection key, in the declared order.
#[derive(Debug, Default)]
struct KeyedTemplates(Vec<(Box<str>, Template)>);

impl KeyedTemplates {
    fn compile(pairs: &[(String, String)]) -> KeyedTemplates {
        KeyedTemplates(pairs.iter().map(|(k, t)| (k.as_str().into(), Template::new(t))).collect())
    }

    /// The template `key` selects, else the `$default` one.
    fn find(&self, key: Option<&str>) -> Option<&Template> {
        let by = |wanted: &str| self.0.iter().find(|(k, _)| &**k == wanted).map(|(_, t)| t);
        key.and_then(by).or_else(|| by(DEFAULT_KEY))
    }

    fn sources(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|(_, t)| match t {
            Template::Vtl(s) | Template::Compiled(_, s) => Some(&**s),
            Template::Static(_) => None,
        })
    }
}

#[derive(Debug)]
enum ResponseKey {
    Default,
    Pattern(Regex),
    Exact(Box<str>),
}

#[derive(Debug)]
struct IntegrationResponse {
    key: ResponseKey,
    templates: KeyedTemplates,
    selection: Option<TemplateSelection>,
    content_handling: Option<ContentHandling>,
}

/// A WebSocket route's `HTTP_PROXY`, `HTTP`, `AWS` or `MOCK` integration, compiled.
#[derive(Debug)]
pub struct WebsocketIntegration {
    backend: Backend,
    proxy: bool,
    /// The method an `HTTP` backend whose `integrationMethod` is `ANY` is called with.
    method: Method,
    parameters: RequestParameters,
    templates: KeyedTemplates,
    selection: Option<TemplateSelection>,
    passthrough: PassthroughBehavior,
    content_handling: Option<ContentHandling>,
    responses: Vec<IntegrationResponse>,
    /// `WebSocket API {id} {routeKey}`, for the operator's log lines.
    name: Box<str>,
}

/// A mapping source as REST APIs spell it: WebSocket APIs' `route.request.*` are the method
/// request's (`method.request.*`), read by the same rules.
fn rest_source(expression: &str) -> String {
    match expression.trim().strip_prefix("route.request.") {
        Some(rest) => format!("method.request.{rest}"),
        None => expression.to_owned(),
    }
}

impl WebsocketIntegration {
    pub fn compile(
        spec: &WebsocketIntegrationSpec,
        route_key: &str,
        api_id: &str,
        variables: &[(Box<str>, Box<str>)],
        settings: &Settings,
    ) -> Result<WebsocketIntegration, String> {
        let parameters: Vec<(String, String)> =
            spec.request_parameters.iter().map(|(target, source)| (target.clone(), rest_source(source))).collect();
        let selection = spec
            .template_selection
            .as_deref()
            .map(TemplateSelection::request)
            .transpose()
            .map_err(|e| format!("templateSelectionExpression {e}"))?;
        let mut responses = Vec::with_capacity(spec.responses.len());
        for response in &spec.responses {
            let at = format!("integration response {:?}", response.key);
            let key = match response.key.as_str() {
                DEFAULT_KEY => ResponseKey::Default,
                k if k.len() >= 2 && k.starts_with('/') && k.ends_with('/') => {
                    ResponseKey::Pattern(selection_regex(&k[1..k.len() - 1]).map_err(|e| format!("{at}: {e}"))?)
                }
                k => ResponseKey::Exact(k.into()),
            };
            let selection = response
                .template_selection
                .as_deref()
                .map(TemplateSelection::response)
                .transpose()
                .map_err(|e| format!("{at}: templateSelectionExpression {e}"))?;
            responses.push(IntegrationResponse {
                key,
                templates: KeyedTemplates::compile(&response.templates),
                selection,
                content_handling: response.content_handling,
            });
        }
        let method = match &spec.backend {
            BackendSpec::Http { method: Some(m), .. } if !m.eq_ignore_ascii_case("ANY") && !m.is_empty() => {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string())?
            }
            _ => Method::POST,
        };
        Ok(WebsocketIntegration {
            backend: Backend::compile(&spec.backend, api_id, variables, settings)?,
            proxy: spec.proxy,
            method,
            parameters: RequestParameters::compile(&parameters)?,
            templates: KeyedTemplates::compile(&spec.request_templates),
            selection,
            passthrough: spec.passthrough,
            content_handling: spec.content_handling,
            responses,
            name: format!("WebSocket API {api_id} {route_key}").into(),
        })
    }

    /// The templates the Python side renders (holding VTL).
    pub fn template_sources(&self) -> impl Iterator<Item = &str> {
        self.templates.sources().chain(self.responses.iter().flat_map(|r| r.templates.sources()))
    }

    /// The integration response for `value` (a status, a Lambda error's `errorMessage`; None: a
    /// successful Lambda call): an exact key, else the first pattern that matches the whole
    /// value, else `$default`.
    fn response_for(&self, value: Option<&str>) -> Option<&IntegrationResponse> {
        let exact = value.and_then(|v| self.responses.iter().find(|r| matches!(&r.key, ResponseKey::Exact(k) if **k == *v)));
        let pattern = || {
            value.and_then(|v| self.responses.iter().find(|r| matches!(&r.key, ResponseKey::Pattern(re) if re.is_match(v))))
        };
        exact
            .or_else(pattern)
            .or_else(|| self.responses.iter().find(|r| matches!(r.key, ResponseKey::Default)))
    }

    async fn invoke(&self, call: &Invocation<'_>) -> Result<Answer, String> {
        let failed = |(_, why): (crate::pipeline::responses::ErrorType, String)| why;
        let event: Value = serde_json::from_slice(&call.event).unwrap_or(Value::Null);
        let context = event.get("requestContext").cloned().unwrap_or(Value::Null);
        let mapped = self.parameters.apply(&MethodRequest {
            headers: call.headers,
            raw_query: call.raw_query,
            path_params: &[],
            stage_variables: call.stage_variables,
            body: call.body.as_bytes(),
            context: Some(&context),
        });
        if let Some(name) = mapped.reserved_header() {
            return Err(failed(configuration_error(&self.name, &format!("{name} header already present"))));
        }
        let input = |kind: &str, body: &str, extra: Option<&str>| template_input(kind, body, call, &context, extra);

        // integration request: the message's bytes (CONVERT_TO_BINARY), the message as it is
        // (HTTP_PROXY), or its template's output.
        let body = if self.content_handling == Some(ContentHandling::ConvertToBinary) {
            Bytes::from(
                decode_base64(call.body.as_bytes()).map_err(|why| format!("{}: the message: {why}", self.name))?,
            )
        } else if self.proxy {
            Bytes::copy_from_slice(call.body.as_bytes())
        } else {
            let key = match &self.selection {
                Some(selection) => selection.select(call.body, None),
                None => Some(DEFAULT_KEY.to_owned()),
            };
            match self.templates.find(key.as_deref()) {
                Some(template) => {
                    let rendered = render(call.invoker, template, || input("request", call.body, None))
                        .await
                        .map_err(|why| format!("{}: the request template for {key:?} failed: {why}", self.name))?;
                    Bytes::from(rendered.output)
                }
                None if passes_through(self.passthrough, !self.templates.0.is_empty()) => {
                    Bytes::copy_from_slice(call.body.as_bytes())
                }
                None => {
                    return Err(format!(
                        "{}: no request template for {key:?} and passthroughBehavior {:?}",
                        self.name, self.passthrough
                    ))
                }
            }
        };
        let trace_id = None;
        let backend_call = BackendCall {
            client: call.client,
            invoker: call.invoker,
            method: &self.method,
            content_type: None,
            trace_id,
            region: call.region,
            account_id: call.account_id,
            invocation_id: &call.invocation_id,
            payload_limit: crate::websocket::MAX_MESSAGE_BYTES as u64,
            name: &self.name,
        };
        let answer = self.backend.call(&backend_call, &mapped, body).await.map_err(failed)?;
        if self.proxy {
            let text = String::from_utf8_lossy(&answer.body).into_owned();
            return Ok(Answer::of_backend(answer.status, &answer.headers, Some(Reply::Text(text))));
        }

        // integration response: chosen by the answer, then its template.
        let Some(response) = self.response_for(answer.selection.as_deref()) else {
            // AWS requires one of non-proxy integrations; without one nothing is sent back.
            eprintln!(
                "portico: {}: no integration response for {:?}: nothing is sent back",
                self.name,
                answer.selection.as_deref().unwrap_or("$default")
            );
            return Ok(Answer::of_backend(answer.status, &answer.headers, None));
        };
        let text = match response.content_handling {
            Some(ContentHandling::ConvertToBinary) => {
                let bytes = decode_base64(&answer.body)
                    .map_err(|why| format!("{}: the integration's answer: {why}", self.name))?;
                return Ok(Answer::of_backend(answer.status, &answer.headers, Some(Reply::Binary(bytes.into()))));
            }
            Some(ContentHandling::ConvertToText) => String::from_utf8(encode_base64(&answer.body).to_vec())
                .expect("base64 is ASCII"),
            None => String::from_utf8_lossy(&answer.body).into_owned(),
        };
        let view = AnswerView {
            status: answer.status,
            headers: &answer.headers,
        };
        let key = match &response.selection {
            Some(selection) => selection.select(call.body, Some(&view)),
            None => Some(DEFAULT_KEY.to_owned()),
        };
        let out = match response.templates.find(key.as_deref()) {
            None => text,
            Some(template) => {
                let mut extra = String::new();
                if self.backend.is_lambda() {
                    // `$context.awsEndpointRequestId`: the Lambda invocation's request id.
                    extra.push_str("\"awsEndpointRequestId\":");
                    json_string_into(&mut extra, &call.invocation_id);
                }
                let extra = (!extra.is_empty()).then_some(extra.as_str());
                render(call.invoker, template, || input("response", &text, extra))
                    .await
                    .map_err(|why| format!("{}: the response template for {key:?} failed: {why}", self.name))?
                    .output
            }
        };
        Ok(Answer::of_backend(answer.status, &answer.headers, Some(Reply::Text(out))))
    }
}

/// A template's input (`TemplateInput` of `portico/templates`, as REST APIs' templates get it):
/// `$input.params()` of the handshake (a message has no parameters), `$context` the event's
/// `requestContext` (with `extra` members), the stage's variables.
fn template_input(kind: &str, body: &str, call: &Invocation<'_>, context: &Value, extra: Option<&str>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    for (name, value) in call.headers {
        header.insert(name.as_str().to_owned(), Value::from(String::from_utf8_lossy(value.as_bytes()).into_owned()));
    }
    let querystring: serde_json::Map<String, Value> =
        parse_query(call.raw_query).into_iter().map(|(k, v)| (k.into_owned(), Value::from(v.into_owned()))).collect();
    let params = serde_json::json!({ "path": {}, "querystring": querystring, "header": header });
    let mut context_text = context.to_string();
    if let (Some(extra), true) = (extra, context_text.ends_with('}')) {
        context_text.pop();
        if context_text.len() > 1 {
            context_text.push(',');
        }
        context_text.push_str(extra);
        context_text.push('}');
    }
    let variables: serde_json::Map<String, Value> =
        call.stage_variables.iter().map(|(k, v)| (k.to_string(), Value::from(&**v))).collect();
    let mut out = String::with_capacity(body.len() + context_text.len() + 256);
    out.push_str("{\"kind\":");
    json_string_into(&mut out, kind);
    out.push_str(",\"body\":");
    json_string_into(&mut out, body);
    out.push_str(",\"params\":");
    out.push_str(&params.to_string());
    out.push_str(",\"context\":");
    out.push_str(&context_text);
    out.push_str(",\"stage_variables\":");
    out.push_str(&Value::Object(variables).to_string());
    out.push('}');
    out.into_bytes()
}
