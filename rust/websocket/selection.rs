//! A message's route: the API's `routeSelectionExpression` evaluated against the message
//! ("Working with routes for WebSocket APIs" in the API Gateway developer guide):
//! `$request.body.PATH` (a JSONPath into the JSON body), `${request.body.PATH}` parts
//! concatenated with literal text (`${request.body.action}-${request.body.version}`), or a
//! literal key. A path that selects nothing contributes `""`; a body that is not JSON selects no
//! key at all (the message goes to `$default`).
//!
//! Template selection expressions ("Template selection expressions" in "Data transformations for
//! WebSocket APIs") are parsed by the same rules: an integration's reads the request body, an
//! integration response's also `integration.response.statuscode`, `.header.NAME` and
//! `.multivalueheader.NAME`. `\$` is a literal `$` (`\$default` selects the `$default` template).

use crate::jsonpath::JsonPath;
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Body(JsonPath),
    Status,
    Header(HeaderName),
    MultiHeader(HeaderName),
}

/// The integration's answer, as an integration response's template selection reads it.
pub struct AnswerView<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSelection {
    parts: Vec<Part>,
}

const BODY: &str = "request.body";

const RESPONSE: &str = "integration.response.";

/// `request.body.PATH` (without the leading `$`) -> its path; with `response`, also
/// `integration.response.*`.
fn reference(reference: &str, response: bool) -> Result<Part, String> {
    if response {
        if let Some(what) = reference.strip_prefix(RESPONSE) {
            let header = |name: &str| {
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("${reference}: {name:?} is not a header name"))
            };
            if what == "statuscode" {
                return Ok(Part::Status);
            }
            if let Some(name) = what.strip_prefix("header.") {
                return Ok(Part::Header(header(name)?));
            }
            if let Some(name) = what.strip_prefix("multivalueheader.") {
                return Ok(Part::MultiHeader(header(name)?));
            }
            return Err(format!(
                "${reference}: expected integration.response.statuscode, .header.NAME or .multivalueheader.NAME"
            ));
        }
    }
    let Some(path) = reference.strip_prefix(BODY) else {
        return Err(format!("${reference}: only $request.body.* selects here"));
    };
    if !(path.is_empty() || path.starts_with('.') || path.starts_with('[')) {
        return Err(format!("${reference}: expected $request.body.NAME"));
    }
    Ok(Part::Body(JsonPath::parse(path)?))
}

/// Literal text, `\$` read as `$`.
fn literal(text: &str) -> Part {
    Part::Literal(text.replace("\\$", "$").into())
}

fn parse(expression: &str, response: bool) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    if !expression.contains("${") {
        match expression.strip_prefix('$') {
            Some(r) if r.starts_with("request.") || (response && r.starts_with(RESPONSE)) => {
                parts.push(reference(r, response)?)
            }
            _ => parts.push(literal(expression)),
        }
        return Ok(parts);
    }
    let mut rest = expression;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            parts.push(literal(&rest[..start]));
        }
        let Some(end) = rest[start..].find('}') else {
            return Err(format!("{expression:?}: an unterminated ${{...}}"));
        };
        parts.push(reference(&rest[start + 2..start + end], response)?);
        rest = &rest[start + end + 1..];
    }
    if !rest.is_empty() {
        parts.push(literal(rest));
    }
    Ok(parts)
}

/// The key `parts` give for `message` (and an integration's answer); None when they read the
/// body and the body is not JSON.
fn evaluate(parts: &[Part], message: &str, answer: Option<&AnswerView<'_>>) -> Option<String> {
    let needs_body = parts.iter().any(|p| matches!(p, Part::Body(_)));
    let body: Option<Value> = if needs_body { Some(serde_json::from_str(message).ok()?) } else { None };
    let mut key = String::new();
    for part in parts {
        match part {
            Part::Literal(text) => key.push_str(text),
            Part::Body(path) => key.push_str(&body.as_ref().and_then(|b| path.text(b)).unwrap_or_default()),
            Part::Status => {
                if let Some(answer) = answer {
                    key.push_str(answer.status.as_str());
                }
            }
            Part::Header(name) => {
                if let Some(value) = answer.and_then(|a| a.headers.get_all(name).iter().last()) {
                    key.push_str(&String::from_utf8_lossy(value.as_bytes()));
                }
            }
            Part::MultiHeader(name) => {
                let values: Vec<String> = answer
                    .into_iter()
                    .flat_map(|a| a.headers.get_all(name).iter())
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                key.push_str(&values.join(","));
            }
        }
    }
    Some(key)
}

