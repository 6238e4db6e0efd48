//! REST APIs' non-proxy integrations: `HTTP`, `AWS` (Lambda) and `MOCK`, with the integration
//! request and the integration response between the method and the backend (docs/pipeline.md,
//! "Non-proxy integrations"; the mapping rules are `crate::pipeline::mapping`'s).
//!
//! ```text
//! method request -> passthrough check (415) -> content handling -> requestParameters
//!   -> request template (or passthrough) + $context.requestOverride
//!   -> backend (HTTP upstream, Lambda function, MOCK's statusCode)
//!   -> integration response by selectionPattern -> its method response (or 500)
//!   -> content handling -> responseParameters -> response template by Accept
//!   + $context.responseOverride -> method response
//! ```

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Response, StatusCode, Uri};
use serde_json::Value;

use super::http_proxy::{substitute_stage_variables, UpstreamClient};
use super::lambda_proxy::{function_name, resolve};
use crate::invoke::{Call, Invoker, LambdaCall, RenderCall, Reply};
use crate::templates::RenderError;
use crate::lambda::event::{json_string_into, template_view, EventSource, TemplateView};
use crate::pipeline::body::{full, PipelineBody};
use crate::pipeline::mapping::{
    convert_request, convert_response, mock_status, text_header, value_text, IntegrationAnswer,
    Mapped, MethodRequest, RequestBody, RequestParameters, Responses, Template, Templates,
};
use crate::pipeline::responses::ErrorType;
use crate::spec::{
    BackendSpec, ContentHandling, IntegrationResponseSpec, MethodResponseSpec, PassthroughBehavior,
    Settings,
};

/// How long a template may take on the Python side before the request is answered 500 (the
/// engine bounds its own work; this bounds a Python side that stopped taking calls).
const RENDER_TIMEOUT: Duration = Duration::from_secs(10);

/// A compiled non-proxy integration.
#[derive(Debug)]
pub struct NonProxy {
    backend: Backend,
    parameters: RequestParameters,
    templates: Templates,
    passthrough: PassthroughBehavior,
    content_handling: Option<ContentHandling>,
    responses: Responses,
    /// `REST API {id} {METHOD} {path}`, for the operator's log lines.
    name: Box<str>,
}

/// What a non-proxy integration calls (REST APIs' and WebSocket APIs',
/// `crate::websocket::integration`).
#[derive(Debug)]
pub(crate) enum Backend {
    Http {
        /// The URI with the stage's variables filled in; `{name}` markers filled per request.
        uri: Box<str>,
        method: Option<Method>,
        timeout: Duration,
        user_agent: HeaderValue,
        api_id: HeaderValue,
    },
    Lambda {
        uri: Result<Box<str>, Box<str>>,
        function: Arc<str>,
        concurrency: usize,
        timeout: Duration,
    },
    Mock,
}

/// The parts of a non-proxy integration's spec.
pub struct NonProxySpec<'s> {
    pub backend: &'s BackendSpec,
    pub request_parameters: &'s [(String, String)],
    pub request_templates: &'s [(String, String)],
    pub passthrough: PassthroughBehavior,
    pub content_handling: Option<ContentHandling>,
    pub responses: &'s [IntegrationResponseSpec],
    pub method_responses: &'s [MethodResponseSpec],
}

impl NonProxy {
    pub fn compile(
        spec: NonProxySpec<'_>,
        route_key: &str,
        api_id: &str,
        variables: &[(Box<str>, Box<str>)],
        settings: &Settings,
    ) -> Result<NonProxy, String> {
        Ok(NonProxy {
            backend: Backend::compile(spec.backend, api_id, variables, settings)?,
            parameters: RequestParameters::compile(spec.request_parameters)?,
            templates: Templates::compile(spec.request_templates)
                .map_err(|e| format!("request template {e}"))?,
            passthrough: spec.passthrough,
            content_handling: spec.content_handling,
            responses: Responses::compile(spec.responses, spec.method_responses)?,
            name: format!("REST API {api_id} {route_key}").into(),
        })
    }

    /// The templates the Python side renders (holding VTL).
    pub fn template_sources(&self) -> impl Iterator<Item = &str> {
        self.templates.sources().chain(self.responses.sources())
    }
}

