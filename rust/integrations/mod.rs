//! Integrations: what a route calls once the request has passed every check.
//!
//! `HTTP_PROXY` and `MOCK` are served by the core alone; `AWS_PROXY` builds the event here and
//! hands it to the Python side, which runs the user's handler (`crate::invoke`).

pub mod http_proxy;
pub mod lambda_proxy;
pub mod mock;
pub mod parameter_mapping;
pub mod streaming;

use crate::spec::{ApiKind, IntegrationSpec, Settings, TransferMode};

/// A route's integration, compiled for one stage (its variables filled in).
#[derive(Debug)]
pub enum Integration {
    HttpProxy(http_proxy::HttpProxy),
    Mock(mock::Mock),
    LambdaProxy(lambda_proxy::LambdaProxy),
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
            proxy.mapping = parameter_mapping::Mapping::compile(request_parameters, response_parameters, variables)?;
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
        IntegrationSpec::Unavailable { detail } => Integration::Unavailable(detail.as_str().into()),
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
