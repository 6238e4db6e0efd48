//! Route trie with Amazon API Gateway (HTTP API) matching semantics.
//!
//! Pure Rust, no PyO3. A route key is `"<METHOD> <path>"`; path segments are literals,
//! `{name}` (one non-empty segment) or a trailing `{name+}` (one or more segments, greedy).
//!
//! Lookup is a depth-first search with precedence literal > param > greedy at every level and
//! method-aware backtracking: a terminal node only matches when it has the request method
//! explicitly or `ANY` (explicit wins). The search uses an explicit stack whose depth is bounded
//! by the depth of the trie (the longest route), never by the length of the request path.

use ahash::RandomState;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The seven verbs AWS knows, plus `ANY` at index 7.
pub const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];
const ANY: usize = 7;
const NONE: u32 = u32::MAX;
/// Up to this many literal children are kept in a vector and scanned linearly.
const SMALL_LITERALS: usize = 8;

/// Index of a request method in the method table; `ANY` (7) for anything that is not one of
/// the seven verbs (such a request can only be served by an `ANY` route).
#[inline]
pub fn method_index(method: &str) -> usize {
    match method.as_bytes() {
        b"GET" => 0,
        b"POST" => 1,
        b"PUT" => 2,
        b"PATCH" => 3,
        b"DELETE" => 4,
        b"HEAD" => 5,
        b"OPTIONS" => 6,
        _ => ANY,
    }
}

/// A route key that could not be inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.key, self.reason)
    }
}

impl std::error::Error for RouteError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegKind<'a> {
    Literal(&'a str),
    Param(&'a str),
    Greedy(&'a str),
}

/// A parsed route key: method index and segments.
#[derive(Debug, Clone)]
struct ParsedKey<'a> {
    method: usize,
    segments: Vec<SegKind<'a>>,
}

fn parse_key(key: &str) -> Result<ParsedKey<'_>, String> {
    if key == "$default" {
        return Err(
            "`$default` is not a trie route (the gateway handles it as the fallback)".into(),
        );
    }
    let (method, path) = key
        .split_once(' ')
        .ok_or_else(|| "expected \"<METHOD> <path>\"".to_string())?;
    let method = METHODS
        .iter()
        .position(|m| *m == method)
        .ok_or_else(|| "unknown method".to_string())?;
    if !path.starts_with('/') {
        return Err("path must start with '/'".into());
    }
    if let Some(c) = path.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("path contains {c:?}"));
    }
    let mut segments = Vec::new();
    if path != "/" {
        let parts: Vec<&str> = path[1..].split('/').collect();
        let last = parts.len() - 1;
        let mut names: Vec<&str> = Vec::new();
        for (i, seg) in parts.iter().enumerate() {
            if seg.is_empty() {
                return Err("empty path segment".into());
            }
            let kind = if let Some(inner) = seg.strip_prefix('{') {
                let inner = inner
                    .strip_suffix('}')
                    .ok_or_else(|| format!("malformed path variable {seg:?}"))?;
                let (name, greedy) = match inner.strip_suffix('+') {
                    Some(n) => (n, true),
                    None => (inner, false),
                };
                if name.is_empty() || name.contains(['{', '}', '+']) {
                    return Err(format!("malformed path variable {seg:?}"));
                }
                if names.contains(&name) {
                    return Err(format!("duplicate path variable {name:?}"));
                }
                names.push(name);
                if greedy {
                    if i != last {
                        return Err(format!("greedy variable {seg:?} must be the last segment"));
                    }
                    SegKind::Greedy(name)
                } else {
                    SegKind::Param(name)
                }
            } else {
                if seg.contains(['{', '}']) {
                    return Err(format!("malformed path segment {seg:?}"));
                }
                SegKind::Literal(seg)
            };
            segments.push(kind);
        }
    }
    Ok(ParsedKey { method, segments })
}

#[derive(Debug, Clone)]
enum Literals {
    Small(Vec<(Box<str>, u32)>),
    Map(HashMap<Box<str>, u32, RandomState>),
}

impl Literals {
    #[inline]
    fn get(&self, seg: &str) -> Option<u32> {
        match self {
            Literals::Small(v) => v.iter().find(|(k, _)| &**k == seg).map(|(_, n)| *n),
            Literals::Map(m) => m.get(seg).copied(),
        }
    }

