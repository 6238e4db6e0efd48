//! The Lambda proxy events of a WebSocket API (the `$connect`, message and `$disconnect` events
//! of "Set up a WebSocket API integration" and "Lambda proxy integration" samples in the API
//! Gateway developer guide), and AWS's error frames.

use std::sync::Arc;

use http::HeaderMap;
use serde_json::{json, Map, Value};

use crate::auth::{claim_text, Granted};
use crate::lambda::event::parse_query;

/// What every event of one connection says of it.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    pub api_id: Box<str>,
    pub stage: Box<str>,
    /// The Host the client connected to (its port too): with `stage`, the `@connections`
    /// endpoint (`https://{domainName}/{stage}`).
    pub domain_name: Box<str>,
    pub connection_id: Box<str>,
    pub connected_at_ms: u64,
    pub source_ip: Box<str>,
    pub user_agent: Option<Box<str>>,
    /// The signer of an `AWS_IAM` `$connect`: every event's `identity` names it.
    pub iam: Option<crate::auth::IamIdentity>,
    /// What `$connect`'s Lambda authorizer granted, as every later event's
    /// `requestContext.authorizer` shows it (`authorizer_context`).
    pub authorizer: Option<Arc<Map<String, Value>>>,
    /// The API key `$connect` required: every event's `identity.apiKey` and `apiKeyId`.
    pub api_key: Option<crate::auth::ApiKeyIdentity>,
}

/// `requestContext.authorizer` of a connection's events once its `$connect` Lambda authorizer
/// allowed it: the `context` values stringified, `principalId` and `integrationLatency`, as the
/// REST proxy event carries a Lambda authorizer's grant ("Control access to WebSocket APIs with
/// AWS Lambda REQUEST authorizers"). None when nothing was granted.
pub fn authorizer_context(granted: &Granted) -> Option<Arc<Map<String, Value>>> {
    let Granted::Lambda { principal_id, context, latency_ms, .. } = granted else {
        return None;
    };
    let mut map: Map<String, Value> = context.iter().map(|(k, v)| (k.clone(), Value::from(claim_text(v)))).collect();
    map.insert("principalId".into(), principal_id.as_deref().map_or(Value::Null, Value::from));
    map.insert("integrationLatency".into(), Value::from(*latency_ms));
    Some(Arc::new(map))
}

/// One event's own ids and time.
#[derive(Debug, Clone, Copy)]
pub struct EventIds<'a> {
    pub request_id: &'a str,
    pub extended_request_id: &'a str,
    pub time_ms: u64,
}

/// How a connection ended, for `$disconnect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub status_code: u16,
    pub reason: String,
}

impl Disconnect {
    /// The client sent a close frame (1005 when it carried no code), as AWS words it.
    pub fn client_closed(code: Option<u16>, reason: &str) -> Disconnect {
        let code = code.unwrap_or(1005);
        Disconnect {
            status_code: code,
            reason: format!(
                "Client-side close frame status code '{code}' ({}) - custom reason: {reason}",
                close_code_name(code)
            ),
        }
    }

    /// The connection ended without a close frame (the client vanished).
    pub fn abnormal() -> Disconnect {
        Disconnect {
            status_code: 1006,
            reason: "Going away".into(),
        }
    }

    /// The gateway closed it with `code` (a `DeleteConnection`, a message too big, a binary
    /// frame).
    pub fn server_closed(code: u16, reason: &str) -> Disconnect {
        Disconnect {
            status_code: code,
            reason: reason.into(),
        }
    }
}

/// RFC 6455's names of close codes, as AWS's reasons spell them.
fn close_code_name(code: u16) -> &'static str {
    match code {
        1000 => "NORMAL_CLOSURE",
        1001 => "GOING_AWAY",
        1002 => "PROTOCOL_ERROR",
        1003 => "UNSUPPORTED_DATA",
        1005 => "NO_STATUS_RCVD",
        1006 => "ABNORMAL_CLOSURE",
        1007 => "INVALID_FRAME_PAYLOAD_DATA",
        1008 => "POLICY_VIOLATION",
        1009 => "MESSAGE_TOO_BIG",
        1010 => "MANDATORY_EXT",
        1011 => "INTERNAL_ERROR",
        _ => "UNKNOWN",
    }
}

