//! Gateway responses: every answer the gateway gives on its own, by AWS's gateway-response type.
//!
//! HTTP APIs and REST APIs word the same failure differently (`Internal Server Error` vs
//! `Internal server error`, 404 vs 403 for an unknown route); the table holds both so that every
//! phase fails with a type and the API kind picks the wire form. See "Gateway response types for
//! API Gateway" in the API Gateway developer guide.

use crate::spec::ApiKind;

/// AWS gateway-response types (the ones Portico can produce).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ErrorType {
    #[default]
    BadRequest,
    /// The request body could not be read whole: its framing is broken (a malformed chunked
    /// encoding) or it ended early. AWS's 400 Bad Request; the connection closes, its framing
    /// being lost.
    MalformedBody,
    ResourceNotFound,
    MissingAuthenticationToken,
    Throttled,
    /// A usage plan's quota is used up for its period.
    QuotaExceeded,
    RequestTooLarge,
    HeadersTooLarge,
    UriTooLong,
    /// The client stopped sending its body.
    RequestTimeout,
    IntegrationFailure,
    IntegrationTimeout,
    /// An integration answered with what API Gateway cannot pass on: a Lambda's malformed output,
    /// an upstream's response head over the header limit.
    MalformedResponse,
    /// A Lambda raised, or could not be invoked.
    FunctionError,
    /// The route's integration cannot be served as configured.
    ApiConfigurationError,
    /// No, or no valid, credentials (a missing identity source, a token that does not verify,
    /// a Lambda authorizer's `Unauthorized`).
    Unauthorized,
    /// Valid credentials that may not call this route (a policy's deny, a missing scope).
    AccessDenied,
    /// A SigV4 signature that does not verify.
    InvalidSignature,
    /// A SigV4 signature that cannot be read: a malformed `Authorization` header or presigned
    /// query string (AWS's `IncompleteSignatureException`).
    IncompleteSignature,
    /// A SigV4 signature by an access key the gateway does not know, or with a session token
    /// that is not the key's (AWS's `UnrecognizedClientException`).
    UnrecognizedClient,
    /// A SigV4 signature (or a session token) past its time.
    ExpiredToken,
    /// No API key, or one that may not call this stage.
    InvalidApiKey,
    /// A Lambda authorizer failed, timed out or answered what cannot be read.
    AuthorizerFailure,
    /// An authorizer cannot work as configured (an unknown function, an unusable issuer).
    AuthorizerConfigurationError,
    /// mTLS: the connection's client certificate is missing, or the truststore does not trust it
    /// (AWS answers 403 Forbidden; `crate::auth::mtls`).
    ClientCertificateRefused,
    /// A non-proxy integration's `passthroughBehavior` refuses the request's Content-Type.
    UnsupportedMediaType,
    /// A request validator's required parameter is missing or blank (the message names them).
    BadRequestParameters,
    /// A request validator found the body not JSON, or not of its model.
    BadRequestBody,
}

/// A gateway response as sent: status, `{"message": ...}` (None: `null`, as AWS sends for
/// authorizer failures) and, for REST APIs, `x-amzn-ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayResponse {
    pub status: u16,
    pub message: Option<&'static str>,
    pub error_type: Option<&'static str>,
    /// `message`, or `Message` for REST APIs' policy denials (as AWS spells that one).
    pub message_key: &'static str,
}

