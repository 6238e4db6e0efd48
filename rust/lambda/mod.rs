//! Interim: replaced by the full port of the Lambda proxy event and response formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    RestV1,
    HttpV1,
    HttpV2,
}
pub struct EventSource<'a> {
    pub format: PayloadFormat,
    pub request_id: &'a str,
    pub extended_request_id: &'a str,
    pub trace_id: &'a str,
    pub method: &'a str,
    pub raw_path: &'a str,
    pub path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub host: &'a str,
    pub scheme: &'a str,
    pub protocol: &'a str,
    pub client_ip: &'a str,
    pub time_epoch_ms: u64,
    pub account_id: &'a str,
    pub api_id: &'a str,
    pub stage: &'a str,
    pub route_key: &'a str,
    pub resource_path: &'a str,
    pub path_params: &'a [(&'a str, &'a str)],
    pub stage_variables: &'a [(Box<str>, Box<str>)],
    pub body: &'a [u8],
    pub binary_media_types: &'a [Box<str>],
}
pub fn build_event(src: &EventSource<'_>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"version": "2.0", "rawPath": src.raw_path,
        "body": String::from_utf8_lossy(src.body)})).unwrap()
}
pub struct LambdaResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
}
#[derive(Debug)]
pub struct Malformed(pub String);
pub fn parse_response(
    _format: PayloadFormat,
    result: &[u8],
    _accept: Option<&str>,
    _binary: &[Box<str>],
) -> Result<LambdaResponse, Malformed> {
    let v: serde_json::Value = serde_json::from_slice(result).map_err(|e| Malformed(e.to_string()))?;
    Ok(LambdaResponse {
        status: v.get("statusCode").and_then(|s| s.as_u64()).unwrap_or(200) as u16,
        headers: vec![],
        body: bytes::Bytes::from(v.get("body").and_then(|b| b.as_str()).unwrap_or("").to_string()),
    })
}