impl Backend {
    pub(crate) fn compile(
        backend: &BackendSpec,
        api_id: &str,
        variables: &[(Box<str>, Box<str>)],
        settings: &Settings,
    ) -> Result<Backend, String> {
        Ok(match backend {
            BackendSpec::Http {
                uri,
                method,
                timeout_ms,
            } => {
                let lower = uri.to_ascii_lowercase();
                if !lower.starts_with("http://") && !lower.starts_with("https://") {
                    return Err(format!("HTTP uri must be an absolute http(s) URL: {uri:?}"));
                }
                let method = match method.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    None | Some("ANY") | Some("") => None,
                    Some(m) => Some(Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?),
                };
                Backend::Http {
                    uri: substitute_stage_variables(uri, variables).into(),
                    method,
                    timeout: Duration::from_millis((*timeout_ms).max(50)),
                    user_agent: HeaderValue::from_str(&format!("AmazonAPIGateway_{api_id}"))
                        .map_err(|e| e.to_string())?,
                    api_id: HeaderValue::from_str(api_id).map_err(|e| e.to_string())?,
                }
            }
            BackendSpec::Lambda { uri, timeout_ms } => {
                let uri = resolve(uri, variables);
                let function: Arc<str> =
                    uri.as_deref().map(function_name).unwrap_or_default().into();
                Backend::Lambda {
                    concurrency: settings.concurrency_of(&function),
                    function,
                    uri,
                    timeout: Duration::from_millis((*timeout_ms).max(1)),
                }
            }
            BackendSpec::Mock => Backend::Mock,
        })
    }

    pub(crate) fn is_lambda(&self) -> bool {
        matches!(self, Backend::Lambda { .. })
    }
}

/// What serving one request needs from the pipeline.
pub struct Exchange<'a> {
    pub parts: &'a http::request::Parts,
    /// The method request's body, read whole.
    pub body: Bytes,
    /// The request as the REST event sees it: `$context` and `$input.params()` come from it.
    pub source: &'a EventSource<'a>,
    pub client: &'a UpstreamClient,
    pub invoker: &'a Invoker,
    pub region: &'a str,
    pub account_id: &'a str,
    /// The Lambda invocation's id (`context.aws_request_id`).
    pub invocation_id: String,
    /// The answer's body limit (`payloadLimitBytes`).
    pub payload_limit: u64,
}

/// What a template saw of a request, built once and only when something reads it.
struct Views<'a> {
    source: &'a EventSource<'a>,
    view: OnceLock<TemplateView>,
    context: OnceLock<Value>,
}

impl Views<'_> {
    fn view(&self) -> &TemplateView {
        self.view.get_or_init(|| template_view(self.source))
    }

    fn context(&self) -> &Value {
        self.context
            .get_or_init(|| serde_json::from_str(&self.view().context).unwrap_or(Value::Null))
    }

    /// A `TemplateInput` (see `portico/templates`): `extra_context` holds JSON members appended
    /// to `$context` (`"requestOverride":{...}`).
    fn input(&self, kind: &str, body: &str, extra_context: Option<&str>) -> Vec<u8> {
        let view = self.view();
        let mut out =
            String::with_capacity(view.params.len() + view.context.len() + body.len() + 256);
        out.push_str("{\"kind\":");
        json_string_into(&mut out, kind);
        out.push_str(",\"body\":");
        json_string_into(&mut out, body);
        out.push_str(",\"params\":");
        out.push_str(&view.params);
        out.push_str(",\"context\":");
        match extra_context {
            Some(extra) if view.context.ends_with('}') => {
                out.push_str(&view.context[..view.context.len() - 1]);
                out.push(',');
                out.push_str(extra);
                out.push('}');
            }
            _ => out.push_str(&view.context),
        }
        out.push_str(",\"stage_variables\":{");
        for (i, (k, v)) in self.source.stage_variables.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string_into(&mut out, k);
            out.push(':');
            json_string_into(&mut out, v);
        }
        out.push_str("}}");
        out.into_bytes()
    }
}

