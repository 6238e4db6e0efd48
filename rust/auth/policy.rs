//! IAM policy documents, as API Gateway evaluates them for `execute-api:Invoke`: the policies a
//! Lambda authorizer returns, principals' identity policies (`AWS_IAM` routes) and REST APIs'
//! resource policies.
//!
//! Evaluation follows "Policy evaluation logic" in the IAM user guide: an explicit `Deny` that
//! matches wins; else an `Allow` that matches allows; else the request is implicitly denied.
//! `Action` names match case-insensitively, `Resource` ARNs case-sensitively; both take `*`
//! (any run of characters, `/` included) and `?` (one character).

use std::net::IpAddr;

use serde_json::Value;

/// What a policy says of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A statement allows it and none denies it.
    Allow,
    /// A statement denies it: nothing else can allow it.
    Deny,
    /// No statement covers it.
    Implicit,
}

/// What a statement is matched against.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `execute-api:Invoke`.
    pub action: &'a str,
    /// `arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/PATH`.
    pub resource: &'a str,
    /// The caller's ARN; None for an anonymous caller.
    pub principal: Option<&'a str>,
    /// The caller's account, for principals named by account id.
    pub principal_account: Option<&'a str>,
    pub source_ip: IpAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    allow: bool,
    /// (patterns, negated: `NotAction`)
    actions: (Vec<String>, bool),
    resources: (Vec<String>, bool),
    /// None: no `Principal` element (identity and authorizer policies).
    principals: Option<Vec<String>>,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    operator: Operator,
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    IpAddress,
    NotIpAddress,
    StringEquals,
    StringNotEquals,
    StringLike,
    StringNotLike,
}

impl Policy {
    /// Parse a policy document (an object, or its JSON text as authorizers sometimes return it).
    pub fn parse(document: &Value) -> Result<Policy, String> {
        let parsed;
        let document = match document {
            Value::String(text) => {
                parsed = serde_json::from_str::<Value>(text).map_err(|e| format!("policy is not JSON: {e}"))?;
                &parsed
            }
            other => other,
        };
        let Some(object) = document.as_object() else {
            return Err("a policy document is a JSON object".into());
        };
        let statements = match object.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
            Some(item @ Value::Object(_)) => vec![item],
            Some(_) => return Err("Statement must be an object or a list of objects".into()),
            None => return Err("the policy has no Statement".into()),
        };
        let statements = statements
            .into_iter()
            .enumerate()
            .map(|(i, s)| Statement::parse(s).map_err(|e| format!("Statement[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Policy { statements })
    }

    pub fn evaluate(&self, request: &Request<'_>) -> Verdict {
        let mut allowed = false;
        for statement in &self.statements {
            if statement.matches(request) {
                if !statement.allow {
                    return Verdict::Deny;
                }
                allowed = true;
            }
        }
        if allowed {
            Verdict::Allow
        } else {
            Verdict::Implicit
        }
    }
}

fn strings(value: &Value, what: &str) -> Result<Vec<String>, String> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| format!("{what} must hold strings")))
            .collect(),
        _ => Err(format!("{what} must be a string or a list of strings")),
    }
}

fn either(object: &serde_json::Map<String, Value>, name: &str) -> Result<(Vec<String>, bool), String> {
    let not = format!("Not{name}");
    match (object.get(name), object.get(&not)) {
        (Some(v), None) => Ok((strings(v, name)?, false)),
        (None, Some(v)) => Ok((strings(v, &not)?, true)),
        (Some(_), Some(_)) => Err(format!("{name} and {not} together")),
        (None, None) => Err(format!("no {name}")),
    }
}