fn request_context(cx: &ConnectionContext, route_key: &str, event_type: &str, ids: EventIds<'_>) -> Map<String, Value> {
    let mut time = String::with_capacity(26);
    crate::time::push_clf_time(&mut time, ids.time_ms);
    let mut identity = json!({ "sourceIp": &*cx.source_ip });
    if let Some(agent) = &cx.user_agent {
        identity["userAgent"] = Value::from(&**agent);
    }
    if let Some(iam) = &cx.iam {
        identity["accessKey"] = Value::from(iam.access_key.as_str());
        identity["accountId"] = Value::from(iam.account_id.as_str());
        identity["caller"] = Value::from(iam.caller.as_str());
        identity["user"] = Value::from(iam.user.as_str());
        identity["userArn"] = Value::from(iam.user_arn.as_str());
    }
    if let Some(key) = &cx.api_key {
        identity["apiKey"] = Value::from(key.value.as_str());
        identity["apiKeyId"] = Value::from(key.id.as_str());
    }
    let mut value = json!({
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": ids.extended_request_id,
        "requestTime": time,
        "messageDirection": "IN",
        "stage": &*cx.stage,
        "connectedAt": cx.connected_at_ms,
        "requestTimeEpoch": ids.time_ms,
        "identity": identity,
        "requestId": ids.request_id,
        "domainName": &*cx.domain_name,
        "connectionId": &*cx.connection_id,
        "apiId": &*cx.api_id,
    });
    if let Some(authorizer) = &cx.authorizer {
        value["authorizer"] = Value::Object((**authorizer).clone());
    }
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}

/// `headers` (last values) and `multiValueHeaders` of a request.
fn header_maps(headers: &HeaderMap) -> (Map<String, Value>, Map<String, Value>) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        single.insert(name.as_str().to_owned(), Value::from(text.clone()));
        match multi.get_mut(name.as_str()) {
            Some(Value::Array(values)) => values.push(Value::from(text)),
            _ => {
                multi.insert(name.as_str().to_owned(), json!([text]));
            }
        }
    }
    (single, multi)
}

/// The handshake's `headers`, `multiValueHeaders` and (when it has a query string)
/// `queryStringParameters` and `multiValueQueryStringParameters`, into `event`.
fn insert_request(event: &mut Map<String, Value>, headers: &HeaderMap, raw_query: &str) {
    let (single, multi) = header_maps(headers);
    event.insert("headers".into(), Value::Object(single));
    event.insert("multiValueHeaders".into(), Value::Object(multi));
    let query = parse_query(raw_query);
    if !query.is_empty() {
        let mut last = Map::new();
        let mut all: Map<String, Value> = Map::new();
        for (name, value) in query {
            last.insert(name.to_string(), Value::from(value.to_string()));
            match all.get_mut(&*name) {
                Some(Value::Array(values)) => values.push(Value::from(value.to_string())),
                _ => {
                    all.insert(name.to_string(), json!([value.to_string()]));
                }
            }
        }
        event.insert("queryStringParameters".into(), Value::Object(last));
        event.insert("multiValueQueryStringParameters".into(), Value::Object(all));
    }
}

/// `$connect`'s event: the handshake's headers and query string.
pub fn connect(cx: &ConnectionContext, ids: EventIds<'_>, headers: &HeaderMap, raw_query: &str) -> Vec<u8> {
    let mut event = Map::new();
    insert_request(&mut event, headers, raw_query);
    event.insert("requestContext".into(), Value::Object(request_context(cx, "$connect", "CONNECT", ids)));
    event.insert("isBase64Encoded".into(), Value::Bool(false));
    Value::Object(event).to_string().into_bytes()
}

/// A `$connect` Lambda REQUEST authorizer's event ("Control access to WebSocket APIs with AWS
/// Lambda REQUEST authorizers"): `type`, `methodArn` (`.../{stage}/$connect`, no HTTP method),
/// the handshake's headers and query string, the stage's variables and `$connect`'s
/// `requestContext` (its `connectionId` the connection's to be).
pub fn authorizer_request(
    cx: &ConnectionContext,
    ids: EventIds<'_>,
    headers: &HeaderMap,
    raw_query: &str,
    method_arn: &str,
    stage_variables: &[(Box<str>, Box<str>)],
) -> Vec<u8> {
    let mut event = Map::new();
    event.insert("type".into(), Value::from("REQUEST"));
    event.insert("methodArn".into(), Value::from(method_arn));
    insert_request(&mut event, headers, raw_query);
    let variables: Map<String, Value> =
        stage_variables.iter().map(|(k, v)| (k.to_string(), Value::from(&**v))).collect();
    event.insert("stageVariables".into(), Value::Object(variables));
    event.insert("requestContext".into(), Value::Object(request_context(cx, "$connect", "CONNECT", ids)));
    Value::Object(event).to_string().into_bytes()
}