/// A template's output and what it overrode (`$context.requestOverride` /
/// `$context.responseOverride`, as a JSON object).
pub(crate) struct Rendered {
    pub output: String,
    pub overrides: Option<Value>,
}

/// What a backend answered.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What selects the integration response: the status, a Lambda error's `errorMessage`, or
    /// None for a successful Lambda call (the default response).
    pub selection: Option<String>,
}

pub(crate) type Failed = (ErrorType, String);

/// What calling a backend needs besides the mapped request.
pub(crate) struct BackendCall<'a> {
    pub client: &'a UpstreamClient,
    pub invoker: &'a Invoker,
    /// The method an `HTTP` backend is called with when the integration's is `ANY`.
    pub method: &'a Method,
    /// The request's Content-Type (sent on with a body that has none mapped).
    pub content_type: Option<&'a str>,
    pub trace_id: Option<HeaderValue>,
    pub region: &'a str,
    pub account_id: &'a str,
    pub invocation_id: &'a str,
    pub payload_limit: u64,
    /// The integration, for the operator's log lines.
    pub name: &'a str,
}

/// AWS's 500 for a configuration that does not work for this request, logged for the operator
/// as API Gateway's execution log words it.
pub(crate) fn configuration_error(name: &str, why: &str) -> Failed {
    (
        ErrorType::ApiConfigurationError,
        format!("{name}: Execution failed due to configuration error: {why}"),
    )
}

impl NonProxy {
    /// Serve one request: the method response, or the gateway response to answer with and why.
    pub async fn serve(&self, x: Exchange<'_>) -> Result<Response<PipelineBody>, Failed> {
        let headers = &x.parts.headers;
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let views = Views {
            source: x.source,
            view: OnceLock::new(),
            context: OnceLock::new(),
        };

        // integration request: the passthrough matrix, content handling, parameters, template.
        let chosen = self.templates.for_request(content_type, self.passthrough);
        if chosen == RequestBody::Unsupported {
            return Err((
                ErrorType::UnsupportedMediaType,
                format!(
                    "{}: no request template for {content_type:?} and passthroughBehavior {:?}",
                    self.name, self.passthrough
                ),
            ));
        }
        let payload = convert_request(
            x.body.clone(),
            content_type,
            x.source.binary_media_types,
            self.content_handling,
        )
        .map_err(|why| self.configuration_error(&why))?;
        let context = self.parameters.needs_context().then(|| views.context());
        let mut mapped = self.parameters.apply(&MethodRequest {
            headers,
            raw_query: x.parts.uri.query().unwrap_or(""),
            path_params: x.source.path_params,
            stage_variables: x.source.stage_variables,
            body: &x.body,
            context,
        });
        let (request_body, request_overrides) = match chosen {
            RequestBody::Transform(content_type, template) if !payload.binary => {
                let body = String::from_utf8_lossy(&payload.bytes);
                let rendered = render(x.invoker, template, || views.input("request", &body, None))
                    .await
                    .map_err(|why| self.template_error("request", content_type, &why))?;
                (Bytes::from(rendered.output), rendered.overrides)
            }
            _ => (payload.bytes, None),
        };
        if let Some(overrides) = &request_overrides {
            apply_request_overrides(&mut mapped, overrides);
        }
        if let Some(name) = mapped.reserved_header() {
            return Err(self.configuration_error(&format!("{name} header already present")));
        }

        // integration
        let trace_id = x
            .source
            .headers
            .get("x-amzn-trace-id")
            .cloned()
            .or_else(|| text_header(x.source.trace_id));
        let call = BackendCall {
            client: x.client,
            invoker: x.invoker,
            method: &x.parts.method,
            content_type,
            trace_id,
            region: x.region,
            account_id: x.account_id,
            invocation_id: &x.invocation_id,
            payload_limit: x.payload_limit,
            name: &self.name,
        };
        let answer = self.backend.call(&call, &mapped, request_body).await?;

        // integration response: selection, its method response, content handling, parameters,
        // template.
        let Some(mapping) = self.responses.select(answer.selection.as_deref()) else {
            return Err(self.configuration_error(&format!(
                "No match for output mapping and no default output mapping configured. Endpoint Response Status Code: {}",
                answer.selection.as_deref().unwrap_or(answer.status.as_str())
            )));
        };
        if !mapping.declared {
            return Err(self.configuration_error(&format!(
                "Output mapping refers to an invalid method response: {}",
                mapping.status.as_u16()
            )));
        }
        let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
        let answer_type = answer
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let payload = convert_response(
            answer.body.clone(),
            answer_type,
            accept,
            x.source.binary_media_types,
            mapping.content_handling,
        )
        .map_err(|why| self.configuration_error(&why))?;
        let mut out_headers: Vec<(HeaderName, HeaderValue)> =
            mapping.headers_of(&IntegrationAnswer {
                headers: &answer.headers,
                body: &answer.body,
                stage_variables: x.source.stage_variables,
                context: mapping.needs_context().then(|| views.context()),
            });
        let mut status = mapping.status;
        let mut content_type_out = None;
        let body = match mapping.templates.for_response(accept) {
            Some((template_type, template)) if !payload.binary => {
                let body = String::from_utf8_lossy(&payload.bytes);
                let mut extra_context = request_override_member(request_overrides.as_ref());
                if self.backend.is_lambda() {
                    // `$context.awsEndpointRequestId`: the Lambda invocation's request id.
                    extra_context.push_str(",\"awsEndpointRequestId\":");
                    json_string_into(&mut extra_context, &x.invocation_id);
                }
                let rendered = render(x.invoker, template, || {
                    views.input("response", &body, Some(&extra_context))
                })
                .await
                    .map_err(|why| {
                        self.template_error("response", template_type.to_str().unwrap_or(""), &why)
                    })?;
                if let Some(overrides) = &rendered.overrides {
                    apply_response_overrides(&mut status, &mut out_headers, overrides);
                }
                content_type_out = Some(template_type.clone());
                Bytes::from(rendered.output)
            }
            _ => payload.bytes,
        };

        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        let map = response.headers_mut();
        for (name, value) in out_headers {
            map.append(name, value);
        }
        if !map.contains_key(CONTENT_TYPE) {
            map.insert(
                CONTENT_TYPE,
                content_type_out.unwrap_or_else(|| HeaderValue::from_static("application/json")),
            );
        }
        Ok(response)
    }

