//! The spec: what the core serves, as Python's compiler builds it (`portico/compile/spec.py`).
//!
//! The typed contract across the language line. Python validates the user's configuration and
//! builds these structures with one typed builder; here they are deserialized once per deployment
//! (with the path of any bad field in the error) and compiled into a `gateway::Snapshot`.
//! Semantic checks (route keys, duplicate ids, throttle values) happen at compilation.

use serde::Deserialize;
use std::collections::BTreeMap;

/// AWS's default payload limit (10 MB) and header limit (10,240 bytes of request line and headers).
pub const DEFAULT_PAYLOAD_LIMIT: u64 = 10 * 1024 * 1024;
pub const DEFAULT_HEADER_LIMIT: usize = 10_240;
/// As the head's read timeout: a client that stops sending its body for 30 s is cut.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// Enough for any handler that shares its process's GIL; a hung function holds no more threads.
pub const DEFAULT_FUNCTION_CONCURRENCY: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub apis: Vec<ApiSpec>,
    /// The API a Host that names none reaches (the only API, when there is exactly one).
    #[serde(default)]
    pub default_api: Option<usize>,
    #[serde(default)]
    pub account_throttle: Option<LimitSpec>,
    #[serde(default)]
    pub settings: Settings,
    /// Who may sign requests to `AWS_IAM` routes (SigV4), with what identity policy.
    #[serde(default)]
    pub principals: Vec<PrincipalSpec>,
    /// The account's API keys (REST APIs' `apiKeyRequired`).
    #[serde(default)]
    pub api_keys: Vec<ApiKeySpec>,
    /// Usage plans: their keys' throttles and quotas, and what is durable of the keys' usage.
    #[serde(default)]
    pub usage_plans: Vec<UsagePlanSpec>,
}

pub use crate::usage::QuotaPeriod;

/// A usage plan (AWS `UsagePlan`): per-key throttle and quota, over the stages it is bound to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsagePlanSpec {
    pub id: String,
    /// Every key's own bucket, across all the plan's stages (`throttle`).
    #[serde(default)]
    pub throttle: Option<LimitSpec>,
    #[serde(default)]
    pub quota: Option<QuotaSpec>,
    /// The stages it is bound to (`apiStages`).
    #[serde(default)]
    pub stages: Vec<PlanStageSpec>,
    /// Its keys (`UsagePlanKey`), each with what is durable of its usage.
    #[serde(default)]
    pub keys: Vec<PlanKeySpec>,
}

/// `QuotaSettings`: `limit` requests per `period`, `offset` of them taken off in the initial
/// period (the one holding `since_ms`, when the quota was set).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    pub limit: i64,
    pub period: QuotaPeriod,
    #[serde(default)]
    pub offset: i64,
    #[serde(default)]
    pub since_ms: Option<u64>,
}

/// One of a plan's stages (`ApiStage`), with its per-method throttles (`throttle`, keyed
/// `/{resourcePath}/{METHOD}`, e.g. `/pets/GET`, `//GET` for the root).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStageSpec {
    pub api_id: String,
    pub stage: String,
    #[serde(default)]
    pub method_throttle: BTreeMap<String, LimitSpec>,
}

/// A key of a usage plan, and what is durable of its usage in the plan: requests per UTC day of
/// recent days (`[day, requests]`, days since 1970-01-01), and the credits UpdateUsage granted
/// (`[period index, requests]`, for the quota's current period kind).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanKeySpec {
    pub id: String,
    #[serde(default)]
    pub days: Vec<(i64, u64)>,
    #[serde(default)]
    pub credits: Vec<(i64, i64)>,
}