impl ErrorType {
    /// The name AWS uses for the type (`$context.error.responseType`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::BadRequest | ErrorType::MalformedBody => "DEFAULT_4XX",
            ErrorType::ResourceNotFound => "RESOURCE_NOT_FOUND",
            ErrorType::MissingAuthenticationToken => "MISSING_AUTHENTICATION_TOKEN",
            ErrorType::Throttled => "THROTTLED",
            ErrorType::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorType::RequestTooLarge => "REQUEST_TOO_LARGE",
            ErrorType::HeadersTooLarge | ErrorType::UriTooLong | ErrorType::RequestTimeout => "DEFAULT_4XX",
            ErrorType::IntegrationFailure => "INTEGRATION_FAILURE",
            ErrorType::IntegrationTimeout => "INTEGRATION_TIMEOUT",
            ErrorType::MalformedResponse | ErrorType::FunctionError => "DEFAULT_5XX",
            ErrorType::ApiConfigurationError => "API_CONFIGURATION_ERROR",
            ErrorType::Unauthorized => "UNAUTHORIZED",
            ErrorType::AccessDenied => "ACCESS_DENIED",
            // AWS has no gateway-response type of their own for these two: they are signatures
            // that do not hold.
            ErrorType::InvalidSignature | ErrorType::IncompleteSignature | ErrorType::UnrecognizedClient => {
                "INVALID_SIGNATURE"
            }
            ErrorType::ExpiredToken => "EXPIRED_TOKEN",
            ErrorType::InvalidApiKey => "INVALID_API_KEY",
            ErrorType::AuthorizerFailure => "AUTHORIZER_FAILURE",
            ErrorType::AuthorizerConfigurationError => "AUTHORIZER_CONFIGURATION_ERROR",
            // AWS documents no gateway-response type of its own for it.
            ErrorType::ClientCertificateRefused => "DEFAULT_4XX",
            ErrorType::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorType::BadRequestParameters => "BAD_REQUEST_PARAMETERS",
            ErrorType::BadRequestBody => "BAD_REQUEST_BODY",
        }
    }

    /// The response for an API of `kind`.
    pub fn response(self, kind: ApiKind) -> GatewayResponse {
        let (status, message, error_type) = match kind {
            ApiKind::Http | ApiKind::Websocket => {
                let (s, m) = self.http_api();
                (s, m, None)
            }
            ApiKind::Rest => {
                let (s, m, t) = self.rest_api();
                (s, m, Some(t))
            }
        };
        let message_key = match (kind, self) {
            (ApiKind::Rest, ErrorType::AccessDenied) => "Message",
            _ => "message",
        };
        GatewayResponse {
            status,
            message,
            error_type,
            message_key,
        }
    }

    fn http_api(self) -> (u16, Option<&'static str>) {
        let (status, message) = match self {
            ErrorType::BadRequest | ErrorType::MalformedBody => (400, "Bad Request"),
            ErrorType::ResourceNotFound | ErrorType::MissingAuthenticationToken => (404, "Not Found"),
            ErrorType::Throttled => (429, "Too Many Requests"),
            ErrorType::QuotaExceeded => (429, "Limit Exceeded"),
            ErrorType::RequestTooLarge => (413, "Request Entity Too Large"),
            ErrorType::HeadersTooLarge => (431, "Request Header Fields Too Large"),
            ErrorType::UriTooLong => (414, "Request-URI Too Long"),
            ErrorType::RequestTimeout => (408, "Request Timeout"),
            ErrorType::IntegrationFailure
            | ErrorType::MalformedResponse
            | ErrorType::FunctionError
            | ErrorType::ApiConfigurationError
            | ErrorType::AuthorizerFailure
            | ErrorType::AuthorizerConfigurationError => (500, "Internal Server Error"),
            ErrorType::IntegrationTimeout => (503, "Service Unavailable"),
            ErrorType::Unauthorized => (401, "Unauthorized"),
            ErrorType::AccessDenied | ErrorType::InvalidApiKey => (403, "Forbidden"),
            ErrorType::InvalidSignature | ErrorType::ExpiredToken | ErrorType::IncompleteSignature => {
                (403, "Forbidden")
            }
            ErrorType::UnrecognizedClient => (403, "The security token included in the request is invalid."),
            ErrorType::ClientCertificateRefused => (403, "Forbidden"),
            ErrorType::UnsupportedMediaType => (415, "Unsupported Media Type"),
            ErrorType::BadRequestParameters | ErrorType::BadRequestBody => (400, "Bad Request"),
        };
        (status, Some(message))
    }

    fn rest_api(self) -> (u16, Option<&'static str>, &'static str) {
        let (status, message, error_type) = match self {
            ErrorType::BadRequest | ErrorType::MalformedBody => (400, "Bad Request", "BadRequestException"),
            ErrorType::ResourceNotFound => (404, "Not Found", "NotFoundException"),
            ErrorType::MissingAuthenticationToken => (
                403,
                "Missing Authentication Token",
                "MissingAuthenticationTokenException",
            ),
            ErrorType::Throttled => (429, "Too Many Requests", "TooManyRequestsException"),
            // "Gateway response types": QUOTA_EXCEEDED, 429.
            ErrorType::QuotaExceeded => (429, "Limit Exceeded", "LimitExceededException"),
            ErrorType::RequestTooLarge => (413, "Request Too Long", "RequestTooLargeException"),
            ErrorType::HeadersTooLarge => (431, "Request Header Fields Too Large", "BadRequestException"),
            ErrorType::UriTooLong => (414, "Request-URI Too Long", "BadRequestException"),
            ErrorType::RequestTimeout => (408, "Request Timeout", "BadRequestException"),
            ErrorType::IntegrationFailure | ErrorType::IntegrationTimeout => (
                504,
                "Endpoint request timed out",
                "InternalServerErrorException",
            ),
            ErrorType::MalformedResponse | ErrorType::FunctionError => {
                (502, "Internal server error", "InternalServerErrorException")
            }
            ErrorType::ApiConfigurationError => {
                (500, "Internal server error", "InternalServerErrorException")
            }
            ErrorType::Unauthorized => (401, "Unauthorized", "UnauthorizedException"),
            ErrorType::AccessDenied => (
                403,
                "User is not authorized to access this resource",
                "AccessDeniedException",
            ),
            ErrorType::InvalidSignature => (
                403,
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
                "InvalidSignatureException",
            ),
            ErrorType::ExpiredToken => (403, "The security token included in the request is expired", "ExpiredTokenException"),
            // The message is always the request's own (what is missing from the signature).
            ErrorType::IncompleteSignature => (403, "Forbidden", "IncompleteSignatureException"),
            ErrorType::UnrecognizedClient => (
                403,
                "The security token included in the request is invalid.",
                "UnrecognizedClientException",
            ),
            ErrorType::InvalidApiKey => (403, "Forbidden", "ForbiddenException"),
            ErrorType::ClientCertificateRefused => (403, "Forbidden", "ForbiddenException"),
            // "Gateway response types": UNSUPPORTED_MEDIA_TYPE, 415.
            ErrorType::UnsupportedMediaType => (415, "Unsupported Media Type", "BadRequestException"),
            // The message is always the request's own: "Missing required request parameters: [a, b]".
            ErrorType::BadRequestParameters => (400, "Missing required request parameters", "BadRequestException"),
            ErrorType::BadRequestBody => (400, "Invalid request body", "BadRequestException"),
            ErrorType::AuthorizerFailure => return (500, None, "AuthorizerFailureException"),
            ErrorType::AuthorizerConfigurationError => return (500, None, "AuthorizerConfigurationException"),
        };
        (status, Some(message), error_type)
    }
}