    fn configuration_error(&self, why: &str) -> Failed {
        configuration_error(&self.name, why)
    }

    /// AWS's 500 for a template that failed, naming the API, the method and the template.
    fn template_error(&self, which: &str, content_type: &str, why: &str) -> Failed {
        (
            ErrorType::ApiConfigurationError,
            format!(
                "{}: Execution failed due to configuration error: the {which} template for {content_type:?} failed: {why}",
                self.name
            ),
        )
    }
}

/// A template's output: static text here, VTL by the core's engine when it compiled the
/// template, else (or when its render defers) by the Python side.
pub(crate) async fn render(
    invoker: &Invoker,
    template: &Template,
    input: impl FnOnce() -> Vec<u8>,
) -> Result<Rendered, String> {
    let (source, input) = match template {
        Template::Static(text) => {
            return Ok(Rendered {
                output: text.to_string(),
                overrides: None,
            })
        }
        Template::Vtl(source) => (source.clone(), input()),
        // The core's engine renders it here, on this thread; a render it hands back (see
        // `crate::templates`) goes to the Python engine with the same input.
        Template::Compiled(program, source) => {
            let input = input();
            let text = std::str::from_utf8(&input).unwrap_or("");
            match program.render_inline(text, crate::templates::INLINE_RENDER_TIME) {
                Ok(rendered) => {
                    let overrides = match serde_json::from_str::<Value>(&rendered.overrides) {
                        Ok(Value::Object(map)) if !map.is_empty() => Some(Value::Object(map)),
                        _ => None,
                    };
                    return Ok(Rendered {
                        output: rendered.output,
                        overrides,
                    });
                }
                Err(RenderError::Failed(why)) => return Err(why),
                Err(RenderError::Defer(_)) => (source.clone(), input),
            }
        }
    };
    let reply = invoker.call(Call::Render(RenderCall { source, input }));
    match tokio::time::timeout(RENDER_TIMEOUT, reply).await {
        Err(_) => Err(format!(
            "not rendered within {} s",
            RENDER_TIMEOUT.as_secs()
        )),
        Ok(Err(_)) => Err("the Python side stopped".into()),
        Ok(Ok(Reply::Rendered(Ok(rendered)))) => {
            let overrides = match serde_json::from_slice::<Value>(&rendered.overrides) {
                Ok(Value::Object(map)) if !map.is_empty() => Some(Value::Object(map)),
                Ok(_) => None,
                Err(e) => return Err(format!("its overrides are not JSON: {e}")),
            };
            Ok(Rendered {
                output: rendered.output,
                overrides,
            })
        }
        Ok(Ok(Reply::Rendered(Err(why)))) => Err(why),
        Ok(Ok(_)) => Err("unexpected reply".into()),
    }
}