/// A principal known to the gateway: SigV4 credentials and what they may invoke. `Debug` leaves
/// the secret and the session token out.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSpec {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Temporary credentials carry a session token the request must present.
    #[serde(default)]
    pub session_token: Option<String>,
    /// `arn:aws:iam::ACCOUNT:user/NAME`, `arn:aws:iam::ACCOUNT:root`, an assumed role...
    pub arn: String,
    pub account_id: String,
    /// The identity policy (IAM JSON): what `execute-api:Invoke` it allows or denies. None: the
    /// account's root, allowed everything.
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
}

impl std::fmt::Debug for PrincipalSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalSpec")
            .field("access_key_id", &self.access_key_id)
            .field("arn", &self.arn)
            .field("account_id", &self.account_id)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// An API key (AWS `ApiKey`), its value known only by its SHA-256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    pub id: String,
    /// Hex SHA-256 of the key's value: the spec never carries the secret itself.
    pub value_sha256: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `apiId/stage` of every stage a usage plan holding the key is bound to.
    #[serde(default)]
    pub stages: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Gateway-wide settings (`settings:` in the config file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub header_limit: usize,
    pub payload_limit: u64,
    /// Each read of a request body must make progress within this (a stalled upload is cut).
    pub body_timeout_ms: u64,
    /// The access log of every request (stages may add their own, `accessLogSettings`).
    pub access_log: Option<AccessLogSpec>,
    pub account_id: String,
    pub region: String,
    /// Which plugin hooks exist: each one puts Python on the path of every request.
    pub plugins: PluginHooks,
    /// PEM bundle trusted for `https://` upstreams instead of the system's roots.
    pub upstream_ca_file: Option<String>,
    /// The most calls of one function in flight at once (per serving process), for functions
    /// that reserve no concurrency of their own.
    pub function_concurrency: usize,
    /// Per-function settings, by function name.
    pub functions: BTreeMap<String, FunctionSpec>,
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `Retry-After` on throttled
    /// and quota answers, and the quota's on requests it admits (AWS sends none: off by default).
    pub rate_limit_headers: bool,
    /// WebSocket APIs: a connection with no message either way for this long is closed.
    pub websocket_idle_timeout_ms: u64,
    /// WebSocket APIs: a connection is closed once it is this old.
    pub websocket_max_connection_ms: u64,
}

/// AWS's WebSocket limits ("Amazon API Gateway quotas for configuring and running a WebSocket
/// API"): 10 minutes idle, 2 hours in all.
pub const DEFAULT_WEBSOCKET_IDLE_TIMEOUT_MS: u64 = 10 * 60 * 1000;
pub const DEFAULT_WEBSOCKET_MAX_CONNECTION_MS: u64 = 2 * 60 * 60 * 1000;

impl Settings {
    /// How many calls of `function` may be in flight at once.
    pub fn concurrency_of(&self, function: &str) -> usize {
        self.functions
            .get(function)
            .and_then(|f| f.reserved_concurrency)
            .unwrap_or(self.function_concurrency)
    }
}

