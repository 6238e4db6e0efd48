//! A message's route: the API's `routeSelectionExpression` evaluated against the message
//! ("Working with routes for WebSocket APIs" in the API Gateway developer guide):
//! `$request.body.PATH` (a JSONPath into the JSON body), `${request.body.PATH}` parts
//! concatenated with literal text (`${request.body.action}-${request.body.version}`), or a
//! literal key. A path that selects nothing contributes `""`; a body that is not JSON selects no
//! key at all (the message goes to `$default`).

use crate::jsonpath::JsonPath;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Body(JsonPath),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSelection {
    parts: Vec<Part>,
}

const BODY: &str = "request.body";

/// `request.body.PATH` (without the leading `$`) -> its path.
fn body_path(reference: &str) -> Result<JsonPath, String> {
    let Some(path) = reference.strip_prefix(BODY) else {
        return Err(format!("${reference}: only $request.body.* selects a route"));
    };
    if !(path.is_empty() || path.starts_with('.') || path.starts_with('[')) {
        return Err(format!("${reference}: expected $request.body.NAME"));
    }
    JsonPath::parse(path)
}

impl RouteSelection {
    pub fn parse(expression: &str) -> Result<RouteSelection, String> {
        let mut parts = Vec::new();
        if !expression.contains("${") {
            match expression.strip_prefix('$') {
                Some(reference) if reference.starts_with("request.") => parts.push(Part::Body(body_path(reference)?)),
                _ => parts.push(Part::Literal(expression.into())),
            }
            return Ok(RouteSelection { parts });
        }
        let mut rest = expression;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].into()));
            }
            let Some(end) = rest[start..].find('}') else {
                return Err(format!("{expression:?}: an unterminated ${{...}}"));
            };
            parts.push(Part::Body(body_path(&rest[start + 2..start + end])?));
            rest = &rest[start + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.into()));
        }
        Ok(RouteSelection { parts })
    }

    /// The route key `message` selects; None when the expression reads the body and the body
    /// is not JSON.
    pub fn select(&self, message: &str) -> Option<String> {
        let needs_body = self.parts.iter().any(|p| matches!(p, Part::Body(_)));
        let body: Option<Value> = if needs_body { Some(serde_json::from_str(message).ok()?) } else { None };
        let mut key = String::new();
        for part in &self.parts {
            match (part, &body) {
                (Part::Literal(text), _) => key.push_str(text),
                (Part::Body(path), Some(body)) => key.push_str(&path.text(body).unwrap_or_default()),
                (Part::Body(_), None) => {}
            }
        }
        Some(key)
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
    fn what_cannot_select_a_route() {
        assert!(RouteSelection::parse("$request.header.x").is_err());
        assert!(RouteSelection::parse("${request.body.a").is_err());
        assert!(RouteSelection::parse("$request.bodyx").is_err());
        assert!(RouteSelection::parse("$request.body..a").is_err());
    }
}