impl std::str::FromStr for ErrorType {
    type Err = String;

    /// The names `portico.dataplane.errors.ErrorType` uses.
    fn from_str(name: &str) -> Result<ErrorType, String> {
        Ok(match name {
            "BAD_REQUEST" => ErrorType::BadRequest,
            "RESOURCE_NOT_FOUND" => ErrorType::ResourceNotFound,
            "MISSING_AUTHENTICATION_TOKEN" => ErrorType::MissingAuthenticationToken,
            "THROTTLED" => ErrorType::Throttled,
            "REQUEST_TOO_LARGE" => ErrorType::RequestTooLarge,
            "HEADERS_TOO_LARGE" => ErrorType::HeadersTooLarge,
            "URI_TOO_LONG" => ErrorType::UriTooLong,
            "REQUEST_TIMEOUT" => ErrorType::RequestTimeout,
            "INTEGRATION_FAILURE" => ErrorType::IntegrationFailure,
            "INTEGRATION_TIMEOUT" => ErrorType::IntegrationTimeout,
            "MALFORMED_RESPONSE" => ErrorType::MalformedResponse,
            "FUNCTION_ERROR" => ErrorType::FunctionError,
            "API_CONFIGURATION_ERROR" => ErrorType::ApiConfigurationError,
            "UNAUTHORIZED" => ErrorType::Unauthorized,
            "ACCESS_DENIED" => ErrorType::AccessDenied,
            "INVALID_SIGNATURE" => ErrorType::InvalidSignature,
            "EXPIRED_TOKEN" => ErrorType::ExpiredToken,
            "INVALID_API_KEY" => ErrorType::InvalidApiKey,
            "AUTHORIZER_FAILURE" => ErrorType::AuthorizerFailure,
            "AUTHORIZER_CONFIGURATION_ERROR" => ErrorType::AuthorizerConfigurationError,
            "UNSUPPORTED_MEDIA_TYPE" => ErrorType::UnsupportedMediaType,
            "BAD_REQUEST_PARAMETERS" => ErrorType::BadRequestParameters,
            "BAD_REQUEST_BODY" => ErrorType::BadRequestBody,
            other => return Err(format!("unknown gateway response type {other:?}")),
        })
    }
}