/// A function's settings, as Lambda's `PutFunctionConcurrency` sets them.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FunctionSpec {
    /// Lambda's `ReservedConcurrentExecutions`: this function's own limit (0 refuses every call).
    pub reserved_concurrency: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            header_limit: DEFAULT_HEADER_LIMIT,
            payload_limit: DEFAULT_PAYLOAD_LIMIT,
            body_timeout_ms: DEFAULT_BODY_TIMEOUT_MS,
            access_log: None,
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            plugins: PluginHooks::default(),
            upstream_ca_file: None,
            function_concurrency: DEFAULT_FUNCTION_CONCURRENCY,
            functions: BTreeMap::new(),
            rate_limit_headers: false,
            websocket_idle_timeout_ms: DEFAULT_WEBSOCKET_IDLE_TIMEOUT_MS,
            websocket_max_connection_ms: DEFAULT_WEBSOCKET_MAX_CONNECTION_MS,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginHooks {
    pub on_request: bool,
    pub on_response: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSpec {
    /// AWS's `$context` format string.
    pub format: String,
    /// `stdout`, `stderr` or a file path.
    pub destination: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub rate: f64,
    pub burst: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    #[default]
    Http,
    Rest,
    /// WebSocket APIs: routes chosen per message by `route_selection_expression` (`crate::websocket`).
    Websocket,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: ApiKind,
    /// The routes every stage serves unless it names its own (file-declared APIs).
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    pub stages: Vec<StageSpec>,
    /// `corsConfiguration` of an HTTP API (stages that serve a deployment carry their own).
    #[serde(default)]
    pub cors: Option<CorsSpec>,
    /// REST APIs' `binaryMediaTypes`.
    #[serde(default)]
    pub binary_media_types: Vec<String>,
    /// REST APIs' `apiKeySource`.
    #[serde(default)]
    pub api_key_source: ApiKeySource,
    /// REST APIs' resource policy (IAM JSON).
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
    /// Gateway responses customised with `PutGatewayResponse`.
    #[serde(default)]
    pub gateway_responses: Vec<GatewayResponseSpec>,
    /// REST APIs: the models of the API's own routes (stages that serve a deployment carry
    /// their deployment's).
    #[serde(default)]
    pub models: Vec<ModelSpec>,
    /// WebSocket APIs' `routeSelectionExpression` (`$request.body.action`).
    #[serde(default)]
    pub route_selection_expression: Option<String>,
}

/// A REST API's model (AWS `Model`): a JSON Schema (draft 4), given as its JSON text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    pub schema: String,
}

/// A method's request validation (its `requestValidatorId`'s validator applied to it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteValidationSpec {
    /// `validateRequestParameters`: the parameters the method requires
    /// (`requestParameters` `method.request.LOCATION.NAME: true`); empty when not validated.
    pub parameters: Vec<RequiredParameterSpec>,
    /// `validateRequestBody`: the method's `requestModels` (media type or `$default` -> model
    /// name); None: bodies are not validated. WebSocket APIs: the route's `requestModels`, by the
    /// values of its `modelSelectionExpression`.
    pub body: Option<BTreeMap<String, String>>,
    /// WebSocket APIs: the route's `modelSelectionExpression` ("Request validation for WebSocket
    /// APIs"): its value picks the message's model in `body`, else `$default`'s; with neither,
    /// the message is refused.
    pub model_selection: Option<String>,
}

/// A request parameter a method requires.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredParameterSpec {
    pub location: ParameterLocation,
    pub name: String,
}

/// Where a REST API reads a request's API key (AWS `apiKeySource`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ApiKeySource {
    /// The `x-api-key` header.
    #[default]
    #[serde(rename = "HEADER")]
    Header,
    /// The Lambda authorizer's `usageIdentifierKey`.
    #[serde(rename = "AUTHORIZER")]
    Authorizer,
}

/// A customised gateway response (AWS `GatewayResponse`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayResponseSpec {
    /// AWS's `responseType` (`UNAUTHORIZED`, `DEFAULT_4XX`, ...).
    pub response_type: String,
    #[serde(default)]
    pub status: Option<u16>,
    /// `gatewayresponse.header.NAME` → AWS's value expression (`'static'`,
    /// `method.request.header.X`, `stageVariables.X`, `context.X`).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Content type → body template (`$context.error.messageString` and the like).
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
}

/// A route: its key (`GET /pets/{id}`, `$default`) and integration. A bare key (no integration)
/// is a route the core routes and throttles but cannot serve (used by routing-only tests).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RouteSpec {
    Key(String),
    Full(RouteDef),
}

impl RouteSpec {
    pub fn key(&self) -> &str {
        match self {
            RouteSpec::Key(k) => k,
            RouteSpec::Full(r) => &r.key,
        }
    }

    pub fn integration(&self) -> Option<&IntegrationSpec> {
        match self {
            RouteSpec::Key(_) => None,
            RouteSpec::Full(r) => r.integration.as_ref(),
        }
    }