    fn insert(&mut self, seg: &str, node: u32) {
        match self {
            Literals::Small(v) if v.len() < SMALL_LITERALS => v.push((seg.into(), node)),
            Literals::Small(v) => {
                let mut m: HashMap<Box<str>, u32, RandomState> =
                    HashMap::with_capacity_and_hasher(v.len() * 2, RandomState::new());
                m.extend(v.drain(..));
                m.insert(seg.into(), node);
                *self = Literals::Map(m);
            }
            Literals::Map(m) => {
                m.insert(seg.into(), node);
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    literals: Literals,
    param: u32,
    greedy: u32,
    /// Method table (7 verbs + ANY) -> index into `Router::routes`.
    methods: [u32; 8],
}

impl Node {
    fn new() -> Self {
        Node {
            literals: Literals::Small(Vec::new()),
            param: NONE,
            greedy: NONE,
            methods: [NONE; 8],
        }
    }

    /// The route this node serves for `method` (explicit wins over ANY).
    #[inline]
    fn route_for(&self, method: usize) -> u32 {
        let explicit = self.methods[method];
        if explicit != NONE {
            explicit
        } else {
            self.methods[ANY]
        }
    }
}

/// One inserted route: the caller's id and the variable names by capture position.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub id: i64,
    pub key: Box<str>,
    pub param_names: Arc<[Box<str>]>,
}

/// A successful lookup: the route and the byte ranges of its captures inside the looked-up
/// path (in the order of `RouteEntry::param_names`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index into `Router::routes()`.
    pub route: u32,
    pub params: SmallVec<[(u32, u32); 4]>,
}

#[derive(Clone, Copy)]
struct Frame {
    node: u32,
    /// Start of the current segment; `> len` once every segment is consumed.
    pos: u32,
    /// End of the current segment (exclusive).
    end: u32,
    /// Next candidate to try: 0 literal, 1 param, 2 greedy, 3 exhausted.
    stage: u8,
    /// Number of captures when this frame was entered.
    nparams: u16,
}

/// The route trie.
#[derive(Debug, Clone)]
pub struct Router {
    nodes: Vec<Node>,
    routes: Vec<RouteEntry>,
    max_depth: usize,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    pub fn new() -> Self {
        Router {
            nodes: vec![Node::new()],
            routes: Vec::new(),
            max_depth: 0,
        }
    }

    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn child(&mut self, from: u32, seg: SegKind<'_>) -> u32 {
        let next = self.nodes.len() as u32;
        let node = &mut self.nodes[from as usize];
        let existing = match seg {
            SegKind::Literal(s) => node.literals.get(s),
            SegKind::Param(_) => Some(node.param).filter(|n| *n != NONE),
            SegKind::Greedy(_) => Some(node.greedy).filter(|n| *n != NONE),
        };
        if let Some(n) = existing {
            return n;
        }
        match seg {
            SegKind::Literal(s) => node.literals.insert(s, next),
            SegKind::Param(_) => node.param = next,
            SegKind::Greedy(_) => node.greedy = next,
        }
        self.nodes.push(Node::new());
        next
    }

    /// Insert a route key; `id` is reported back by lookups. Invalid and duplicate keys fail
    /// (the trie is left unchanged).
    pub fn insert(&mut self, key: &str, id: i64) -> Result<u32, RouteError> {
        let err = |reason: String| RouteError {
            key: key.to_string(),
            reason,
        };
        let parsed = parse_key(key).map_err(err)?;
        if parsed.segments.len() >= u16::MAX as usize {
            return Err(err("too many segments".into()));
        }
        // Check for a duplicate before creating nodes.
        let mut probe = 0u32;
        let mut exists = true;
        for seg in &parsed.segments {
            let node = &self.nodes[probe as usize];
            let n = match seg {
                SegKind::Literal(s) => node.literals.get(s).unwrap_or(NONE),
                SegKind::Param(_) => node.param,
                SegKind::Greedy(_) => node.greedy,
            };
            if n == NONE {
                exists = false;
                break;
            }
            probe = n;
        }
        if exists {
            let slot = self.nodes[probe as usize].methods[parsed.method];
            if slot != NONE {
                let other = &self.routes[slot as usize].key;
                return Err(err(if &**other == key {
                    "duplicate route".to_string()
                } else {
                    format!("duplicate route (conflicts with {other:?})")
                }));
            }
        }
        let mut node = 0u32;
        let mut names: Vec<Box<str>> = Vec::new();
        for seg in &parsed.segments {
            if let SegKind::Param(n) | SegKind::Greedy(n) = seg {
                names.push((*n).into());
            }
            node = self.child(node, *seg);
        }
        let route = self.routes.len() as u32;
        self.nodes[node as usize].methods[parsed.method] = route;
        self.routes.push(RouteEntry {
            id,
            key: key.into(),
            param_names: names.into(),
        });
        self.max_depth = self.max_depth.max(parsed.segments.len());
        Ok(route)
    }

