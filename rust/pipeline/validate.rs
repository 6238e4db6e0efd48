//! The validate phase: REST APIs' request validators ("Request validation for REST APIs in API
//! Gateway" in the developer guide), after authorization and the usage plan, before the stage
//! cache and the integration, for every integration type (proxy ones included).
//!
//! * `validateRequestParameters`: every `method.request.{header,querystring,path}.NAME` the
//!   method sets to `true` must be present and not blank; else 400
//!   `{"message": "Missing required request parameters: [a, b]"}` (BAD_REQUEST_PARAMETERS), the
//!   names in the order of their full keys (headers, then path, then query string), as AWS lists
//!   them. Parameters are checked before the body.
//! * `validateRequestBody`: the method's `requestModels` entry for the request's media type
//!   (`Content-Type` without its parameters; `application/json` when absent), else its
//!   `$default` entry; without one the body is not validated ("If no matching content type is
//!   found, request validation is not performed"). The body is read whole (within the payload
//!   limit), parsed as JSON (an empty body is validated as `{}`) and checked against the model, a
//!   JSON Schema draft 4 compiled once per deployment; a body that is not JSON or does not match
//!   is 400 `{"message": "Invalid request body"}` (BAD_REQUEST_BODY). What was read is handed on to
//!   the integration.
//!
//! Both refusals carry `$context.error.validationErrorString` (gateway-response templates and
//! access logs): for a body, the schema violations worded as API Gateway's validator words them
//! (`[instance value (\"bird\") not found in enum (possible values: [\"dog\",\"cat\",\"fish\"])]`),
//! escaped to sit inside a JSON string; for parameters, the message itself.
//!
//! WebSocket APIs ("Request validation for WebSocket APIs in API Gateway") validate the messages
//! of a route with a `modelSelectionExpression`: its value (`$request.body.version`, a literal...)
//! picks one of the route's `requestModels`, else the `$default` one; with neither, or when the
//! message does not match, the message is refused with the `Invalid request body` frame
//! (`RouteValidation::check_message`, called by `crate::pipeline::websocket`).
//!
//! Models `$ref` each other by `https://apigateway.amazonaws.com/restapis/{apiId}/models/{name}`:
//! every model of the deployment is registered under that URI before any is compiled, and
//! nothing is ever fetched.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, CONTENT_TYPE};
use hyper::body::Body as _;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, ValidationError, Validator};
use serde_json::Value;

use super::body::{self, full, PipelineBody};
use super::{body_failure, declared_length, header_str, Exchange, Failure, Pipeline};
use crate::gateway::{Decision, Snapshot};
use crate::lambda::event::parse_query;
use crate::pipeline::responses::ErrorType;
use crate::spec::{ModelSpec, ParameterLocation, RouteValidationSpec};
use crate::websocket::selection::TemplateSelection;

/// Where AWS addresses a REST API's model (what a model's `$ref` names).
pub fn model_uri(api_id: &str, name: &str) -> String {
    format!("https://apigateway.amazonaws.com/restapis/{api_id}/models/{name}")
}

/// The most schema violations a `validationErrorString` lists (a body of many bad items would
/// otherwise make it as large as the body).
const MAX_VIOLATIONS: usize = 32;

/// A model compiled (or why it cannot be).
pub type Compiled = Result<Arc<Validator>, Arc<str>>;

/// The models of one deployment of one REST API, each compiled at most once, the first time a
/// route names it. Shared by every stage and snapshot that serves the same models (see `of`).
pub struct ModelSet {
    api_id: Box<str>,
    /// By name: the schema parsed, or why its text is not JSON.
    schemas: HashMap<Box<str>, Result<Value, Arc<str>>>,
    compiled: Mutex<HashMap<Box<str>, Compiled>>,
}

impl std::fmt::Debug for ModelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSet")
            .field("api_id", &self.api_id)
            .field("models", &self.schemas.len())
            .finish_non_exhaustive()
    }
}

/// Model sets in use, by their API and content: a reload (or another stage) that serves the
/// same models reuses the compiled ones. Weak: a set lives as long as a snapshot uses it.
type ModelSets = Mutex<HashMap<String, Weak<ModelSet>>>;

fn model_sets() -> &'static ModelSets {
    static SETS: OnceLock<ModelSets> = OnceLock::new();
    SETS.get_or_init(Default::default)
}

/// Never fetches: a `$ref` that names no model of the API does not compile.
struct NoRetrieval;

impl jsonschema::Retrieve for NoRetrieval {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("{uri} is not a model of this REST API (references are never fetched)").into())
    }
}