    pub fn auth(&self) -> Option<&RouteAuthSpec> {
        match self {
            RouteSpec::Key(_) => None,
            RouteSpec::Full(r) => r.auth.as_ref(),
        }
    }

    pub fn cache_key(&self) -> &[CacheKeyParameterSpec] {
        match self {
            RouteSpec::Key(_) => &[],
            RouteSpec::Full(r) => &r.cache_key,
        }
    }

    pub fn cache_namespace(&self) -> Option<&str> {
        match self {
            RouteSpec::Key(_) => None,
            RouteSpec::Full(r) => r.cache_namespace.as_deref(),
        }
    }

    pub fn validation(&self) -> Option<&RouteValidationSpec> {
        match self {
            RouteSpec::Key(_) => None,
            RouteSpec::Full(r) => r.validation.as_ref(),
        }
    }

    pub fn two_way(&self) -> bool {
        matches!(self, RouteSpec::Full(r) if r.two_way)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDef {
    pub key: String,
    #[serde(default)]
    pub integration: Option<IntegrationSpec>,
    /// Who may call the route. Absent: anyone.
    #[serde(default)]
    pub auth: Option<RouteAuthSpec>,
    /// REST APIs: the integration's `cacheKeyParameters`, what the stage cache keys its answers
    /// by besides the method and resource path.
    #[serde(default)]
    pub cache_key: Vec<CacheKeyParameterSpec>,
    /// REST APIs: the integration's `cacheNamespace` when routes share one (None: the route's
    /// own resource, AWS's default).
    #[serde(default)]
    pub cache_namespace: Option<String>,
    /// REST APIs: how the method's requests are validated (None: they are not); WebSocket APIs:
    /// how a route's messages are.
    #[serde(default)]
    pub validation: Option<RouteValidationSpec>,
    /// WebSocket APIs: the route has a route response (`routeResponseSelectionExpression`
    /// `$default`): the integration's answer is sent back to the client.
    #[serde(default)]
    pub two_way: bool,
}

/// One of an integration's `cacheKeyParameters` (`method.request.querystring.NAME`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheKeyParameterSpec {
    pub location: ParameterLocation,
    pub name: String,
}

/// Where a request parameter is read (`method.request.LOCATION.NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum ParameterLocation {
    /// The last value of a query-string parameter.
    #[serde(rename = "querystring")]
    QueryString,
    /// Every value of a query-string parameter, in order.
    #[serde(rename = "multivaluequerystring")]
    MultiValueQueryString,
    /// The last value of a header (names compare case-insensitively).
    #[serde(rename = "header")]
    Header,
    /// Every value of a header, in order.
    #[serde(rename = "multivalueheader")]
    MultiValueHeader,
    /// A path parameter of the route (`{id}`, `{proxy+}`).
    #[serde(rename = "path")]
    Path,
}

/// A route's (REST: a method's) authorization: AWS's `authorizationType`, its authorizer,
/// `authorizationScopes` and `apiKeyRequired`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteAuthSpec {
    pub authorization: AuthorizationType,
    pub authorizer: Option<AuthorizerSpec>,
    pub scopes: Vec<String>,
    pub api_key_required: bool,
}

/// AWS's `authorizationType` of a route or method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum AuthorizationType {
    #[default]
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "AWS_IAM")]
    AwsIam,
    /// HTTP APIs' JWT authorizers.
    #[serde(rename = "JWT")]
    Jwt,
    /// Lambda authorizers.
    #[serde(rename = "CUSTOM")]
    Custom,
    /// REST APIs' Cognito user pool authorizers.
    #[serde(rename = "COGNITO_USER_POOLS")]
    CognitoUserPools,
}

