//! The JSONPath API Gateway's parameter mappings select body values with (HTTP APIs'
//! `$request.body.NAME` / `$response.body.NAME`, "Transform API requests and responses for HTTP
//! APIs in API Gateway"): member names (`.name`, `['name']`), array indexes (`[0]`) and wildcards
//! (`.*`, `[*]`). Recursive descent (`..name`) and filter expressions (`?(...)`) are refused, as
//! AWS refuses them.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Member(Box<str>),
    Index(usize),
    Wildcard,
}

/// A compiled path, relative to the document's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parse the steps after the root: `""` (the whole document), `.a.b`, `.items[0].id`,
    /// `['a b']`, `.*`. An optional leading `$` is the root itself.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let bad = |why: &str| format!("{text:?}: {why}");
        let mut rest = text.strip_prefix('$').unwrap_or(text);
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                if after.starts_with('.') {
                    return Err(bad("recursive descent (..) is not supported"));
                }
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() {
                    return Err(bad("a member name is empty"));
                }
                steps.push(if name == "*" {
                    Step::Wildcard
                } else {
                    Step::Member(name.into())
                });
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let (step, len) =
                    bracket(after).ok_or_else(|| bad("a bracket is not [n], [*] or ['name']"))?;
                steps.push(step);
                rest = &after[len..];
            } else {
                return Err(bad("expected . or ["));
            }
        }
        Ok(JsonPath { steps })
    }

    /// Whether the path can select more than one value.
    pub fn is_multiple(&self) -> bool {
        self.steps.contains(&Step::Wildcard)
    }

    /// The values the path selects in `root`, in document order.
    pub fn select<'v>(&self, root: &'v Value) -> Vec<&'v Value> {
        let mut current = vec![root];
        for step in &self.steps {
            let mut next = Vec::with_capacity(current.len());
            for value in current {
                match (step, value) {
                    (Step::Member(name), Value::Object(map)) => next.extend(map.get(&**name)),
                    (Step::Index(i), Value::Array(items)) => next.extend(items.get(*i)),
                    (Step::Wildcard, Value::Object(map)) => next.extend(map.values()),
                    (Step::Wildcard, Value::Array(items)) => next.extend(items.iter()),
                    _ => {}
                }
            }
            current = next;
        }
        current
    }

    /// The selection as a mapping's text: a string as it is, any other single value as JSON, the
    /// values of a wildcard as a JSON array; None when nothing is selected.
    pub fn text(&self, root: &Value) -> Option<String> {
        let found = self.select(root);
        if self.is_multiple() {
            return (!found.is_empty())
                .then(|| Value::Array(found.into_iter().cloned().collect()).to_string());
        }
        match found.first()? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// `n]`, `*]`, `'name']` or `"name"]` -> (the step, bytes taken including the `]`).
fn bracket(after: &str) -> Option<(Step, usize)> {
    let quote = after.chars().next()?;
    if quote == '\'' || quote == '"' {
        let close = after[1..].find(quote)? + 1;
        if after.as_bytes().get(close + 1) != Some(&b']') {
            return None;
        }
        return Some((Step::Member(after[1..close].into()), close + 2));
    }
    let close = after.find(']')?;
    let inner = after[..close].trim();
    let step = if inner == "*" {
        Step::Wildcard
    } else if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
        Step::Index(inner.parse().ok()?)
    } else {
        return None;
    };
    Some((step, close + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(path: &str, doc: &Value) -> Option<String> {
        JsonPath::parse(path).unwrap().text(doc)
    }

    #[test]
    fn members_indexes_and_quoted_names() {
        let doc =
            json!({"a": {"b": "x", "n": 5, "t": true}, "items": [{"id": 1}, {"id": "two"}], "a b": null});
        assert_eq!(text(".a.b", &doc).as_deref(), Some("x"));
        assert_eq!(text("$.a.n", &doc).as_deref(), Some("5"));
        assert_eq!(text(".a.t", &doc).as_deref(), Some("true"));
        assert_eq!(text(".items[1].id", &doc).as_deref(), Some("two"));
        assert_eq!(text("['a b']", &doc).as_deref(), Some("null"));
        assert_eq!(text(".a", &doc).as_deref(), Some(r#"{"b":"x","n":5,"t":true}"#));
        assert_eq!(text("", &doc).unwrap().len(), doc.to_string().len());
        assert_eq!(text(".missing", &doc), None);
        assert_eq!(text(".items[5]", &doc), None);
        assert_eq!(text(".a.b.c", &doc), None);
    }

    #[test]
    fn wildcards_select_arrays() {
        let doc = json!({"items": [{"id": 1}, {"id": 2}], "empty": []});
        assert_eq!(text(".items[*].id", &doc).as_deref(), Some("[1,2]"));
        assert_eq!(text(".items.*.id", &doc).as_deref(), Some("[1,2]"));
        assert_eq!(text(".empty[*]", &doc), None);
    }

    #[test]
    fn what_aws_refuses_is_refused() {
        for path in ["..a", ".a..b", ".a[?(@.x)]", ".a[", ".a['x]", ".", "a", ".a[-1]"] {
            assert!(JsonPath::parse(path).is_err(), "{path}");
        }
    }
}