    /// Match `method` and `path` (raw, percent-encoding untouched). One trailing '/' is ignored.
    pub fn lookup(&self, method: &str, path: &str) -> Option<Match> {
        let m = method_index(method);
        let bytes = path.as_bytes();
        if bytes.first() != Some(&b'/') || bytes.len() >= u32::MAX as usize {
            return None;
        }
        let len = if bytes.len() > 1 && bytes[bytes.len() - 1] == b'/' {
            bytes.len() - 1
        } else {
            bytes.len()
        };
        let p = &bytes[..len];
        let seg_end = |pos: usize| -> u32 {
            if pos > len {
                pos as u32
            } else {
                (pos + p[pos..]
                    .iter()
                    .position(|&b| b == b'/')
                    .unwrap_or(len - pos)) as u32
            }
        };
        // "/" has no segments; anything else starts at byte 1.
        let start = if len == 1 { 2 } else { 1 };
        let mut params: SmallVec<[(u32, u32); 4]> = SmallVec::new();
        let mut stack: SmallVec<[Frame; 16]> = SmallVec::new();
        stack.push(Frame {
            node: 0,
            pos: start as u32,
            end: seg_end(start),
            stage: 0,
            nparams: 0,
        });
        while let Some(f) = stack.last_mut() {
            let node = &self.nodes[f.node as usize];
            let pos = f.pos as usize;
            if pos > len {
                let r = node.route_for(m);
                if r != NONE {
                    return Some(Match { route: r, params });
                }
                stack.pop();
                continue;
            }
            let end = f.end as usize;
            // Boundaries are at '/' bytes or the ends, so this slice is on char boundaries.
            let seg = &path[pos..end];
            match f.stage {
                0 => {
                    f.stage = 1;
                    if let Some(c) = node.literals.get(seg) {
                        let np = f.nparams;
                        params.truncate(np as usize);
                        stack.push(Frame {
                            node: c,
                            pos: end as u32 + 1,
                            end: seg_end(end + 1),
                            stage: 0,
                            nparams: np,
                        });
                    }
                }
                1 => {
                    f.stage = 2;
                    if node.param != NONE && !seg.is_empty() {
                        let np = f.nparams;
                        params.truncate(np as usize);
                        params.push((pos as u32, end as u32));
                        let c = node.param;
                        stack.push(Frame {
                            node: c,
                            pos: end as u32 + 1,
                            end: seg_end(end + 1),
                            stage: 0,
                            nparams: np + 1,
                        });
                    }
                }
                2 => {
                    f.stage = 3;
                    if node.greedy != NONE && !seg.is_empty() {
                        let r = self.nodes[node.greedy as usize].route_for(m);
                        if r != NONE {
                            params.truncate(f.nparams as usize);
                            params.push((pos as u32, len as u32));
                            return Some(Match { route: r, params });
                        }
                    }
                }
                _ => {
                    stack.pop();
                }
            }
        }
        None
    }

    /// Deepest route, in segments (bounds the lookup stack).
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(keys: &[&str]) -> Router {
        let mut r = Router::new();
        for (i, k) in keys.iter().enumerate() {
            r.insert(k, i as i64).unwrap();
        }
        r
    }

    /// (route key, params) of a lookup.
    fn look(r: &Router, method: &str, path: &str) -> Option<(String, Vec<(String, String)>)> {
        let trimmed = path;
        r.lookup(method, path).map(|m| {
            let e = &r.routes()[m.route as usize];
            let params = e
                .param_names
                .iter()
                .zip(m.params.iter())
                .map(|(n, (s, t))| (n.to_string(), trimmed[*s as usize..*t as usize].to_string()))
                .collect();
            (e.key.to_string(), params)
        })
    }

    fn key(r: &Router, method: &str, path: &str) -> Option<String> {
        look(r, method, path).map(|(k, _)| k)
    }