/// An authorizer (AWS `Authorizer`), as deployed with the routes that use it. Routes naming one
/// authorizer (the same `id`) share its caches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum AuthorizerSpec {
    /// HTTP APIs: a JWT verified against the issuer's keys (OpenID discovery).
    #[serde(rename = "JWT")]
    Jwt {
        id: String,
        #[serde(default)]
        name: String,
        /// `$request.header.Authorization` or `$request.querystring.NAME`.
        identity_source: String,
        issuer: String,
        #[serde(default)]
        audience: Vec<String>,
    },
    /// REST APIs: an ID or access token of one of these Cognito user pools (issuer URLs).
    #[serde(rename = "COGNITO_USER_POOLS")]
    Cognito {
        id: String,
        #[serde(default)]
        name: String,
        /// `method.request.header.Authorization`.
        identity_source: String,
        issuers: Vec<String>,
        #[serde(default)]
        ttl_s: u64,
    },
    /// A Lambda function deciding, run by the Python side.
    #[serde(rename = "LAMBDA")]
    Lambda {
        id: String,
        #[serde(default)]
        name: String,
        uri: String,
        event: AuthorizerEvent,
        /// AWS's expressions, either dialect: `method.request.header.X`, `$request.header.X`,
        /// `...querystring.X`, `stageVariables.X`, `context.X`.
        #[serde(default)]
        identity_sources: Vec<String>,
        /// REST TOKEN authorizers' `identityValidationExpression` (a regex the token must match).
        #[serde(default)]
        validation_expression: Option<String>,
        /// `authorizerResultTtlInSeconds` (0: no caching).
        #[serde(default)]
        ttl_s: u64,
        /// HTTP API 2.0: `enableSimpleResponses`.
        #[serde(default)]
        simple_responses: bool,
        #[serde(default = "authorizer_timeout_ms")]
        timeout_ms: u64,
    },
}

fn authorizer_timeout_ms() -> u64 {
    10_000
}

impl AuthorizerSpec {
    pub fn id(&self) -> &str {
        match self {
            AuthorizerSpec::Jwt { id, .. } | AuthorizerSpec::Cognito { id, .. } | AuthorizerSpec::Lambda { id, .. } => id,
        }
    }
}

/// The event a Lambda authorizer receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AuthorizerEvent {
    /// REST `TOKEN`: the token and the method ARN.
    #[serde(rename = "TOKEN")]
    Token,
    /// REST `REQUEST`: the request, as a proxy event.
    #[serde(rename = "REQUEST")]
    Request,
    /// HTTP APIs, `authorizerPayloadFormatVersion` 1.0.
    #[serde(rename = "HTTP_1_0")]
    Http10,
    /// HTTP APIs, `authorizerPayloadFormatVersion` 2.0.
    #[serde(rename = "HTTP_2_0")]
    Http20,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PayloadVersion {
    #[serde(rename = "1.0")]
    V1,
    #[serde(rename = "2.0")]
    V2,
}