impl ModelSet {
    /// The compiled models of `specs` (one deployment of API `api_id`): the set already in use
    /// for the same models, or a new one.
    pub fn of(api_id: &str, specs: &[ModelSpec]) -> Arc<ModelSet> {
        let mut key = String::with_capacity(
            api_id.len()
                + specs
                    .iter()
                    .map(|m| m.name.len() + m.schema.len() + 2)
                    .sum::<usize>(),
        );
        key.push_str(api_id);
        for m in specs {
            key.push('\0');
            key.push_str(&m.name);
            key.push('\0');
            key.push_str(&m.schema);
        }
        let mut sets = model_sets().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = sets.get(&key).and_then(Weak::upgrade) {
            return set;
        }
        let schemas = specs
            .iter()
            .map(|m| {
                let parsed = serde_json::from_str::<Value>(&m.schema).map_err(|e| {
                    Arc::<str>::from(format!("model {}: its schema is not JSON: {e}", m.name))
                });
                (m.name.as_str().into(), parsed)
            })
            .collect();
        let set = Arc::new(ModelSet {
            api_id: api_id.into(),
            schemas,
            compiled: Mutex::new(HashMap::new()),
        });
        sets.retain(|_, weak| weak.strong_count() > 0);
        sets.insert(key, Arc::downgrade(&set));
        set
    }

    /// The model `name` compiled, with every other model of the set resolvable by its URI.
    pub fn validator(&self, name: &str) -> Compiled {
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = compiled.get(name) {
            return found.clone();
        }
        let result = self.compile(name);
        compiled.insert(name.into(), result.clone());
        result
    }

    fn compile(&self, name: &str) -> Compiled {
        let schema = match self.schemas.get(name) {
            None => return Err(format!("no model named {name:?}").into()),
            Some(Err(why)) => return Err(why.clone()),
            Some(Ok(schema)) => schema,
        };
        let mut options = jsonschema::options()
            .with_draft(Draft::Draft4)
            .with_retriever(NoRetrieval)
            // A relative `$ref` ("Pet") names a model of the same API.
            .with_base_uri(model_uri(&self.api_id, name));
        // The models it reaches through `$ref`s, and only those: another model's broken
        // reference is no concern of this one.
        for other in self.reachable(name) {
            if let Some(Ok(value)) = self.schemas.get(other.as_str()) {
                // Every model is draft 4, whatever its `$schema` says (API Gateway's only one).
                let resource = Draft::Draft4.create_resource(value.clone());
                options = options.with_resource(model_uri(&self.api_id, &other), resource);
            }
        }
        options
            .build(schema)
            .map(Arc::new)
            .map_err(|e| format!("model {name}: {e}").into())
    }
}

impl ModelSet {
    /// The names of the models `name` refers to, directly or through others (itself excluded
    /// unless a reference comes back to it).
    fn reachable(&self, name: &str) -> Vec<String> {
        let prefix = model_uri(&self.api_id, "");
        let mut seen: Vec<String> = Vec::new();
        let mut queue = vec![name.to_owned()];
        while let Some(current) = queue.pop() {
            let Some(Ok(schema)) = self.schemas.get(current.as_str()) else {
                continue;
            };
            let mut refs = Vec::new();
            collect_refs(schema, &mut refs);
            for reference in refs {
                let target = reference.split('#').next().unwrap_or("");
                let model = match target.strip_prefix(&prefix) {
                    Some(model) => model,
                    None if !target.is_empty()
                        && !target.contains(':')
                        && !target.contains('/') =>
                    {
                        target
                    }
                    None => continue,
                };
                if !seen.iter().any(|s| s == model) {
                    seen.push(model.to_owned());
                    queue.push(model.to_owned());
                }
            }
        }
        seen
    }
}

fn collect_refs<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(reference)) => out.push(reference),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A parameter a method requires (`method.request.LOCATION.NAME: true`).
#[derive(Debug)]
struct Required {
    location: ParameterLocation,
    name: Box<str>,
    header: Option<HeaderName>,
}

/// The model a body of some media type is checked against.
#[derive(Debug)]
pub struct Model {
    pub name: Box<str>,
    pub compiled: Compiled,
}

/// How a route's requests are validated (its method's request validator).
#[derive(Debug, Default)]
pub struct RouteValidation {
    /// `validateRequestParameters`: the required parameters, in AWS's order.
    parameters: Vec<Required>,
    /// `validateRequestBody`: `requestModels` by media type (lower case), and `$default`'s.
    /// WebSocket APIs: by the values of `selection`, as written.
    body: Option<(Vec<(Box<str>, Model)>, Option<Model>)>,
    /// WebSocket APIs' `modelSelectionExpression` (None: messages are not validated).
    selection: Option<TemplateSelection>,
}

/// Why a WebSocket message was not let through.
#[derive(Debug, PartialEq, Eq)]
pub enum MessageRefusal {
    /// It does not match its model, is not JSON, or no model applies (`Invalid request body`).
    Invalid(Violations),
    /// Its model cannot be compiled (a configuration error: `Internal server error`).
    Configuration(String),
}

fn location_name(location: ParameterLocation) -> &'static str {
    match location {
        ParameterLocation::Header => "header",
        ParameterLocation::MultiValueHeader => "multivalueheader",
        ParameterLocation::Path => "path",
        ParameterLocation::QueryString => "querystring",
        ParameterLocation::MultiValueQueryString => "multivaluequerystring",
    }
}

/// A request's media type: its `Content-Type` without parameters, in lower case;
/// `application/json` when it sends none (as API Gateway assumes).
fn media_type(content_type: Option<&str>) -> String {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if media.is_empty() {
        "application/json".to_owned()
    } else {
        media.to_ascii_lowercase()
    }
}