/// A message's event: its route, its id and its body (text frames only reach routes).
pub fn message(cx: &ConnectionContext, ids: EventIds<'_>, route_key: &str, message_id: &str, body: &str) -> Vec<u8> {
    let mut context = request_context(cx, route_key, "MESSAGE", ids);
    context.insert("messageId".into(), Value::from(message_id));
    json!({
        "requestContext": context,
        "body": body,
        "isBase64Encoded": false,
    })
    .to_string()
    .into_bytes()
}

/// `$disconnect`'s event: how the connection ended, and the headers AWS sends with it.
pub fn disconnect(cx: &ConnectionContext, ids: EventIds<'_>, how: &Disconnect) -> Vec<u8> {
    let mut context = request_context(cx, "$disconnect", "DISCONNECT", ids);
    context.insert("disconnectStatusCode".into(), Value::from(how.status_code));
    context.insert("disconnectReason".into(), Value::from(how.reason.as_str()));
    let headers = json!({
        "Host": &*cx.domain_name,
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    });
    let multi: Map<String, Value> = headers
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), json!([v])))
        .collect();
    json!({
        "headers": headers,
        "multiValueHeaders": multi,
        "requestContext": context,
        "isBase64Encoded": false,
    })
    .to_string()
    .into_bytes()
}