/// A proxy integration's `responseTransferMode` ("Stream the integration response for your proxy
/// integrations in API Gateway" in the developer guide): REST APIs' `HTTP_PROXY` and `AWS_PROXY`
/// integrations may stream; every other integration buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum TransferMode {
    #[default]
    #[serde(rename = "BUFFERED")]
    Buffered,
    #[serde(rename = "STREAM")]
    Stream,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum IntegrationSpec {
    /// `HTTP_PROXY`: `uri` may hold `${stageVariables.NAME}` (filled per stage) and `{name}`
    /// path-parameter markers (filled per request).
    #[serde(rename = "HTTP_PROXY")]
    HttpProxy {
        uri: String,
        /// `ANY` (or absent): the client's method.
        #[serde(default)]
        method: Option<String>,
        timeout_ms: u64,
        /// The integration's `requestParameters`, read per API kind: REST APIs'
        /// (`integration.request.*.NAME`, its source expression; `crate::pipeline::mapping`),
        /// applied over what the proxy passes on; HTTP APIs' (`append|overwrite|remove:`
        /// `header|querystring.NAME` or `overwrite:path`, value expression;
        /// `integrations::parameter_mapping`).
        #[serde(default)]
        request_parameters: Vec<(String, String)>,
        /// HTTP APIs' `responseParameters`: (status code, its (key, value) pairs).
        #[serde(default)]
        response_parameters: Vec<(String, Vec<(String, String)>)>,
        #[serde(default)]
        transfer_mode: TransferMode,
    },
    /// `MOCK`: the same response every time.
    #[serde(rename = "MOCK")]
    Mock {
        status: u16,
        #[serde(default)]
        headers: Vec<(String, String)>,
        #[serde(default)]
        body: String,
    },
    /// `AWS_PROXY`: a Lambda handler run by the Python side; `uri` may hold stage variables.
    #[serde(rename = "AWS_PROXY")]
    LambdaProxy {
        uri: String,
        payload_format_version: PayloadVersion,
        timeout_ms: u64,
        /// HTTP APIs' `requestParameters` and `responseParameters`, as for `HTTP_PROXY`: they
        /// change the event's request and the answer the function's result maps to.
        #[serde(default)]
        request_parameters: Vec<(String, String)>,
        #[serde(default)]
        response_parameters: Vec<(String, Vec<(String, String)>)>,
        #[serde(default)]
        transfer_mode: TransferMode,
    },
    /// A route that cannot be served as configured: answers AWS's 500 and logs `detail`.
    #[serde(rename = "UNAVAILABLE")]
    Unavailable { detail: String },
    /// REST APIs' non-proxy integrations (`AWS` Lambda, `HTTP`, `MOCK`): the integration request
    /// (parameter mapping, mapping template or passthrough), the backend, and the integration
    /// response selected for the method response (`crate::pipeline::mapping`).
    #[serde(rename = "NON_PROXY")]
    NonProxy {
        backend: BackendSpec,
        /// `requestParameters`: (`integration.request.{header|querystring|path}.NAME`, its source
        /// expression), as the integration declares them.
        #[serde(default)]
        request_parameters: Vec<(String, String)>,
        /// `requestTemplates`: (content type, template), in the integration's order.
        #[serde(default)]
        request_templates: Vec<(String, String)>,
        #[serde(default)]
        passthrough: PassthroughBehavior,
        /// The integration's `contentHandling` (None: the payload passes as it is).
        #[serde(default)]
        content_handling: Option<ContentHandling>,
        /// `integrationResponses`.
        #[serde(default)]
        responses: Vec<IntegrationResponseSpec>,
        /// The method's responses (`methodResponses`): a selected status needs one.
        #[serde(default)]
        method_responses: Vec<MethodResponseSpec>,
    },
    /// WebSocket APIs' integrations other than `AWS_PROXY` and a plain `MOCK`.
    #[serde(rename = "WEBSOCKET")]
    Websocket(Box<WebsocketIntegrationSpec>),
}

/// A WebSocket API's `HTTP_PROXY`, `HTTP`, `AWS` (Lambda) or `MOCK` integration
/// (`crate::websocket::integration`): request parameters and the request template chosen by the
/// integration's `templateSelectionExpression`, the backend, and the integration response chosen
/// by the answer (its status, a Lambda error's `errorMessage`) with its own template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsocketIntegrationSpec {
    pub backend: BackendSpec,
    /// `HTTP_PROXY`: the message goes to the backend as it is and its answer comes back as it is.
    #[serde(default)]
    pub proxy: bool,
    /// `requestParameters`: (`integration.request.{header|querystring}.NAME`, its source).
    #[serde(default)]
    pub request_parameters: Vec<(String, String)>,
    /// `requestTemplates`: (template key, template).
    #[serde(default)]
    pub request_templates: Vec<(String, String)>,
    #[serde(default)]
    pub template_selection: Option<String>,
    #[serde(default)]
    pub passthrough: PassthroughBehavior,
    /// `contentHandlingStrategy`: `CONVERT_TO_BINARY` takes the message as base64 and sends the
    /// backend its bytes ("Binary media types for WebSocket APIs").
    #[serde(default)]
    pub content_handling: Option<ContentHandling>,
    #[serde(default)]
    pub responses: Vec<WebsocketResponseSpec>,
}