    #[test]
    fn aws_options_falls_back_to_greedy() {
        let r = router(&["POST /test", "OPTIONS /{proxy+}"]);
        assert_eq!(
            key(&r, "OPTIONS", "/test").as_deref(),
            Some("OPTIONS /{proxy+}")
        );
        assert_eq!(key(&r, "POST", "/test").as_deref(), Some("POST /test"));
        assert_eq!(key(&r, "GET", "/test"), None);
    }

    #[test]
    fn aws_backtracks_to_root_greedy() {
        let r = router(&["GET /part1", "GET /part1/hardcoded-value", "GET /{param+}"]);
        assert_eq!(
            look(&r, "GET", "/part1/random-value"),
            Some((
                "GET /{param+}".into(),
                vec![("param".into(), "part1/random-value".into())]
            ))
        );
        assert_eq!(key(&r, "GET", "/part1").as_deref(), Some("GET /part1"));
        assert_eq!(
            key(&r, "GET", "/part1/hardcoded-value").as_deref(),
            Some("GET /part1/hardcoded-value")
        );
    }

    #[test]
    fn greedy_needs_a_segment() {
        let r = router(&["GET /{proxy+}"]);
        assert_eq!(key(&r, "GET", "/"), None);
        assert_eq!(
            look(&r, "GET", "/proxy-value//double-slash"),
            Some((
                "GET /{proxy+}".into(),
                vec![("proxy".into(), "proxy-value//double-slash".into())]
            ))
        );
        assert_eq!(
            look(&r, "GET", "/a/b/"),
            Some(("GET /{proxy+}".into(), vec![("proxy".into(), "a/b".into())]))
        );
    }

    #[test]
    fn trailing_slash_and_root() {
        let r = router(&["GET /foo", "GET /"]);
        assert_eq!(key(&r, "GET", "/foo/").as_deref(), Some("GET /foo"));
        assert_eq!(key(&r, "GET", "/foo").as_deref(), Some("GET /foo"));
        assert_eq!(key(&r, "GET", "/foo//"), None);
        assert_eq!(key(&r, "GET", "/").as_deref(), Some("GET /"));
        // One trailing slash is stripped: "//" is "/".
        assert_eq!(key(&r, "GET", "//").as_deref(), Some("GET /"));
        assert_eq!(key(&r, "GET", "///"), None);
        assert_eq!(key(&r, "GET", ""), None);
        assert_eq!(key(&r, "GET", "foo"), None);
    }

    #[test]
    fn aws_http_api_doc_example() {
        let r = router(&[
            "GET /pets/dog/1",
            "GET /pets/dog/{id}",
            "GET /pets/{proxy+}",
            "ANY /{proxy+}",
        ]);
        assert_eq!(
            key(&r, "GET", "/pets/dog/1").as_deref(),
            Some("GET /pets/dog/1")
        );
        assert_eq!(
            look(&r, "GET", "/pets/dog/2"),
            Some(("GET /pets/dog/{id}".into(), vec![("id".into(), "2".into())]))
        );
        assert_eq!(
            look(&r, "GET", "/pets/cat/1"),
            Some((
                "GET /pets/{proxy+}".into(),
                vec![("proxy".into(), "cat/1".into())]
            ))
        );
        assert_eq!(
            look(&r, "POST", "/test/5"),
            Some((
                "ANY /{proxy+}".into(),
                vec![("proxy".into(), "test/5".into())]
            ))
        );
        // Without the root greedy route nothing matches (the gateway then uses `$default`).
        let r = router(&[
            "GET /pets/dog/1",
            "GET /pets/dog/{id}",
            "GET /pets/{proxy+}",
        ]);
        assert_eq!(key(&r, "POST", "/test/5"), None);
    }

    #[test]
    fn param_names_are_per_route() {
        let r = router(&["GET /pets/{id}", "POST /pets/{petId}"]);
        assert_eq!(
            look(&r, "GET", "/pets/7").unwrap().1,
            vec![("id".to_string(), "7".to_string())]
        );
        assert_eq!(
            look(&r, "POST", "/pets/7").unwrap().1,
            vec![("petId".to_string(), "7".to_string())]
        );
        assert_eq!(key(&r, "GET", "/pets/"), None);
        assert_eq!(key(&r, "GET", "/pets//"), None);
    }