impl RouteValidation {
    /// `spec` with its models looked up (and compiled) in `models`.
    pub fn compile(
        spec: &RouteValidationSpec,
        models: &ModelSet,
    ) -> Result<RouteValidation, String> {
        let mut parameters = Vec::with_capacity(spec.parameters.len());
        for p in &spec.parameters {
            let header = match p.location {
                ParameterLocation::Header | ParameterLocation::MultiValueHeader => Some(
                    HeaderName::from_bytes(p.name.as_bytes())
                        .map_err(|_| format!("parameters: {:?} is not a header name", p.name))?,
                ),
                _ => None,
            };
            parameters.push(Required {
                location: p.location,
                name: p.name.as_str().into(),
                header,
            });
        }
        // AWS lists the missing ones by their full keys, `method.request.LOCATION.NAME`.
        parameters.sort_by(|a, b| {
            (location_name(a.location), &*a.name).cmp(&(location_name(b.location), &*b.name))
        });
        parameters.dedup_by(|a, b| a.location == b.location && a.name == b.name);
        let selection = spec
            .model_selection
            .as_deref()
            .map(TemplateSelection::request)
            .transpose()
            .map_err(|e| format!("modelSelectionExpression: {e}"))?;
        // Media types compare in lower case; WebSocket selection keys as written.
        let key_of = |key: &str| -> Box<str> {
            if selection.is_some() {
                key.into()
            } else {
                key.trim().to_ascii_lowercase().into()
            }
        };
        let body = spec.body.as_ref().map(|by_type| {
            let mut typed = Vec::new();
            let mut default = None;
            for (content_type, name) in by_type {
                let model = Model {
                    name: name.as_str().into(),
                    compiled: models.validator(name),
                };
                if content_type == "$default" {
                    default = Some(model);
                } else {
                    typed.push((key_of(content_type), model));
                }
            }
            (typed, default)
        });
        Ok(RouteValidation {
            parameters,
            body,
            selection,
        })
    }

    /// WebSocket APIs: check `message` against the model the route's `modelSelectionExpression`
    /// selects, else its `$default` model. Ok when the route does not validate messages.
    pub fn check_message(&self, message: &str) -> Result<(), MessageRefusal> {
        let Some(selection) = &self.selection else {
            return Ok(());
        };
        let key = selection.select(message, None);
        let (typed, default) = match &self.body {
            Some((typed, default)) => (typed.as_slice(), default.as_ref()),
            None => (&[][..], None),
        };
        let model = key
            .as_deref()
            .and_then(|key| typed.iter().find(|(k, _)| **k == *key).map(|(_, m)| m))
            .or(default);
        let Some(model) = model else {
            let why = format!("[no model for {:?} and no $default model]", key.unwrap_or_default());
            return Err(MessageRefusal::Invalid(Violations(escape(&why))));
        };
        match &model.compiled {
            Ok(validator) => check_body(validator, message.as_bytes()).map_err(MessageRefusal::Invalid),
            Err(why) => Err(MessageRefusal::Configuration(why.to_string())),
        }
    }

    /// The names of the required parameters the request lacks (or sends blank), in AWS's order.
    pub fn missing<'r>(
        &'r self,
        headers: &HeaderMap,
        raw_query: &str,
        path_params: &[(&str, &str)],
    ) -> Vec<&'r str> {
        let blank = |v: &str| v.trim().is_empty();
        let mut query = None;
        let mut missing = Vec::new();
        for p in &self.parameters {
            let present = match p.location {
                ParameterLocation::Header | ParameterLocation::MultiValueHeader => {
                    let values =
                        headers.get_all(p.header.as_ref().expect("header parameters have a name"));
                    let mut values = values
                        .iter()
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                    if p.location == ParameterLocation::Header {
                        values.last().is_some_and(|v| !blank(&v))
                    } else {
                        values.any(|v| !blank(&v))
                    }
                }
                ParameterLocation::QueryString | ParameterLocation::MultiValueQueryString => {
                    let pairs = query.get_or_insert_with(|| parse_query(raw_query));
                    let mut values = pairs.iter().filter(|(k, _)| *k == *p.name).map(|(_, v)| v);
                    if p.location == ParameterLocation::QueryString {
                        values.last().is_some_and(|v| !blank(v))
                    } else {
                        values.any(|v| !blank(v))
                    }
                }
                ParameterLocation::Path => {
                    path_params.iter().any(|(k, v)| *k == &*p.name && !blank(v))
                }
            };
            if !present {
                missing.push(&*p.name);
            }
        }
        missing
    }

    /// The model a body of `content_type` is checked against; None: bodies are not validated.
    pub fn model_for(&self, content_type: Option<&str>) -> Option<&Model> {
        let (typed, default) = self.body.as_ref()?;
        let media = media_type(content_type);
        typed
            .iter()
            .find(|(t, _)| **t == *media)
            .map(|(_, m)| m)
            .or(default.as_ref())
    }

    pub fn validates_parameters(&self) -> bool {
        !self.parameters.is_empty()
    }
}