impl RouteSelection {
    pub fn parse(expression: &str) -> Result<RouteSelection, String> {
        Ok(RouteSelection {
            parts: parse(expression, false)?,
        })
    }

    /// The route key `message` selects; None when the expression reads the body and the body
    /// is not JSON.
    pub fn select(&self, message: &str) -> Option<String> {
        evaluate(&self.parts, message, None)
    }
}

/// A `templateSelectionExpression`: an integration's (the request body) or an integration
/// response's (also the integration's answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSelection {
    parts: Vec<Part>,
}

impl TemplateSelection {
    pub fn request(expression: &str) -> Result<TemplateSelection, String> {
        Ok(TemplateSelection {
            parts: parse(expression, false)?,
        })
    }

    pub fn response(expression: &str) -> Result<TemplateSelection, String> {
        Ok(TemplateSelection {
            parts: parse(expression, true)?,
        })
    }

    /// The template key; None when the expression reads a body that is not JSON.
    pub fn select(&self, message: &str, answer: Option<&AnswerView<'_>>) -> Option<String> {
        evaluate(&self.parts, message, answer)
    }
}

#[cfg(test)]
mod tests {
    use super::RouteSelection;

    fn select(expression: &str, message: &str) -> Option<String> {
        RouteSelection::parse(expression).unwrap().select(message)
    }

    #[test]
    fn a_member_of_the_body() {
        assert_eq!(select("$request.body.action", r#"{"action":"sendmessage","x":1}"#).as_deref(), Some("sendmessage"));
        assert_eq!(select("$request.body.message.type", r#"{"message":{"type":"join"}}"#).as_deref(), Some("join"));
        assert_eq!(select("$request.body.items[1]", r#"{"items":["a","b"]}"#).as_deref(), Some("b"));
        // A number is its JSON text.
        assert_eq!(select("$request.body.n", r#"{"n":42}"#).as_deref(), Some("42"));
    }

    #[test]
    fn nothing_selected_is_the_empty_key_and_not_json_is_none() {
        assert_eq!(select("$request.body.action", r#"{"other":1}"#).as_deref(), Some(""));
        assert_eq!(select("$request.body.action", "hello there"), None);
        assert_eq!(select("$request.body.action", ""), None);
    }

    #[test]
    fn concatenation() {
        let e = "${request.body.action}-${request.body.version}";
        assert_eq!(select(e, r#"{"action":"get","version":"v2"}"#).as_deref(), Some("get-v2"));
        assert_eq!(select(e, r#"{"action":"get"}"#).as_deref(), Some("get-"));
        assert_eq!(select("route:${request.body.a}!", r#"{"a":"x"}"#).as_deref(), Some("route:x!"));
    }

    #[test]
    fn a_literal_key_needs_no_json() {
        assert_eq!(select("$default", "not json").as_deref(), Some("$default"));
        assert_eq!(select("fixed", "{}").as_deref(), Some("fixed"));
    }

    #[test]
    fn template_selection_reads_the_answer_and_escapes() {
        use super::{AnswerView, TemplateSelection};
        let mut headers = http::HeaderMap::new();
        headers.append("x-kind", "a".parse().unwrap());
        headers.append("x-kind", "b".parse().unwrap());
        let answer = AnswerView {
            status: http::StatusCode::NOT_FOUND,
            headers: &headers,
        };
        let status = TemplateSelection::response("${integration.response.statuscode}").unwrap();
        assert_eq!(status.select("not json", Some(&answer)).as_deref(), Some("404"));
        let header = TemplateSelection::response("$integration.response.header.x-kind").unwrap();
        assert_eq!(header.select("", Some(&answer)).as_deref(), Some("b"));
        let multi = TemplateSelection::response("${integration.response.multivalueheader.x-kind}").unwrap();
        assert_eq!(multi.select("", Some(&answer)).as_deref(), Some("a,b"));
        let escaped = TemplateSelection::request("\\$default").unwrap();
        assert_eq!(escaped.select("not json", None).as_deref(), Some("$default"));
        let body = TemplateSelection::request("$request.body.action").unwrap();
        assert_eq!(body.select(r#"{"action":"x"}"#, None).as_deref(), Some("x"));
        // An integration's own expression cannot read an answer it does not have yet.
        assert!(TemplateSelection::request("${integration.response.statuscode}").is_err());
    }

    #[test]
    fn what_cannot_select_a_route() {
        assert!(RouteSelection::parse("$request.header.x").is_err());
        assert!(RouteSelection::parse("${request.body.a").is_err());
        assert!(RouteSelection::parse("$request.bodyx").is_err());
        assert!(RouteSelection::parse("$request.body..a").is_err());
    }
}