impl Backend {
    /// Call the backend with the mapped request and its body (a MOCK's is its request
    /// template's output, holding its `statusCode`).
    pub(crate) async fn call(
        &self,
        x: &BackendCall<'_>,
        mapped: &Mapped,
        body: Bytes,
    ) -> Result<Answer, Failed> {
        match self {
            Backend::Mock => {
                let text = String::from_utf8_lossy(&body);
                let status = mock_status(&text)
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .ok_or_else(|| {
                        configuration_error(
                            x.name,
                            "Unable to parse statusCode. It should be an integer that is defined in the request template.",
                        )
                    })?;
                Ok(Answer {
                    status,
                    headers: HeaderMap::new(),
                    body: Bytes::new(),
                    selection: Some(status.as_str().to_owned()),
                })
            }
            Backend::Http { .. } => self.call_http(x, mapped, body).await,
            Backend::Lambda { .. } => self.call_lambda(x, body).await,
        }
    }

    async fn call_http(
        &self,
        x: &BackendCall<'_>,
        mapped: &Mapped,
        body: Bytes,
    ) -> Result<Answer, Failed> {
        let content_type = x.content_type;
        let Backend::Http {
            uri,
            method,
            timeout,
            user_agent,
            api_id,
        } = self
        else {
            unreachable!("an HTTP backend");
        };
        let url = build_url(uri, mapped);
        let uri = Uri::try_from(url.as_str()).map_err(|e| {
            configuration_error(x.name, &format!("Invalid endpoint address {url:?}: {e}"))
        })?;
        let method = method.clone().unwrap_or_else(|| x.method.clone());
        let mut headers = HeaderMap::with_capacity(mapped.headers.len() + 6);
        for (name, value) in &mapped.headers {
            if let Some(value) = text_header(value) {
                headers.append(name.clone(), value);
            }
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, user_agent.clone());
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        }
        if !headers.contains_key(CONTENT_TYPE) && !body.is_empty() {
            let value = content_type
                .and_then(text_header)
                .unwrap_or(HeaderValue::from_static("application/json"));
            headers.insert(CONTENT_TYPE, value);
        }
        if let Some(trace) = x.trace_id.clone() {
            headers.insert("x-amzn-trace-id", trace);
        }
        headers.insert("x-amzn-apigateway-api-id", api_id.clone());
        let mut request = Request::new(full(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let limit = usize::try_from(x.payload_limit).unwrap_or(usize::MAX);
        let (parts, body) = x.client.exchange(request, *timeout, limit).await?;
        Ok(Answer {
            selection: Some(parts.status.as_str().to_owned()),
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    async fn call_lambda(&self, x: &BackendCall<'_>, event: Bytes) -> Result<Answer, Failed> {
        let Backend::Lambda {
            uri,
            function,
            concurrency,
            timeout,
        } = self
        else {
            unreachable!("a Lambda backend");
        };
        let uri = uri
            .clone()
            .map_err(|why| (ErrorType::FunctionError, why.to_string()))?;
        // Lambda's Invoke takes JSON; an empty payload is `{}`.
        let event = if event.iter().all(u8::is_ascii_whitespace) {
            b"{}".to_vec()
        } else {
            if serde_json::from_slice::<serde::de::IgnoredAny>(&event).is_err() {
                return Err(configuration_error(
                    x.name,
                    "Lambda could not parse the request body into json",
                ));
            }
            event.to_vec()
        };
        let call = LambdaCall {
            invocation_id: x.invocation_id.to_owned(),
            uri,
            event,
            timeout_ms: timeout.as_millis() as u64,
            region: x.region.into(),
            account_id: x.account_id.into(),
        };
        let reply = x
            .invoker
            .call_function(call, function, *concurrency)
            .map_err(|t| {
                (
                    ErrorType::IntegrationFailure,
                    format!(
                        "function {function} throttled: {} calls in flight already",
                        t.limit
                    ),
                )
            })?;
        let json = HeaderValue::from_static("application/json");
        match tokio::time::timeout(*timeout, reply).await {
            Err(_) => Err((
                ErrorType::IntegrationTimeout,
                format!("function timed out after {} ms", timeout.as_millis()),
            )),
            Ok(Err(_)) => Err((
                ErrorType::IntegrationFailure,
                "the Python side stopped".into(),
            )),
            Ok(Ok(Reply::Lambda(Ok(result)))) => Ok(Answer {
                status: StatusCode::OK,
                headers: HeaderMap::from_iter([(CONTENT_TYPE, json)]),
                body: result.into(),
                selection: None,
            }),
            Ok(Ok(Reply::Lambda(Err(failure)))) => match failure.error_payload {
                // The function raised: Lambda answered 200 with its error, which selects.
                Some(payload) => Ok(Answer {
                    status: StatusCode::OK,
                    headers: HeaderMap::from_iter([(CONTENT_TYPE, json)]),
                    selection: Some(failure.error_message.unwrap_or_default()),
                    body: payload.into(),
                }),
                None => Err((failure.error, failure.detail)),
            },
            Ok(Ok(_)) => Err((ErrorType::IntegrationFailure, "unexpected reply".into())),
        }
    }
}

/// `$context.requestOverride` as a member of the response template's `$context`.
fn request_override_member(overrides: Option<&Value>) -> String {
    let value = overrides
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    format!("\"requestOverride\":{value}")
}

/// The (name, value) pairs of an override group; a list gives its name several values.
fn texts(value: Option<&Value>) -> Vec<(String, String)> {
    let Some(Value::Object(map)) = value else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let values: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        out.extend(
            values
                .into_iter()
                .filter_map(|v| value_text(Some(v)).map(|t| (name.clone(), t))),
        );
    }
    out
}

/// A request template's `$context.requestOverride.{header,querystring,path}.NAME`: each
/// replaces the parameter the mapping gave (or adds it), after the mapping.
fn apply_request_overrides(mapped: &mut Mapped, overrides: &Value) {
    let mut replaced: Vec<String> = Vec::new();
    for (name, value) in texts(overrides.get("header")) {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if !replaced.contains(&name) {
            mapped.headers.retain(|(n, _)| *n != header);
            replaced.push(name);
        }
        mapped.headers.push((header, value));
    }
    replaced.clear();
    for (name, value) in texts(overrides.get("querystring")) {
        if !replaced.contains(&name) {
            mapped.query.retain(|(n, _)| *n != name);
            replaced.push(name.clone());
        }
        mapped.query.push((name, value));
    }
    for (name, value) in texts(overrides.get("path")) {
        mapped.path.retain(|(n, _)| *n != name);
        mapped.path.push((name, value));
    }
}

/// A response template's `$context.responseOverride.status` (an integer status; anything else is
/// ignored, as AWS ignores it) and `.header.NAME` (replacing or adding the header).
fn apply_response_overrides(
    status: &mut StatusCode,
    headers: &mut Vec<(HeaderName, HeaderValue)>,
    overrides: &Value,
) {
    if let Some(code) = overrides.get("status").and_then(Value::as_u64) {
        if let Some(code) = u16::try_from(code).ok().filter(|c| (100..=599).contains(c)) {
            *status = StatusCode::from_u16(code).unwrap_or(*status);
        }
    }
    for (name, value) in texts(overrides.get("header")) {
        if let (Ok(name), Some(value)) =
            (HeaderName::from_bytes(name.as_bytes()), text_header(&value))
        {
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value));
        }
    }
}

/// Characters a URL's path or query value keeps as they are.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode(text: &str, keep: impl Fn(u8) -> bool, out: &mut String) {
    for &b in text.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(b"0123456789ABCDEF"[(b >> 4) as usize] as char);
            out.push(b"0123456789ABCDEF"[(b & 15) as usize] as char);
        }
    }
}