/// AWS's error frame, spaced as AWS sends it:
/// `{"message": "Forbidden", "connectionId":"...", "requestId":"..."}`.
pub fn error_frame(message: &str, connection_id: &str, request_id: &str) -> String {
    format!(
        "{{\"message\": {}, \"connectionId\":{}, \"requestId\":{}}}",
        Value::from(message),
        Value::from(connection_id),
        Value::from(request_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> ConnectionContext {
        ConnectionContext {
            api_id: "abcd1234".into(),
            stage: "prod".into(),
            domain_name: "abcd1234.execute-api.us-east-1.amazonaws.com".into(),
            connection_id: "BFaT_fALIAMCKug=".into(),
            connected_at_ms: 1_707_502_303_419,
            source_ip: "192.0.2.1".into(),
            user_agent: Some("test-agent".into()),
            iam: None,
            authorizer: None,
            api_key: None,
        }
    }

    const IDS: EventIds<'static> = EventIds {
        request_id: "ABCD1234reqid0A=",
        extended_request_id: "ABCD1234reqid0A=",
        time_ms: 1_707_502_303_420,
    };

    fn parsed(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    fn assert_common(context: &Value, route_key: &str, event_type: &str) {
        assert_eq!(context["routeKey"], route_key);
        assert_eq!(context["eventType"], event_type);
        assert_eq!(context["messageDirection"], "IN");
        assert_eq!(context["stage"], "prod");
        assert_eq!(context["apiId"], "abcd1234");
        assert_eq!(context["connectionId"], "BFaT_fALIAMCKug=");
        assert_eq!(context["connectedAt"], 1_707_502_303_419u64);
        assert_eq!(context["requestTimeEpoch"], 1_707_502_303_420u64);
        assert_eq!(context["requestTime"], "09/Feb/2024:18:11:43 +0000");
        assert_eq!(context["requestId"], IDS.request_id);
        assert_eq!(context["extendedRequestId"], IDS.extended_request_id);
        assert_eq!(context["domainName"], "abcd1234.execute-api.us-east-1.amazonaws.com");
        assert_eq!(context["identity"], json!({"sourceIp": "192.0.2.1", "userAgent": "test-agent"}));
    }

    #[test]
    fn the_connect_event() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "abcd1234.execute-api.us-east-1.amazonaws.com".parse().unwrap());
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        let event = parsed(connect(&cx(), IDS, &headers, "token=t1&room=a&room=b%20c"));
        assert_common(&event["requestContext"], "$connect", "CONNECT");
        assert!(event["requestContext"].get("messageId").is_none());
        assert_eq!(event["headers"]["x-multi"], "b");
        assert_eq!(event["multiValueHeaders"]["x-multi"], json!(["a", "b"]));
        assert_eq!(event["queryStringParameters"], json!({"token": "t1", "room": "b c"}));
        assert_eq!(event["multiValueQueryStringParameters"]["room"], json!(["a", "b c"]));
        assert_eq!(event["isBase64Encoded"], false);
        let without_query = parsed(connect(&cx(), IDS, &headers, ""));
        assert!(without_query.get("queryStringParameters").is_none());
    }

    #[test]
    fn an_iam_signer_is_in_every_event_s_identity() {
        let signed = ConnectionContext {
            iam: Some(crate::auth::iam::identity_of(
                "AKIAEXAMPLE",
                "arn:aws:iam::123456789012:user/alice",
                "123456789012",
            )),
            ..cx()
        };
        let event = parsed(message(&signed, IDS, "$default", "m", "x"));
        let identity = &event["requestContext"]["identity"];
        assert_eq!(identity["accessKey"], "AKIAEXAMPLE");
        assert_eq!(identity["accountId"], "123456789012");
        assert_eq!(identity["userArn"], "arn:aws:iam::123456789012:user/alice");
        assert!(identity["caller"].as_str().is_some_and(|c| c.starts_with("AIDA")));
        assert_eq!(identity["sourceIp"], "192.0.2.1");
    }

    #[test]
    fn the_message_event() {
        let event = parsed(message(&cx(), IDS, "sendmessage", "AAAAmessageid0A=", r#"{"action":"sendmessage"}"#));
        assert_common(&event["requestContext"], "sendmessage", "MESSAGE");
        assert_eq!(event["requestContext"]["messageId"], "AAAAmessageid0A=");
        assert_eq!(event["body"], r#"{"action":"sendmessage"}"#);
        assert_eq!(event["isBase64Encoded"], false);
        assert!(event.get("headers").is_none());
    }

    #[test]
    fn the_disconnect_event() {
        let how = Disconnect::client_closed(Some(1000), "bye");
        let event = parsed(disconnect(&cx(), IDS, &how));
        let context = &event["requestContext"];
        assert_common(context, "$disconnect", "DISCONNECT");
        assert_eq!(context["disconnectStatusCode"], 1000);
        assert_eq!(
            context["disconnectReason"],
            "Client-side close frame status code '1000' (NORMAL_CLOSURE) - custom reason: bye"
        );
        assert_eq!(event["headers"]["Host"], "abcd1234.execute-api.us-east-1.amazonaws.com");
        assert_eq!(Disconnect::client_closed(None, "").status_code, 1005);
    }

    #[test]
    fn the_request_authorizer_event() {
        let mut headers = HeaderMap::new();
        headers.insert("auth", "secret-token".parse().unwrap());
        let arn = "arn:aws:execute-api:us-east-1:123456789012:abcd1234/prod/$connect";
        let variables = [("realm".into(), "chat".into())];
        let event = parsed(authorizer_request(&cx(), IDS, &headers, "token=t1", arn, &variables));
        assert_eq!(event["type"], "REQUEST");
        assert_eq!(event["methodArn"], arn);
        assert_eq!(event["headers"]["auth"], "secret-token");
        assert_eq!(event["multiValueHeaders"]["auth"], json!(["secret-token"]));
        assert_eq!(event["queryStringParameters"], json!({"token": "t1"}));
        assert_eq!(event["stageVariables"], json!({"realm": "chat"}));
        assert_common(&event["requestContext"], "$connect", "CONNECT");
        assert!(event.get("isBase64Encoded").is_none());
        assert!(event["requestContext"].get("authorizer").is_none());
    }

    #[test]
    fn a_lambda_grant_is_every_later_event_s_authorizer() {
        let mut context = Map::new();
        context.insert("room".into(), json!("lobby"));
        context.insert("level".into(), json!(3));
        context.insert("admin".into(), json!(true));
        let granted = Granted::Lambda {
            principal_id: Some("user-7".into()),
            context,
            usage_identifier_key: None,
            latency_ms: 12,
        };
        let authorized = ConnectionContext {
            authorizer: authorizer_context(&granted),
            ..cx()
        };
        let event = parsed(message(&authorized, IDS, "$default", "m", "x"));
        assert_eq!(
            event["requestContext"]["authorizer"],
            json!({"room": "lobby", "level": "3", "admin": "true", "principalId": "user-7", "integrationLatency": 12})
        );
        let event = parsed(disconnect(&authorized, IDS, &Disconnect::abnormal()));
        assert_eq!(event["requestContext"]["authorizer"]["principalId"], "user-7");
        assert!(authorizer_context(&Granted::Nothing).is_none());
    }

    #[test]
    fn error_frames_as_aws_spaces_them() {
        assert_eq!(
            error_frame("Forbidden", "c=", "r="),
            r#"{"message": "Forbidden", "connectionId":"c=", "requestId":"r="}"#
        );
    }
}
