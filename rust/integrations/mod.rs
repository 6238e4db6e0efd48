//! Integrations: what a route calls once the request has passed every check.
//!
//! `HTTP_PROXY` and `MOCK` are served by the core alone; `AWS_PROXY` builds the event here and
//! hands it to the Python side, which runs the user's handler (`crate::invoke`). REST APIs'
//! non-proxy `HTTP`, `AWS` and `MOCK` (`non_proxy`) map requests and responses in the core, and
//! hand only the VTL of their templates (and a Lambda's handler) to the Python side.

pub mod http_proxy;
pub mod lambda_proxy;
pub mod mock;
pub mod non_proxy;
pub mod parameter_mapping;
pub mod streaming;

use crate::spec::{ApiKind, IntegrationSpec, Settings, TransferMode};

/// A route's integration, compiled for one stage (its variables filled in).
#[derive(Debug)]
pub enum Integration {
    HttpProxy(http_proxy::HttpProxy),
    /// REST APIs' `HTTP`, `AWS` (Lambda) and `MOCK` with request and response mapping.
    NonProxy(Box<non_proxy::NonProxy>),
    Mock(mock::Mock),
    LambdaProxy(lambda_proxy::LambdaProxy),
    /// WebSocket APIs' `HTTP_PROXY`, `HTTP`, `AWS` and AWS's `MOCK`.
    Websocket(Box<crate::websocket::integration::WebsocketIntegration>),
    /// Cannot be served as configured: AWS's 500, and `detail` in the log.
    Unavailable(Box<str>),
    /// A route given by key only (routing-only specs): answers as `Unavailable`.
    Unset,
}

/// Compile `spec` for route `route_key` of an API (`api_id`, `kind`) on a stage with `variables`.
pub fn compile(
    spec: &IntegrationSpec,
    route_key: &str,
    kind: ApiKind,
    api_id: &str,
    variables: &[(Box<str>, Box<str>)],
    settings: &Settings,
) -> Result<Integration, String> {
    Ok(match spec {
        IntegrationSpec::HttpProxy {
            uri,
            method,
            timeout_ms,
            request_parameters,
            response_parameters,
            transfer_mode,
        } => {
            let mut proxy =
                http_proxy::HttpProxy::compile(uri, method.as_deref(), *timeout_ms, route_key, api_id, variables)?
                    .with_transfer_mode(*transfer_mode);
            // One spec field, read per API kind: REST's `integration.request.*` keys, HTTP's
            // `append|overwrite|remove:` keys (the control plane refuses the other kind's).
            match kind {
                ApiKind::Rest if !request_parameters.is_empty() => {
                    proxy.rest_parameters =
                        Some(Box::new(crate::pipeline::mapping::RequestParameters::compile(request_parameters)?));
                }
                ApiKind::Rest => {}
                ApiKind::Http | ApiKind::Websocket => {
                    proxy.mapping =
                        parameter_mapping::Mapping::compile(request_parameters, response_parameters, variables)?;
                }
            }
            Integration::HttpProxy(proxy)
        }
        IntegrationSpec::Mock {
            status,
            headers,
            body,
        } => Integration::Mock(mock::Mock::compile(*status, headers, body)?),
        IntegrationSpec::LambdaProxy {
            uri,
            payload_format_version,
            timeout_ms,
            request_parameters,
            response_parameters,
            transfer_mode,
        } => {
            let mut lambda =
                lambda_proxy::LambdaProxy::compile(uri, kind, *payload_format_version, *timeout_ms, variables, settings)
                    .with_transfer_mode(*transfer_mode);
            lambda.mapping = parameter_mapping::Mapping::compile(request_parameters, response_parameters, variables)?;
            Integration::LambdaProxy(lambda)
        }
        IntegrationSpec::Websocket(spec) => Integration::Websocket(Box::new(
            crate::websocket::integration::WebsocketIntegration::compile(spec, route_key, api_id, variables, settings)?,
        )),
        IntegrationSpec::Unavailable { detail } => Integration::Unavailable(detail.as_str().into()),
        IntegrationSpec::NonProxy {
            backend,
            request_parameters,
            request_templates,
            passthrough,
            content_handling,
            responses,
            method_responses,
        } => Integration::NonProxy(Box::new(non_proxy::NonProxy::compile(
            non_proxy::NonProxySpec {
                backend,
                request_parameters,
                request_templates,
                passthrough: *passthrough,
                content_handling: *content_handling,
                responses,
                method_responses,
            },
            route_key,
            api_id,
            variables,
            settings,
        )?)),
    })
}

impl Integration {
    /// Whether the integration streams its answers (`responseTransferMode: STREAM`).
    pub fn streams(&self) -> bool {
        match self {
            Integration::HttpProxy(proxy) => proxy.transfer_mode() == TransferMode::Stream,
            Integration::LambdaProxy(lambda) => lambda.transfer_mode() == TransferMode::Stream,
            _ => false,
        }
    }
}