/// One of a WebSocket integration's `integrationResponses`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsocketResponseSpec {
    /// `integrationResponseKey`: `$default`, `/REGEX/` or an exact value.
    pub key: String,
    #[serde(default)]
    pub templates: Vec<(String, String)>,
    #[serde(default)]
    pub template_selection: Option<String>,
    /// `contentHandlingStrategy`: `CONVERT_TO_TEXT` sends the backend's bytes back as base64
    /// text, `CONVERT_TO_BINARY` its base64 answer back as a binary frame.
    #[serde(default)]
    pub content_handling: Option<ContentHandling>,
}

/// What a non-proxy integration calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum BackendSpec {
    /// `HTTP`: `uri` may hold `${stageVariables.NAME}` (filled per stage) and `{name}` markers,
    /// filled per request from the mapped `integration.request.path.NAME`.
    #[serde(rename = "HTTP")]
    Http {
        uri: String,
        /// `ANY` (or absent): the client's method.
        #[serde(default)]
        method: Option<String>,
        timeout_ms: u64,
    },
    /// `AWS` with a Lambda invocation URI: the function run by the Python side; the request
    /// template's output is its event.
    #[serde(rename = "LAMBDA")]
    Lambda { uri: String, timeout_ms: u64 },
    /// `MOCK`: the request template's `statusCode` is the integration's status.
    #[serde(rename = "MOCK")]
    Mock,
}

/// AWS's `passthroughBehavior`: what happens to a request whose Content-Type has no template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum PassthroughBehavior {
    #[default]
    #[serde(rename = "WHEN_NO_MATCH")]
    WhenNoMatch,
    #[serde(rename = "WHEN_NO_TEMPLATES")]
    WhenNoTemplates,
    #[serde(rename = "NEVER")]
    Never,
}

/// AWS's `contentHandling` of an integration (request) or integration response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ContentHandling {
    /// A binary payload becomes its base64 text.
    #[serde(rename = "CONVERT_TO_TEXT")]
    ConvertToText,
    /// A text payload is taken as base64 and decoded.
    #[serde(rename = "CONVERT_TO_BINARY")]
    ConvertToBinary,
}

/// One of an integration's `integrationResponses`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationResponseSpec {
    /// The method response's status it answers with.
    pub status: u16,
    /// A Java regular expression matched against the whole backend status (HTTP, MOCK) or the
    /// Lambda function error's `errorMessage`; None or empty: the default response.
    #[serde(default)]
    pub selection_pattern: Option<String>,
    /// `responseParameters`: (`method.response.header.NAME`, its source expression).
    #[serde(default)]
    pub parameters: Vec<(String, String)>,
    /// `responseTemplates`: (content type, template), in the response's order.
    #[serde(default)]
    pub templates: Vec<(String, String)>,
    #[serde(default)]
    pub content_handling: Option<ContentHandling>,
}

/// A method response: its status and the headers it declares (`method.response.header.NAME`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodResponseSpec {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub max_age: Option<i64>,
    #[serde(default)]
    pub allow_credentials: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub name: String,
    #[serde(default)]
    pub deployment_id: String,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub default_throttle: Option<LimitSpec>,
    #[serde(default)]
    pub route_throttle: Option<BTreeMap<String, LimitSpec>>,
    /// The routes of the stage's deployment; absent: the API's.
    #[serde(default)]
    pub routes: Option<Vec<RouteSpec>>,
    /// The deployment's CORS (with `routes`); absent: the API's.
    #[serde(default)]
    pub cors: Option<CorsSpec>,
    /// The deployment's models (with `routes`); absent: the API's.
    #[serde(default)]
    pub models: Option<Vec<ModelSpec>>,
    /// `accessLogSettings` of the stage.
    #[serde(default)]
    pub access_log: Option<AccessLogSpec>,
    #[serde(default)]
    pub canary: Option<CanarySpec>,
    /// Moved by `FlushStageAuthorizersCache` / `ResetAuthorizersCache`: the stage's Lambda
    /// authorizers start with empty caches.
    #[serde(default)]
    pub authorizer_cache_epoch: u64,
    /// REST APIs: the stage's response cache (`cacheClusterEnabled`); absent: none.
    #[serde(default)]
    pub cache: Option<StageCacheSpec>,
}