/// Why a body was refused: the `validationErrorString`.
#[derive(Debug, PartialEq, Eq)]
pub struct Violations(pub String);

/// Check `body` against `validator`: parsed as JSON, an empty body as `{}`.
pub fn check_body(validator: &Validator, body: &[u8]) -> Result<(), Violations> {
    let instance = if body.is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => value,
            Err(e) => {
                return Err(Violations(escape(&format!(
                    "[Invalid JSON in request body: {e}]"
                ))))
            }
        }
    };
    if validator.is_valid(&instance) {
        return Ok(());
    }
    Err(Violations(escape(&describe(
        validator.iter_errors(&instance),
    ))))
}

/// `text` as it sits inside a JSON string (quotes and control characters escaped), as API
/// Gateway hands `validationErrorString` to templates.
fn escape(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// The violations as API Gateway's validator words them: `[first, second]`. Missing required
/// properties of one object are one violation.
fn describe<'i>(errors: impl Iterator<Item = ValidationError<'i>>) -> String {
    let mut messages: Vec<String> = Vec::new();
    // (instance path, index into messages, the missing names so far)
    let mut required: Vec<(String, usize, Vec<String>)> = Vec::new();
    for error in errors {
        if messages.len() >= MAX_VIOLATIONS {
            break;
        }
        if let ValidationErrorKind::Required { property } = &error.kind {
            let path = error.instance_path.as_str().to_owned();
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            match required.iter_mut().find(|(p, _, _)| *p == path) {
                Some((_, _, names)) => names.push(name),
                None => {
                    required.push((path, messages.len(), vec![name]));
                    messages.push(String::new());
                }
            }
            continue;
        }
        messages.push(message(&error));
    }
    for (_, at, mut names) in required {
        names.sort();
        names.dedup();
        messages[at] = format!(
            "object has missing required properties ({})",
            json_list(&names)
        );
    }
    let mut out = String::from("[");
    out.push_str(&messages.join(", "));
    out.push(']');
    out
}

fn json_list(names: &[String]) -> String {
    Value::Array(names.iter().map(|n| Value::String(n.clone())).collect()).to_string()
}

/// An instance's type as API Gateway's validator names it (`integer` for integral numbers).
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A number as written (an integral `f64` without its `.0`).
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        Value::from(value).to_string()
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One violation, worded as API Gateway's validator words it.
fn message(error: &ValidationError<'_>) -> String {
    let instance = &*error.instance;
    let chars = || text_of(instance).chars().count();
    let mut out = String::new();
    match &error.kind {
        ValidationErrorKind::Type { kind } => {
            let mut allowed: Vec<String> = match kind {
                TypeKind::Single(t) => vec![t.to_string()],
                TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect(),
            };
            allowed.sort();
            let _ = write!(
                out,
                "instance type ({}) does not match any allowed primitive type (allowed: {})",
                type_name(instance),
                json_list(&allowed)
            );
        }
        ValidationErrorKind::Enum { options } => {
            let _ = write!(
                out,
                "instance value ({instance}) not found in enum (possible values: {options})"
            );
        }
        ValidationErrorKind::MinLength { limit } => {
            let _ = write!(
                out,
                "string \"{}\" is too short (length: {}, required minimum: {limit})",
                text_of(instance),
                chars()
            );
        }
        ValidationErrorKind::MaxLength { limit } => {
            let _ = write!(
                out,
                "string \"{}\" is too long (length: {}, maximum allowed: {limit})",
                text_of(instance),
                chars()
            );
        }
        ValidationErrorKind::Pattern { pattern } => {
            let _ = write!(
                out,
                "ECMA 262 regex \"{pattern}\" does not match input string \"{}\"",
                text_of(instance)
            );
        }
        ValidationErrorKind::Minimum { limit } => {
            let _ = write!(out, "numeric instance is lower than the required minimum (minimum: {limit}, found: {instance})");
        }
        ValidationErrorKind::Maximum { limit } => {
            let _ = write!(out, "numeric instance is greater than the required maximum (maximum: {limit}, found: {instance})");
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            let _ = write!(
                out,
                "numeric instance is not strictly greater than the required minimum {limit}"
            );
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            let _ = write!(
                out,
                "numeric instance is not strictly lower than the required maximum {limit}"
            );
        }
        ValidationErrorKind::MultipleOf { multiple_of } => {
            let _ = write!(
                out,
                "remainder of division is not zero ({instance} / {})",
                number(*multiple_of)
            );
        }
        ValidationErrorKind::MinItems { limit } => {
            let n = instance.as_array().map_or(0, Vec::len);
            let _ = write!(out, "array is too short: must have at least {limit} elements but instance has {n} elements");
        }
        ValidationErrorKind::MaxItems { limit } => {
            let n = instance.as_array().map_or(0, Vec::len);
            let _ = write!(out, "array is too long: must have at most {limit} elements but instance has {n} elements");
        }
        ValidationErrorKind::AdditionalItems { limit } => {
            let n = instance.as_array().map_or(0, Vec::len);
            let _ = write!(
                out,
                "schema only allows {limit} elements in array but instance has {n} elements"
            );
        }
        ValidationErrorKind::UniqueItems => {
            out.push_str("array must not contain duplicate elements")
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let mut names = unexpected.clone();
            names.sort();
            let _ = write!(
                out,
                "object instance has properties which are not allowed by the schema: {}",
                json_list(&names)
            );
        }
        ValidationErrorKind::MinProperties { limit } => {
            let n = instance.as_object().map_or(0, serde_json::Map::len);
            let _ = write!(
                out,
                "object has too few properties (found {n} but schema requires at least {limit})"
            );
        }
        ValidationErrorKind::MaxProperties { limit } => {
            let n = instance.as_object().map_or(0, serde_json::Map::len);
            let _ = write!(
                out,
                "object has too many properties (found {n} but schema requires at most {limit})"
            );
        }
        ValidationErrorKind::AnyOf { context } => {
            let _ = write!(
                out,
                "instance failed to match at least one required schema among {}",
                context.len()
            );
        }
        ValidationErrorKind::OneOfNotValid { context }
        | ValidationErrorKind::OneOfMultipleValid { context } => {
            let matched = context.iter().filter(|errors| errors.is_empty()).count();
            let _ = write!(
                out,
                "instance failed to match exactly one schema (matched {matched} out of {})",
                context.len()
            );
        }
        ValidationErrorKind::Not { .. } => {
            out.push_str("instance matched a schema which it should not have")
        }
        ValidationErrorKind::Format { format } => {
            let text = text_of(instance);
            let _ = match format.as_str() {
                "email" => write!(out, "string \"{text}\" is not a valid email address"),
                "hostname" => write!(out, "string \"{text}\" is not a valid hostname"),
                "ipv4" => write!(out, "string \"{text}\" is not a valid IPv4 address"),
                "ipv6" => write!(out, "string \"{text}\" is not a valid IPv6 address"),
                "uri" => write!(out, "string \"{text}\" is not a valid URI"),
                "regex" => write!(out, "string \"{text}\" is not a valid ECMA 262 regular expression"),
                "date-time" => write!(
                    out,
                    "string \"{text}\" is invalid against requested date format(s) [yyyy-MM-dd'T'HH:mm:ssZ, yyyy-MM-dd'T'HH:mm:ss.[0-9]{{1,12}}Z]"
                ),
                other => write!(out, "string \"{text}\" is invalid against format \"{other}\""),
            };
        }
        // Not draft 4's (or the validator's own trouble): its own words.
        _ => {
            let _ = write!(out, "{error}");
        }
    }
    out
}