impl Statement {
    fn parse(value: &Value) -> Result<Statement, String> {
        let Some(object) = value.as_object() else {
            return Err("not an object".into());
        };
        let allow = match object.get("Effect").and_then(Value::as_str) {
            Some("Allow") => true,
            Some("Deny") => false,
            _ => return Err("Effect must be Allow or Deny".into()),
        };
        let principals = match object.get("Principal") {
            None => None,
            Some(Value::String(s)) if s == "*" => Some(vec!["*".to_owned()]),
            Some(Value::Object(map)) => {
                let mut out = Vec::new();
                for (kind, names) in map {
                    if kind != "AWS" {
                        return Err(format!("Principal {kind:?} is not supported (only AWS)"));
                    }
                    out.extend(strings(names, "Principal.AWS")?);
                }
                Some(out)
            }
            Some(_) => return Err("Principal must be \"*\" or {\"AWS\": ...}".into()),
        };
        if object.contains_key("NotPrincipal") {
            return Err("NotPrincipal is not supported".into());
        }
        let mut conditions = Vec::new();
        if let Some(block) = object.get("Condition") {
            let Some(block) = block.as_object() else {
                return Err("Condition must be an object".into());
            };
            for (operator, tests) in block {
                let operator = match operator.as_str() {
                    "IpAddress" => Operator::IpAddress,
                    "NotIpAddress" => Operator::NotIpAddress,
                    "StringEquals" => Operator::StringEquals,
                    "StringNotEquals" => Operator::StringNotEquals,
                    "StringLike" => Operator::StringLike,
                    "StringNotLike" => Operator::StringNotLike,
                    other => return Err(format!("condition operator {other:?} is not supported")),
                };
                let Some(tests) = tests.as_object() else {
                    return Err("a condition maps keys to values".into());
                };
                for (key, values) in tests {
                    let values = strings(values, key)?;
                    if matches!(operator, Operator::IpAddress | Operator::NotIpAddress) {
                        for v in &values {
                            parse_cidr(v).ok_or_else(|| format!("{v:?} is not an IP address or CIDR block"))?;
                        }
                    }
                    conditions.push(Condition {
                        operator,
                        key: key.to_ascii_lowercase(),
                        values,
                    });
                }
            }
        }
        Ok(Statement {
            allow,
            actions: either(object, "Action")?,
            resources: either(object, "Resource")?,
            principals,
            conditions,
        })
    }

    fn matches(&self, request: &Request<'_>) -> bool {
        let (actions, not_action) = &self.actions;
        if actions.iter().any(|a| glob(&a.to_ascii_lowercase(), &request.action.to_ascii_lowercase())) == *not_action {
            return false;
        }
        let (resources, not_resource) = &self.resources;
        if resources.iter().any(|r| glob(r, request.resource)) == *not_resource {
            return false;
        }
        if let Some(principals) = &self.principals {
            if !principals.iter().any(|p| principal_matches(p, request)) {
                return false;
            }
        }
        self.conditions.iter().all(|c| c.holds(request))
    }
}

fn principal_matches(pattern: &str, request: &Request<'_>) -> bool {
    if pattern == "*" {
        return true;
    }
    let (Some(arn), account) = (request.principal, request.principal_account) else {
        return false;
    };
    // An account id, or its root ARN, names every principal of the account.
    let root = pattern
        .strip_prefix("arn:aws:iam::")
        .and_then(|rest| rest.strip_suffix(":root"))
        .unwrap_or(pattern);
    if root.len() == 12 && root.bytes().all(|b| b.is_ascii_digit()) {
        return account == Some(root);
    }
    glob(pattern, arn)
}

impl Condition {
    fn holds(&self, request: &Request<'_>) -> bool {
        let ip = request.source_ip.to_string();
        let value = match self.key.as_str() {
            "aws:sourceip" => Some(ip.as_str()),
            "aws:principalarn" | "aws:userid" => request.principal,
            "aws:principalaccount" => request.principal_account,
            _ => None,
        };
        match self.operator {
            Operator::IpAddress => self.values.iter().any(|v| in_cidr(v, request.source_ip)),
            Operator::NotIpAddress => !self.values.iter().any(|v| in_cidr(v, request.source_ip)),
            Operator::StringEquals => value.is_some_and(|x| self.values.iter().any(|v| v == x)),
            Operator::StringNotEquals => !value.is_some_and(|x| self.values.iter().any(|v| v == x)),
            Operator::StringLike => value.is_some_and(|x| self.values.iter().any(|v| glob(v, x))),
            Operator::StringNotLike => !value.is_some_and(|x| self.values.iter().any(|v| glob(v, x))),
        }
    }
}

fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let addr: IpAddr = addr.trim().parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((addr, bits))
}