/// `name=value` of a query string, both encoded.
pub fn query_pair(name: &str, value: &str, out: &mut String) {
    percent_encode(name, is_unreserved, out);
    out.push('=');
    percent_encode(value, is_unreserved, out);
}

/// The backend URL: `{name}` / `{name+}` filled from the mapped path parameters (as given: a
/// method path parameter is already encoded as the client sent it; other text is encoded), the
/// mapped query string after the URI's own.
fn build_url(uri: &str, mapped: &Mapped) -> String {
    let mut out = String::with_capacity(uri.len() + 64);
    let mut rest = uri;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let name = rest[open + 1..open + close].trim_end_matches('+');
        if let Some((_, value)) = mapped.path.iter().rev().find(|(n, _)| n == name) {
            percent_encode(
                value,
                |b| is_unreserved(b) || b"%/:@!$&'()*+,;=".contains(&b),
                &mut out,
            );
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    if !mapped.query.is_empty() {
        out.push(if out.contains('?') { '&' } else { '?' });
        for (i, (name, value)) in mapped.query.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            query_pair(name, value, &mut out);
        }
    }
    out
}

/// `$context` of a request, for mappings of `context.NAME` (REST `HTTP_PROXY`'s).
pub fn context_of(source: &EventSource<'_>) -> Value {
    serde_json::from_str(&template_view(source).context).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_urls_take_mapped_path_and_query_parameters() {
        let mapped = Mapped {
            headers: vec![],
            query: vec![("q".into(), "a b&c".into()), ("n".into(), "1".into())],
            path: vec![("id".into(), "7".into()), ("rest".into(), "x y/z".into())],
        };
        assert_eq!(
            build_url("http://up:9/items/{id}/{rest+}?fixed=1", &mapped),
            "http://up:9/items/7/x%20y/z?fixed=1&q=a%20b%26c&n=1"
        );
        assert_eq!(
            build_url("http://up:9/{missing}", &Mapped::default()),
            "http://up:9/"
        );
    }

    #[test]
    fn overrides_replace_the_mapping() {
        let mut mapped = Mapped {
            headers: vec![(HeaderName::from_static("x-a"), "mapped".into())],
            query: vec![("q".into(), "mapped".into())],
            path: vec![],
        };
        let overrides = serde_json::json!({"header": {"X-A": "over", "X-B": 2}, "querystring": {"q": "over"}, "path": {"id": "9"}});
        apply_request_overrides(&mut mapped, &overrides);
        assert_eq!(
            mapped.headers,
            vec![
                (HeaderName::from_static("x-a"), "over".to_owned()),
                (HeaderName::from_static("x-b"), "2".to_owned())
            ]
        );
        assert_eq!(mapped.query, vec![("q".to_owned(), "over".to_owned())]);
        assert_eq!(mapped.path, vec![("id".to_owned(), "9".to_owned())]);
        let mut listed = Mapped::default();
        apply_request_overrides(
            &mut listed,
            &serde_json::json!({"header": {"X-L": ["1", "2"]}}),
        );
        assert_eq!(listed.headers.len(), 2);
        let mut status = StatusCode::OK;
        let mut headers = vec![];
        apply_response_overrides(
            &mut status,
            &mut headers,
            &serde_json::json!({"status": 418, "header": {"x-c": "v"}}),
        );
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(headers.len(), 1);
        // A status that is not an integer of 100-599 is ignored.
        for bad in [
            serde_json::json!({"status": "400"}),
            serde_json::json!({"status": 99}),
            serde_json::json!({"status": 600}),
        ] {
            let mut status = StatusCode::OK;
            apply_response_overrides(&mut status, &mut vec![], &bad);
            assert_eq!(status, StatusCode::OK);
        }
    }
}