    #[test]
    fn methods() {
        let r = router(&["GET /a", "ANY /a", "ANY /b"]);
        assert_eq!(key(&r, "GET", "/a").as_deref(), Some("GET /a"));
        assert_eq!(key(&r, "HEAD", "/a").as_deref(), Some("ANY /a"));
        assert_eq!(key(&r, "BREW", "/b").as_deref(), Some("ANY /b"));
        assert_eq!(key(&r, "get", "/b").as_deref(), Some("ANY /b"));
        let r = router(&["GET /a"]);
        assert_eq!(key(&r, "HEAD", "/a"), None, "HEAD is never served by GET");
        assert_eq!(key(&r, "BREW", "/a"), None);
    }

    #[test]
    fn param_beside_greedy_and_backtracking_params() {
        let r = router(&["GET /{a}/x", "GET /{b+}", "POST /{c}/{d}"]);
        assert_eq!(
            look(&r, "GET", "/q/x").unwrap().1,
            vec![("a".to_string(), "q".to_string())]
        );
        assert_eq!(
            look(&r, "GET", "/q/y").unwrap(),
            ("GET /{b+}".into(), vec![("b".into(), "q/y".into())])
        );
        assert_eq!(
            look(&r, "POST", "/q/y").unwrap().1,
            vec![
                ("c".to_string(), "q".to_string()),
                ("d".to_string(), "y".to_string())
            ]
        );
        // Param captured on a failed branch must not leak into the greedy match.
        let r = router(&["GET /{a}/{b}/x", "GET /{c}/{d+}"]);
        assert_eq!(
            look(&r, "GET", "/1/2/3").unwrap(),
            (
                "GET /{c}/{d+}".into(),
                vec![("c".into(), "1".into()), ("d".into(), "2/3".into())]
            )
        );
    }

    #[test]
    fn params_are_raw() {
        let r = router(&["GET /f/{name}"]);
        assert_eq!(
            look(&r, "GET", "/f/a%20b").unwrap().1,
            vec![("name".to_string(), "a%20b".to_string())]
        );
    }

    #[test]
    fn invalid_keys() {
        let mut r = Router::new();
        for (k, why) in [
            ("GETT /x", "unknown method"),
            ("get /x", "unknown method"),
            ("GET x", "must start"),
            ("GET /a//b", "empty"),
            ("GET /a/", "empty"),
            ("GET /{a+}/b", "last"),
            ("GET /{}", "malformed"),
            ("GET /{a", "malformed"),
            ("GET /a}", "malformed"),
            ("GET /x{a}", "malformed"),
            ("GET /{a}/{a}", "duplicate path variable"),
            ("GET", "expected"),
            ("GET /a b", "contains"),
            ("$default", "$default"),
        ] {
            let e = r.insert(k, 0).unwrap_err();
            assert!(e.reason.contains(why), "{k}: {e}");
            assert!(e.to_string().contains(k), "{e}");
        }
        r.insert("GET /{id}", 0).unwrap();
        let e = r.insert("GET /{other}", 1).unwrap_err();
        assert!(e.reason.contains("duplicate route"), "{e}");
        let e = r.insert("GET /{id}", 1).unwrap_err();
        assert_eq!(e.reason, "duplicate route");
        r.insert("ANY /{id}", 2).unwrap();
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn huge_paths_are_fast_and_do_not_overflow() {
        let r = router(&["GET /a/a/{x}", "GET /a/{y+}", "GET /{z}/b"]);
        let long = "/a".repeat(10_000);
        let t = std::time::Instant::now();
        assert_eq!(key(&r, "GET", &long).as_deref(), Some("GET /a/{y+}"));
        assert_eq!(key(&r, "POST", &long), None);
        assert_eq!(key(&r, "GET", &"/".repeat(20_000)), None);
        assert_eq!(key(&r, "GET", &"/b".repeat(10_000)), None);
        assert!(t.elapsed().as_millis() < 500);
    }

    #[test]
    fn many_literal_children_use_map() {
        let mut r = Router::new();
        for i in 0..100 {
            r.insert(&format!("GET /r{i}/{{id}}"), i).unwrap();
        }
        for i in 0..100 {
            assert_eq!(
                r.routes()[r.lookup("GET", &format!("/r{i}/5")).unwrap().route as usize].id,
                i
            );
        }
        assert!(r.lookup("GET", "/r100/5").is_none());
    }
}