/// The failure of a request whose required parameters are `missing`.
fn missing_parameters(missing: &[&str]) -> Failure {
    let message = format!(
        "Missing required request parameters: [{}]",
        missing.join(", ")
    );
    let mut failure =
        Failure::new(ErrorType::BadRequestParameters, message.clone()).saying(message.clone());
    failure.validation = Some(escape(&message));
    failure
}

impl Pipeline {
    /// Validate the routed request as its method's request validator says: `body` is read (and
    /// replaced by what was read) only when a model applies to it.
    pub(super) async fn validate(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        ex: &Exchange,
        d: &Decision<'_>,
        body: &mut PipelineBody,
    ) -> Result<(), Failure> {
        let Some(validation) = ex.route().and_then(|r| r.validation.as_ref()) else {
            return Ok(());
        };
        if validation.validates_parameters() {
            let params: smallvec::SmallVec<[(&str, &str); 4]> = d.params().collect();
            let missing =
                validation.missing(&parts.headers, parts.uri.query().unwrap_or(""), &params);
            if !missing.is_empty() {
                return Err(missing_parameters(&missing));
            }
        }
        let Some(model) = validation.model_for(header_str(&parts.headers, CONTENT_TYPE)) else {
            return Ok(());
        };
        let validator = match &model.compiled {
            Ok(v) => v,
            Err(why) => {
                eprintln!(
                    "portico: request {}: execution failed due to configuration error: {why}",
                    ex.request_id
                );
                return Err(Failure::new(
                    ErrorType::ApiConfigurationError,
                    why.to_string(),
                ));
            }
        };
        let settings = &snap.settings;
        let bytes = if body.is_end_stream() {
            Bytes::new()
        } else {
            if declared_length(&parts.headers).is_some_and(|n| n > settings.payload_limit) {
                return Err(Failure::new(
                    ErrorType::RequestTooLarge,
                    "declared Content-Length over the payload limit",
                ));
            }
            let taken = std::mem::replace(body, body::empty());
            let bytes = body::read_all(taken, settings.payload_limit)
                .await
                .map_err(body_failure)?;
            *body = full(bytes.clone());
            bytes
        };
        check_body(validator, &bytes).map_err(|Violations(violations)| {
            let mut failure = Failure::new(
                ErrorType::BadRequestBody,
                format!(
                    "request body does not match model {}: {violations}",
                    model.name
                ),
            );
            failure.validation = Some(violations);
            failure
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RequiredParameterSpec;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn models(api: &str, specs: &[(&str, Value)]) -> Arc<ModelSet> {
        let specs: Vec<ModelSpec> = specs
            .iter()
            .map(|(name, schema)| ModelSpec {
                name: (*name).to_owned(),
                schema: schema.to_string(),
            })
            .collect();
        ModelSet::of(api, &specs)
    }

    fn violations(set: &ModelSet, model: &str, body: &str) -> Option<String> {
        let validator = set.validator(model).expect("compiles");
        check_body(&validator, body.as_bytes()).err().map(|v| v.0)
    }

    fn pet() -> Value {
        json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 2, "pattern": "^[A-Z]"},
                "type": {"type": "string", "enum": ["dog", "cat", "fish"]},
                "price": {"type": "number", "minimum": 25, "maximum": 500},
                "tags": {"type": "array", "maxItems": 2, "uniqueItems": true, "items": {"type": "string"}}
            },
            "required": ["type", "name", "price"],
            "additionalProperties": false
        })
    }

    #[test]
    fn violations_are_worded_as_api_gateway_words_them() {
        let set = models("abc123", &[("Pet", pet())]);
        assert_eq!(
            violations(&set, "Pet", r#"{"name":"Molly","type":"dog","price":260}"#),
            None
        );
        assert_eq!(
            violations(&set, "Pet", r#"{"name":"Molly","type":"bird","price":260}"#).as_deref(),
            Some(
                r#"[instance value (\"bird\") not found in enum (possible values: [\"dog\",\"cat\",\"fish\"])]"#
            )
        );
        assert_eq!(
            violations(&set, "Pet", r#"{"name":"Molly","type":"dog","price":501}"#).as_deref(),
            Some("[numeric instance is greater than the required maximum (maximum: 500, found: 501)]")
        );
        assert_eq!(
            violations(&set, "Pet", r#"{"type":"dog"}"#).as_deref(),
            Some(r#"[object has missing required properties ([\"name\",\"price\"])]"#)
        );
        assert_eq!(
            violations(&set, "Pet", r#"{"name":7,"type":"dog","price":30}"#).as_deref(),
            Some(
                r#"[instance type (integer) does not match any allowed primitive type (allowed: [\"string\"])]"#
            )
        );
        let many = violations(
            &set,
            "Pet",
            r#"{"name":"m","type":"dog","price":1,"x":1,"tags":["a","a","b"]}"#,
        )
        .unwrap();
        for part in [
            r#"string \"m\" is too short (length: 1, required minimum: 2)"#,
            r#"ECMA 262 regex \"^[A-Z]\" does not match input string \"m\""#,
            "numeric instance is lower than the required minimum (minimum: 25, found: 1)",
            r#"object instance has properties which are not allowed by the schema: [\"x\"]"#,
            "array is too long: must have at most 2 elements but instance has 3 elements",
            "array must not contain duplicate elements",
        ] {
            assert!(many.contains(part), "{part} not in {many}");
        }
        assert!(many.starts_with('[') && many.ends_with(']'));
    }

    #[test]
    fn an_empty_body_is_an_empty_object_and_a_body_that_is_not_json_is_refused() {
        let set = models(
            "abc123",
            &[
                (
                    "Loose",
                    json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
                ),
                ("Pet", pet()),
            ],
        );
        assert_eq!(violations(&set, "Loose", ""), None);
        assert!(violations(&set, "Pet", "")
            .unwrap()
            .contains("missing required properties"));
        let not_json = violations(&set, "Loose", "{not json").unwrap();
        assert!(
            not_json.starts_with("[Invalid JSON in request body"),
            "{not_json}"
        );
        assert!(violations(&set, "Loose", "[1]")
            .unwrap()
            .contains("instance type (array)"));
    }

    #[test]
    fn models_reference_each_other_by_their_uri_and_nothing_is_fetched() {
        let set = models(
            "abc123",
            &[
                ("Pet", pet()),
                (
                    "Capped",
                    json!({"type": "number", "maximum": 10, "exclusiveMaximum": true}),
                ),
                (
                    "Order",
                    json!({
                        "type": "object",
                        "properties": {
                            "pet": {"$ref": "https://apigateway.amazonaws.com/restapis/abc123/models/Pet"},
                            "others": {"type": "array", "items": {"$ref": "Pet"}},
                            "cap": {"$ref": "Capped"}
                        },
                        "required": ["pet"]
                    }),
                ),
                (
                    "Elsewhere",
                    json!({"type": "object", "properties": {"a": {"$ref": "https://example.com/schema.json"}}}),
                ),
                (
                    "Broken",
                    json!({"type": "object", "properties": {"a": {"$ref": "NoSuchModel"}}}),
                ),
            ],
        );
        assert_eq!(
            violations(
                &set,
                "Order",
                r#"{"pet":{"name":"Rex","type":"dog","price":30}}"#
            ),
            None
        );
        assert!(violations(
            &set,
            "Order",
            r#"{"pet":{"name":"Rex","type":"cow","price":30}}"#
        )
        .unwrap()
        .contains("not found in enum"));
        assert!(violations(
            &set,
            "Order",
            r#"{"pet":{"name":"Rex","type":"dog","price":30},"others":[{}]}"#
        )
        .is_some());
        // A referenced model is draft 4 too: `exclusiveMaximum` is a boolean there.
        let pet = r#""pet":{"name":"Rex","type":"dog","price":30}"#;
        assert_eq!(
            violations(&set, "Order", &format!("{{{pet},\"cap\":9.5}}")),
            None
        );
        assert_eq!(
            violations(&set, "Order", &format!("{{{pet},\"cap\":10}}")).as_deref(),
            Some("[numeric instance is not strictly lower than the required maximum 10]")
        );
        for unresolvable in ["Elsewhere", "Broken"] {
            let why = set
                .validator(unresolvable)
                .expect_err("a reference to nothing does not compile");
            assert!(why.contains(unresolvable), "{why}");
        }
        assert!(set
            .validator("Nope")
            .unwrap_err()
            .contains("no model named"));
    }

    #[test]
    fn a_model_set_is_compiled_once_for_every_user_of_the_same_models() {
        let first = models("zz9", &[("Pet", pet())]);
        let again = models("zz9", &[("Pet", pet())]);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(Arc::ptr_eq(
            &first.validator("Pet").unwrap(),
            &again.validator("Pet").unwrap()
        ));
        let other_api = models("zz8", &[("Pet", pet())]);
        assert!(!Arc::ptr_eq(&first, &other_api));
        let changed = models(
            "zz9",
            &[("Pet", json!({"type": "object", "properties": {}}))],
        );
        assert!(!Arc::ptr_eq(&first, &changed));
    }

    fn route(
        parameters: &[(ParameterLocation, &str)],
        body: Option<&[(&str, &str)]>,
        set: &ModelSet,
    ) -> RouteValidation {
        let spec = RouteValidationSpec {
            parameters: parameters
                .iter()
                .map(|(location, name)| RequiredParameterSpec {
                    location: *location,
                    name: (*name).to_owned(),
                })
                .collect(),
            body: body.map(|b| {
                b.iter()
                    .map(|(t, m)| ((*t).to_owned(), (*m).to_owned()))
                    .collect::<BTreeMap<_, _>>()
            }),
            model_selection: None,
        };
        RouteValidation::compile(&spec, set).unwrap()
    }

    #[test]
    fn websocket_messages_are_checked_against_the_selected_model() {
        let set = models(
            "ws0001",
            &[
                ("V1", json!({"type": "object", "required": ["v1only"]})),
                ("Any", json!({"type": "object", "required": ["action"]})),
                ("Broken", json!({"$ref": "Missing"})),
            ],
        );
        let spec = |models: &[(&str, &str)]| RouteValidationSpec {
            parameters: Vec::new(),
            body: Some(models.iter().map(|(k, m)| ((*k).to_owned(), (*m).to_owned())).collect()),
            model_selection: Some("$request.body.version".to_owned()),
        };
        let route = RouteValidation::compile(&spec(&[("V1", "V1"), ("$default", "Any")]), &set).unwrap();
        // The key is compared as written (no lower-casing, unlike media types).
        assert_eq!(route.check_message(r#"{"version": "V1", "v1only": 1}"#), Ok(()));
        let Err(MessageRefusal::Invalid(Violations(why))) = route.check_message(r#"{"version": "V1"}"#) else {
            panic!("a V1 message without v1only passed")
        };
        assert!(why.contains("v1only"), "{why}");
        assert!(route.check_message(r#"{"version": "v1"}"#).is_err(), "v1 is not V1: $default's model applies");
        assert_eq!(route.check_message(r#"{"version": "v1", "action": "x"}"#), Ok(()));
        assert!(matches!(route.check_message("not json"), Err(MessageRefusal::Invalid(_))));

        // No model for the key and no $default: refused.
        let strict = RouteValidation::compile(&spec(&[("V1", "V1")]), &set).unwrap();
        assert!(matches!(strict.check_message(r#"{"version": "V2"}"#), Err(MessageRefusal::Invalid(_))));
        // A model that cannot compile is the configuration's fault, not the message's.
        let broken = RouteValidation::compile(&spec(&[("$default", "Broken")]), &set).unwrap();
        assert!(matches!(broken.check_message("{}"), Err(MessageRefusal::Configuration(_))));
        // Without a modelSelectionExpression nothing is checked.
        let unchecked = RouteValidation::compile(
            &RouteValidationSpec { model_selection: None, ..spec(&[("$default", "Any")]) },
            &set,
        )
        .unwrap();
        assert_eq!(unchecked.check_message("not json"), Ok(()));
    }

    #[test]
    fn missing_parameters_are_listed_by_their_full_keys() {
        let set = models("abc123", &[]);
        let v = route(
            &[
                (ParameterLocation::QueryString, "qs1"),
                (ParameterLocation::Path, "issuer"),
                (ParameterLocation::Header, "x-header-param"),
                (ParameterLocation::Header, "a-first"),
            ],
            None,
            &set,
        );
        let mut headers = HeaderMap::new();
        assert_eq!(
            v.missing(&headers, "", &[]),
            vec!["a-first", "x-header-param", "issuer", "qs1"]
        );
        assert_eq!(
            missing_parameters(&v.missing(&headers, "", &[]))
                .message
                .as_deref(),
            Some("Missing required request parameters: [a-first, x-header-param, issuer, qs1]")
        );
        headers.insert("x-header-param", "v".parse().unwrap());
        headers.insert("a-first", "  ".parse().unwrap());
        assert_eq!(
            v.missing(&headers, "qs1=&qs1=%20", &[("issuer", "me")]),
            vec!["a-first", "qs1"]
        );
        headers.insert("a-first", "1".parse().unwrap());
        assert!(v.missing(&headers, "qs1=x", &[("issuer", "me")]).is_empty());
        // The last value of a query-string parameter is its value.
        assert_eq!(
            v.missing(&headers, "qs1=x&qs1=", &[("issuer", "me")]),
            vec!["qs1"]
        );
    }

    #[test]
    fn the_model_follows_the_content_type_then_default() {
        let set = models(
            "abc123",
            &[
                ("Pet", pet()),
                ("Any", json!({"type": "object", "properties": {}})),
            ],
        );
        let typed = route(&[], Some(&[("application/json", "Pet")]), &set);
        assert_eq!(&*typed.model_for(None).unwrap().name, "Pet");
        assert_eq!(
            &*typed
                .model_for(Some("Application/JSON; charset=utf-8"))
                .unwrap()
                .name,
            "Pet"
        );
        assert!(typed.model_for(Some("text/plain")).is_none());
        let with_default = route(
            &[],
            Some(&[("application/json", "Pet"), ("$default", "Any")]),
            &set,
        );
        assert_eq!(
            &*with_default.model_for(Some("text/plain")).unwrap().name,
            "Any"
        );
        let none = route(&[], Some(&[]), &set);
        assert!(none.model_for(None).is_none());
        let unknown = route(&[], Some(&[("application/json", "Missing")]), &set);
        assert!(unknown.model_for(None).unwrap().compiled.is_err());
    }

    /// The phase in the pipeline: a REST API's MOCK route behind a validator, and a customised
    /// BAD_REQUEST_BODY showing the validation string.
    #[tokio::test(flavor = "current_thread")]
    async fn the_phase_answers_aws_400s_before_the_integration() {
        use crate::gateway::Gateway;
        use crate::invoke::Invoker;
        use crate::pipeline::{Connection, Pipeline};
        use http_body_util::BodyExt;

        let spec = json!({
            "apis": [{
                "id": "shop",
                "kind": "rest",
                "models": [{"name": "Pet", "schema": pet().to_string()}],
                "routes": [{
                    "key": "POST /pets/{id}",
                    "integration": {"type": "MOCK", "status": 200, "body": "passed"},
                    "validation": {
                        "parameters": [
                            {"location": "querystring", "name": "q"},
                            {"location": "path", "name": "id"},
                            {"location": "header", "name": "x-id"}
                        ],
                        "body": {"application/json": "Pet"}
                    }
                }],
                "stages": [{"name": "prod"}],
                "gateway_responses": [{
                    "response_type": "BAD_REQUEST_BODY",
                    "templates": {"application/json": "{\"why\":\"$context.error.validationErrorString\"}"}
                }]
            }],
            "default_api": 0
        });
        let gateway = Arc::new(Gateway::new(&spec.to_string(), None, None).unwrap());
        let pipeline = Pipeline::new(gateway, Arc::new(Invoker::new(1))).unwrap();
        let call = |uri: &str, header: Option<&str>, body: &'static str| {
            let mut request = http::Request::builder()
                .method("POST")
                .uri(uri)
                .header("host", "shop.execute-api.localhost");
            if let Some(value) = header {
                request = request.header("x-id", value);
            }
            let request = request.body(full(body)).unwrap();
            let connection = Connection {
                client_ip: "127.0.0.1".parse().unwrap(),
                scheme: "http",
                client_auth: None,
            };
            let pipeline = &pipeline;
            async move {
                let response = pipeline.handle(request, connection).await;
                let (parts, body) = response.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                (
                    parts.status.as_u16(),
                    parts.headers,
                    String::from_utf8_lossy(&body).into_owned(),
                )
            }
        };
        let (status, headers, body) = call("/prod/pets/7", None, "{}").await;
        assert_eq!(
            (status, body.as_str()),
            (
                400,
                r#"{"message":"Missing required request parameters: [x-id, q]"}"#
            )
        );
        assert_eq!(headers["x-amzn-errortype"], "BadRequestException");
        let (status, _, body) = call("/prod/pets/7?q=1", Some("a"), r#"{"type":"cow"}"#).await;
        assert_eq!(status, 400);
        let why: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            why["why"],
            r#"[instance value ("cow") not found in enum (possible values: ["dog","cat","fish"]), object has missing required properties (["name","price"])]"#
        );
        let good = r#"{"name":"Rex","type":"dog","price":30}"#;
        let (status, _, body) = call("/prod/pets/7?q=1", Some("a"), good).await;
        assert_eq!((status, body.as_str()), (200, "passed"));
    }
}