fn in_cidr(cidr: &str, ip: IpAddr) -> bool {
    let Some((net, bits)) = parse_cidr(cidr) else {
        return false;
    };
    let ip = match (net, ip) {
        (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        _ => ip,
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// IAM's wildcard match: `*` any run of characters (`/` and `:` included), `?` one character.
/// Iterative with one backtrack point, so it is linear in practice and never recursive.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/pets/7";

    fn request(resource: &str) -> Request<'_> {
        Request {
            action: "execute-api:Invoke",
            resource,
            principal: Some("arn:aws:iam::123456789012:user/alice"),
            principal_account: Some("123456789012"),
            source_ip: "192.0.2.10".parse().unwrap(),
        }
    }

    fn policy(statements: Value) -> Policy {
        Policy::parse(&json!({"Version": "2012-10-17", "Statement": statements})).unwrap()
    }

    #[test]
    fn an_explicit_deny_wins_over_any_allow() {
        let p = policy(json!([
            {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"},
            {"Effect": "Deny", "Action": "execute-api:*", "Resource": "arn:aws:execute-api:*:*:abc123/prod/GET/pets/*"},
        ]));
        assert_eq!(p.evaluate(&request(ARN)), Verdict::Deny);
        let other = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/POST/pets";
        assert_eq!(p.evaluate(&request(other)), Verdict::Allow);
    }

    #[test]
    fn nothing_matching_is_an_implicit_deny() {
        let p = policy(json!({"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/"}));
        assert_eq!(p.evaluate(&request(ARN)), Verdict::Implicit);
    }

    #[test]
    fn actions_ignore_case_and_not_action_inverts() {
        let p = policy(json!({"Effect": "Allow", "Action": ["EXECUTE-API:invoke"], "Resource": [ARN]}));
        assert_eq!(p.evaluate(&request(ARN)), Verdict::Allow);
        let p = policy(json!({"Effect": "Deny", "NotAction": "execute-api:ManageConnections", "Resource": "*"}));
        assert_eq!(p.evaluate(&request(ARN)), Verdict::Deny);
    }

    #[test]
    fn principals_by_arn_account_and_star() {
        for (principal, verdict) in [
            (json!("*"), Verdict::Allow),
            (json!({"AWS": "arn:aws:iam::123456789012:user/alice"}), Verdict::Allow),
            (json!({"AWS": ["123456789012"]}), Verdict::Allow),
            (json!({"AWS": "arn:aws:iam::123456789012:root"}), Verdict::Allow),
            (json!({"AWS": "arn:aws:iam::999999999999:root"}), Verdict::Implicit),
            (json!({"AWS": "arn:aws:iam::123456789012:user/bob"}), Verdict::Implicit),
        ] {
            let p = policy(json!({"Effect": "Allow", "Principal": principal, "Action": "execute-api:Invoke", "Resource": "*"}));
            assert_eq!(p.evaluate(&request(ARN)), verdict, "{principal}");
        }
        let anonymous = Request {
            principal: None,
            principal_account: None,
            ..request(ARN)
        };
        let p = policy(json!({"Effect": "Allow", "Principal": {"AWS": "123456789012"}, "Action": "*", "Resource": "*"}));
        assert_eq!(p.evaluate(&anonymous), Verdict::Implicit);
    }

    #[test]
    fn source_ip_conditions() {
        let p = policy(json!([
            {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*",
             "Condition": {"NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32"]}}},
        ]));
        assert_eq!(p.evaluate(&request(ARN)), Verdict::Allow);
        let outside = Request {
            source_ip: "198.51.100.1".parse().unwrap(),
            ..request(ARN)
        };
        assert_eq!(p.evaluate(&outside), Verdict::Deny);
        let mapped = Request {
            source_ip: "::ffff:192.0.2.7".parse().unwrap(),
            ..request(ARN)
        };
        assert_eq!(p.evaluate(&mapped), Verdict::Allow);
    }

    #[test]
    fn malformed_documents_are_refused_with_a_reason() {
        for (document, reason) in [
            (json!([]), "object"),
            (json!({"Statement": 3}), "Statement"),
            (json!({"Statement": {"Effect": "Maybe", "Action": "*", "Resource": "*"}}), "Effect"),
            (json!({"Statement": {"Effect": "Allow", "Resource": "*"}}), "no Action"),
            (json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"DateLessThan": {}}}}), "DateLessThan"),
            (json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "nope"}}}}), "CIDR"),
        ] {
            let error = Policy::parse(&document).unwrap_err();
            assert!(error.contains(reason), "{document}: {error}");
        }
        // Authorizers may return the document as JSON text.
        let text = json!(r#"{"Statement":[{"Effect":"Allow","Action":"execute-api:Invoke","Resource":"*"}]}"#);
        assert_eq!(Policy::parse(&text).unwrap().evaluate(&request(ARN)), Verdict::Allow);
    }

    #[test]
    fn glob_spans_slashes_and_question_marks_take_one() {
        assert!(glob("arn:*:abc123/*/GET/*", ARN));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(!glob("abc123/prod/GET/pets", "abc123/prod/GET/pets/7"));
    }

    fn reference_glob(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, _) => t.is_empty(),
            (Some(b'*'), _) => reference_glob(&p[1..], t) || (!t.is_empty() && reference_glob(p, &t[1..])),
            (Some(b'?'), Some(_)) => reference_glob(&p[1..], &t[1..]),
            (Some(c), Some(d)) if c == d => reference_glob(&p[1..], &t[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_the_recursive_definition(p in "[ab*?/]{0,8}", t in "[ab/]{0,10}") {
            prop_assert_eq!(glob(&p, &t), reference_glob(p.as_bytes(), t.as_bytes()));
        }

        #[test]
        fn any_document_parses_or_is_refused_without_panicking(text in "\\PC{0,200}") {
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                if let Ok(p) = Policy::parse(&value) {
                    let _ = p.evaluate(&request(ARN));
                }
            }
        }
    }
}