impl GatewayResponse {
    /// `{"message":"..."}`, as AWS's default template (`{"message":$context.error.messageString}`)
    /// renders it.
    pub fn body(&self) -> String {
        self.body_with(None)
    }

    /// The default body with `message` (a phase's own wording) in place of the type's.
    pub fn body_with(&self, message: Option<&str>) -> String {
        match message.or(self.message) {
            Some(m) => format!("{{\"{}\":{}}}", self.message_key, json_string(m)),
            None => format!("{{\"{}\":null}}", self.message_key),
        }
    }
}

/// `text` as a JSON string (`$context.error.messageString`).
pub fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_api_kinds_word_failures_differently() {
        let http = ErrorType::MissingAuthenticationToken.response(ApiKind::Http);
        assert_eq!((http.status, http.message, http.error_type), (404, Some("Not Found"), None));
        let rest = ErrorType::MissingAuthenticationToken.response(ApiKind::Rest);
        assert_eq!(rest.status, 403);
        assert_eq!(rest.error_type, Some("MissingAuthenticationTokenException"));
        assert_eq!(rest.body(), r#"{"message":"Missing Authentication Token"}"#);
        assert_eq!(ErrorType::FunctionError.response(ApiKind::Rest).status, 502);
        assert_eq!(ErrorType::FunctionError.response(ApiKind::Http).status, 500);
        assert_eq!(ErrorType::IntegrationTimeout.response(ApiKind::Http).status, 503);
        assert_eq!(ErrorType::IntegrationTimeout.response(ApiKind::Rest).status, 504);
    }

    #[test]
    fn a_malformed_body_is_a_bad_request_and_an_unpassable_response_a_5xx() {
        assert_eq!(ErrorType::MalformedBody.response(ApiKind::Http), ErrorType::BadRequest.response(ApiKind::Http));
        assert_eq!(ErrorType::MalformedBody.response(ApiKind::Rest), ErrorType::BadRequest.response(ApiKind::Rest));
        let http = ErrorType::MalformedResponse.response(ApiKind::Http);
        assert_eq!((http.status, http.body()), (500, r#"{"message":"Internal Server Error"}"#.to_owned()));
        let rest = ErrorType::MalformedResponse.response(ApiKind::Rest);
        assert_eq!((rest.status, rest.body()), (502, r#"{"message":"Internal server error"}"#.to_owned()));
        assert_eq!(rest.error_type, Some("InternalServerErrorException"));
    }

    #[test]
    fn validation_refusals_are_bad_requests_of_their_own_types() {
        let body = ErrorType::BadRequestBody.response(ApiKind::Rest);
        assert_eq!((body.status, body.body()), (400, r#"{"message":"Invalid request body"}"#.to_owned()));
        assert_eq!(body.error_type, Some("BadRequestException"));
        let parameters = ErrorType::BadRequestParameters.response(ApiKind::Rest);
        assert_eq!(parameters.status, 400);
        assert_eq!(parameters.error_type, Some("BadRequestException"));
        assert_eq!(ErrorType::BadRequestBody.name(), "BAD_REQUEST_BODY");
        assert_eq!(ErrorType::BadRequestParameters.name(), "BAD_REQUEST_PARAMETERS");
        assert_eq!("BAD_REQUEST_BODY".parse::<ErrorType>(), Ok(ErrorType::BadRequestBody));
    }

    #[test]
    fn authorization_failures_as_aws_words_them() {
        let rest = ErrorType::AuthorizerConfigurationError.response(ApiKind::Rest);
        assert_eq!((rest.status, rest.body()), (500, r#"{"message":null}"#.to_owned()));
        assert_eq!(rest.error_type, Some("AuthorizerConfigurationException"));
        let http = ErrorType::Unauthorized.response(ApiKind::Http);
        assert_eq!((http.status, http.body()), (401, r#"{"message":"Unauthorized"}"#.to_owned()));
        let denied = ErrorType::AccessDenied.response(ApiKind::Rest);
        assert_eq!(
            denied.body_with(Some("User is not authorized to access this resource with an explicit deny")),
            r#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#
        );
        assert_eq!(ErrorType::InvalidApiKey.response(ApiKind::Rest).error_type, Some("ForbiddenException"));
        assert_eq!(ErrorType::AccessDenied.response(ApiKind::Http).body(), r#"{"message":"Forbidden"}"#);
        assert_eq!(json_string("a \"quoted\"\n"), r#""a \"quoted\"\n""#);
    }
}