/// A stage's response cache: its size, and which routes it caches (AWS's `methodSettings`
/// `caching/*`, resolved per route key by the compiler).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageCacheSpec {
    /// The most bytes its entries may take (`cacheClusterSize`, in each serving process).
    pub capacity_bytes: u64,
    /// Moved by `FlushStageCache`: the stage starts with an empty cache.
    #[serde(default)]
    pub epoch: u64,
    /// Route key -> how its answers are cached; a route not named is not cached.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteCacheSpec>,
}

/// The `caching/*` method settings that apply to one route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCacheSpec {
    /// `cacheTtlInSeconds` (1..=3600; 0 is no caching, left out by the compiler).
    pub ttl_s: u32,
    pub methods: CachedMethods,
    /// `requireAuthorizationForCacheControl`.
    #[serde(default = "yes")]
    pub require_authorization: bool,
    /// `unauthorizedCacheControlHeaderStrategy`.
    #[serde(default)]
    pub unauthorized: UnauthorizedCacheControl,
}

/// Which requests of a route are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CachedMethods {
    /// Only GET requests: caching enabled stage-wide (`*/*`), as AWS applies it.
    #[serde(rename = "GET")]
    Get,
    /// Every request of the route: its own method setting enables caching.
    #[serde(rename = "ALL")]
    All,
}

/// AWS's `unauthorizedCacheControlHeaderStrategy`: what a `Cache-Control: max-age=0` request
/// that may not invalidate the cache gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum UnauthorizedCacheControl {
    /// 403.
    #[serde(rename = "FAIL_WITH_403")]
    FailWith403,
    /// The header is ignored; the answer says so in a response header.
    #[default]
    #[serde(rename = "SUCCEED_WITH_RESPONSE_HEADER")]
    SucceedWithResponseHeader,
    /// The header is ignored.
    #[serde(rename = "SUCCEED_WITHOUT_RESPONSE_HEADER")]
    SucceedWithoutResponseHeader,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySpec {
    #[serde(default)]
    pub percent: f64,
    #[serde(default)]
    pub deployment_id: String,
    /// The stage's variables overlaid with `stageVariableOverrides`; absent: the stage's.
    #[serde(default)]
    pub variables: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub default_throttle: Option<LimitSpec>,
    #[serde(default)]
    pub route_throttle: Option<BTreeMap<String, LimitSpec>>,
    #[serde(default)]
    pub routes: Option<Vec<RouteSpec>>,
    #[serde(default)]
    pub cors: Option<CorsSpec>,
    /// The canary deployment's models (with `routes`); absent: the stage's.
    #[serde(default)]
    pub models: Option<Vec<ModelSpec>>,
    /// `useStageCache`: the canary's requests use the stage's cache (apart from the stage's
    /// own entries when it serves another deployment); false: they are never cached.
    #[serde(default)]
    pub use_stage_cache: bool,
}

impl Spec {
    /// Parse a spec; the error names the path of the bad field (`apis[0].stages[1].name: ...`).
    pub fn from_json(json: &str) -> Result<Spec, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                format!("spec is not valid JSON: {inner}")
            } else if path == "." || path.is_empty() {
                format!("spec: {inner}")
            } else {
                format!("{path}: {inner}")
            }
        })
    }
}
