//! REST APIs' mapping templates (VTL) rendered in the core, on the request's thread, with the
//! semantics of the Python engine (`python/portico/templates/`, described in
//! docs/mapping-templates.md): that engine stays the reference, and this one renders only what it
//! repeats exactly.
//!
//! * `compile(source)` parses a template as that engine's parser (airspeed-ext) does, element by
//!   element (`parse`). A template holding anything this engine does not implement (`#macro`,
//!   `#define`, `#evaluate`, `#include`, `#parse`, non-ASCII text, nesting deeper than it takes,
//!   ...) is `Unsupported`, and one it cannot parse a `Syntax` error: either way the deployment
//!   keeps sending that template to the Python engine, which gives its own result or error.
//! * `Program::render` renders with that engine's values, methods and operators (`eval`, `value`,
//!   `json`). Where that engine would raise, or where a result rests on behaviour not repeated
//!   here (Java regular expressions, Unicode case mappings, integers past 64 bits, a JSONPath
//!   beyond `$.a[0]['b'].*`), the render ends in `RenderError::Defer`: it has no effects, so the
//!   caller renders the same template with the Python engine instead. Only the time limit fails a
//!   render here (`RenderError::Failed`). The gateway renders on the edge's one thread, so it gives
//!   a render `INLINE_RENDER_TIME` there (`Program::render_inline`) before handing it over too.
//!
//! Crates: `indexmap` for maps in insertion order (Python's dicts), `base64` for `$util`'s base64
//! (the lenient decoding Commons Codec does), nothing else: the JSON reader is this module's own
//! because the Python engine's `json.loads` keeps integers exact and object keys in order, which
//! `serde_json` here (without `arbitrary_precision` / `preserve_order`) does not, and for the same
//! reason `$input.path` walks these values rather than `crate::jsonpath`'s `serde_json` ones.

mod eval;
mod json;
mod parse;
mod value;

use std::rc::Rc;
use std::time::{Duration, Instant};

use value::{get_str, java_double, java_str, Key, Map, MapKind, V};

/// AWS's quota on a template's size, in UTF-8 bytes.
pub const MAX_TEMPLATE_BYTES: usize = 300 * 1024;
/// AWS's quota on one `#foreach`'s iterations; the loop stops after it.
pub const MAX_FOREACH_ITERATIONS: usize = 1000;
/// Any one string a render builds (API Gateway's payload quota), in characters.
pub const MAX_STRING_CHARS: usize = 10 * 1024 * 1024;
/// All strings one render builds.
pub const MAX_PRODUCED_CHARS: usize = 4 * MAX_STRING_CHARS;
/// One render's time.
pub const RENDER_TIME: Duration = Duration::from_secs(5);
/// How long the gateway lets a render run on the edge's thread (its other requests wait) before
/// handing it to the Python engine; real templates render in tens of microseconds.
pub const INLINE_RENDER_TIME: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// Valid for the Python engine perhaps, but not rendered here.
    Unsupported(String),
    Syntax(String),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::Unsupported(why) => write!(f, "not rendered by the core: {why}"),
            CompileError::Syntax(why) => write!(f, "syntax error: {why}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// Render this template with the Python engine instead (why, for tests and logs).
    Defer(String),
    /// The render failed (the time limit): the template's 500.
    Failed(String),
}

/// How a render ends early (internal).
#[derive(Debug)]
pub enum Stop {
    Defer(String),
    Fail(String),
    /// `#break`, or a loop's 1,000th iteration: leaves the innermost `#foreach` (or the template).
    ScopeExit,
}

impl Stop {
    pub fn defer(why: &str) -> Stop {
        Stop::Defer(why.to_string())
    }
}

/// What one render has used (limits.py's `Budget`).
pub struct Budget {
    produced: usize,
    deadline: Option<Instant>,
    /// Past this, the render is handed to the Python engine (see `Program::render_inline`).
    defer_after: Option<Instant>,
}

impl Budget {
    fn new(inline: Option<Duration>) -> Budget {
        let now = Instant::now();
        Budget {
            produced: 0,
            deadline: Some(now + RENDER_TIME),
            defer_after: inline.map(|d| now + d),
        }
    }
    pub fn unbounded() -> Budget {
        Budget {
            produced: 0,
            deadline: None,
            defer_after: None,
        }
    }
    /// `chars` more characters built; past a limit the Python engine raises, so this defers to it.
    pub fn produced(&mut self, chars: usize) -> Result<(), Stop> {
        if chars > MAX_STRING_CHARS {
            return Err(Stop::defer("a string over the size limit"));
        }
        self.produced += chars;
        if self.produced > MAX_PRODUCED_CHARS {
            return Err(Stop::defer("strings over the render's limit"));
        }
        Ok(())
    }
    pub fn check_time(&self) -> Result<(), Stop> {
        if self.deadline.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        if self.defer_after.is_some_and(|d| now > d) {
            return Err(Stop::defer("a render longer than the core renders inline"));
        }
        match self.deadline {
            Some(d) if now > d => Err(Stop::Fail(format!(
                "rendering took longer than {} s",
                RENDER_TIME.as_secs()
            ))),
            _ => Ok(()),
        }
    }
}

/// A compiled template; immutable, shared by the threads that render it.
#[derive(Debug)]
pub struct Program {
    nodes: Vec<parse::Node>,
}

/// Compile `source`, or say why the Python engine must render it.
pub fn compile(source: &str) -> Result<Program, CompileError> {
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(CompileError::Syntax(format!(
            "the template is {} bytes; mapping templates are limited to {MAX_TEMPLATE_BYTES}",
            source.len()
        )));
    }
    if !source.is_ascii() {
        // Python's `\s`, `\w`, `\d` and case-insensitive classes differ from ASCII's past it.
        return Err(CompileError::Unsupported("non-ASCII text".into()));
    }
    Ok(Program {
        nodes: parse::parse(source)?,
    })
}

/// A template's output and its overrides (a JSON object, as the Python side returns them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub output: String,
    pub overrides: String,
}

const REQUEST_GROUPS: [&str; 3] = ["header", "querystring", "path"];

fn map_get(v: &V, key: &str) -> Option<V> {
    match v {
        V::Map(m) => get_str(&m.entries.borrow(), key),
        _ => None,
    }
}

fn empty_map() -> V {
    V::map(Map::default(), MapKind::Vtl)
}

fn request_groups() -> V {
    V::map(
        REQUEST_GROUPS
            .iter()
            .map(|g| (Key::Str((*g).into()), empty_map()))
            .collect(),
        MapKind::Vtl,
    )
}

/// `$context` as the Python engine builds it (`templates/__init__.py`'s `_context`).
fn context(given: &V, request: bool) -> Result<V, Stop> {
    let mut entries = match given {
        V::Map(m) => m.entries.borrow().clone(),
        _ => Map::default(),
    };
    let authorizer_key = Key::Str("authorizer".into());
    if let Some(V::Map(auth)) = entries.get(&authorizer_key).cloned() {
        let mut out = Map::default();
        for (k, item) in auth.entries.borrow().iter() {
            let value = match item {
                V::Map(claims) if *k == Key::Str("claims".into()) => V::map(
                    claims.entries.borrow().clone(),
                    MapKind::NullMap,
                ),
                V::Null | V::Map(_) | V::List(_) => item.clone(),
                V::Str(_) => item.clone(),
                V::Float(f) => V::Str(java_double(*f)?.into()),
                other => V::Str(java_str(other, &mut Budget::unbounded())?.into()),
            };
            out.insert(k.clone(), value);
        }
        entries.insert(authorizer_key, V::map(out, MapKind::Vtl));
    }
    let response_groups = || {
        V::map(
            [(Key::Str("header".into()), empty_map())].into_iter().collect(),
            MapKind::Vtl,
        )
    };
    let (request_key, response_key) = (
        Key::Str("requestOverride".into()),
        Key::Str("responseOverride".into()),
    );
    if request {
        entries.insert(request_key, request_groups());
        entries.entry(response_key).or_insert_with(response_groups);
    } else {
        entries.insert(response_key, response_groups());
        entries.entry(request_key).or_insert_with(request_groups);
    }
    Ok(V::map(entries, MapKind::Vtl))
}

/// One override group: `{name: text or [texts]}` of the entries not null.
fn override_group(overrides: &Option<V>, group: &str) -> Result<Vec<(String, serde_json::Value)>, Stop> {
    let Some(V::Map(values)) = overrides.as_ref().and_then(|o| map_get(o, group)) else {
        return Ok(Vec::new());
    };
    let mut budget = Budget::unbounded();
    let mut out = Vec::new();
    for (k, v) in values.entries.borrow().iter() {
        let value = match v {
            V::Null => continue,
            V::List(l) => serde_json::Value::Array(
                l.items
                    .borrow()
                    .iter()
                    .map(|item| java_str(item, &mut budget).map(serde_json::Value::String))
                    .collect::<Result<_, _>>()?,
            ),
            other => serde_json::Value::String(java_str(other, &mut budget)?),
        };
        let name = match k {
            Key::Str(s) => s.to_string(),
            Key::Int(i) => i.to_string(),
        };
        out.push((name, value));
    }
    Ok(out)
}

fn json_object(pairs: Vec<(String, serde_json::Value)>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        value::json_string(&mut out, k);
        out.push_str(": ");
        out.push_str(&v.to_string());
    }
    out.push('}');
    out
}

/// `Rendered.overrides` as the Python engine returns them (`_overrides`).
fn overrides(context: &V, request: bool) -> Result<String, Stop> {
    let mut out = Vec::new();
    let group_json = |pairs: Vec<(String, serde_json::Value)>| {
        serde_json::Value::Object(pairs.into_iter().collect())
    };
    if request {
        let requested = map_get(context, "requestOverride");
        for group in REQUEST_GROUPS {
            let pairs = override_group(&requested, group)?;
            if !pairs.is_empty() {
                out.push((group.to_string(), group_json(pairs)));
            }
        }
        return Ok(json_object(out));
    }
    let response = map_get(context, "responseOverride");
    if let Some(status) = response.as_ref().and_then(|r| map_get(r, "status")) {
        if !matches!(status, V::Null) {
            let text = java_str(&status, &mut Budget::unbounded())?;
            let trimmed = text.trim_matches(|c: char| matches!(c as u32, 9..=13 | 28..=32));
            let code = (!matches!(status, V::Bool(_))
                && text.is_ascii()
                && !trimmed.is_empty()
                && trimmed.bytes().all(|b| b.is_ascii_digit()))
            .then(|| trimmed.trim_start_matches('0').parse::<u64>().ok())
            .flatten()
            .filter(|c| (100..=599).contains(c));
            match code {
                Some(c) => out.push(("status".to_string(), serde_json::Value::from(c))),
                None => return Err(Stop::defer("a status override that is no status code")),
            }
        }
    }
    let headers = override_group(&response, "header")?;
    if !headers.is_empty() {
        out.push(("header".to_string(), group_json(headers)));
    }
    Ok(json_object(out))
}

impl Program {
    /// Render with the `TemplateInput` the Python side would get, as JSON (`kind`, `body`,
    /// `params`, `context`, `stage_variables`).
    pub fn render(&self, input_json: &str) -> Result<Rendered, RenderError> {
        self.render_within(input_json, None)
    }

    /// `render` on a thread that serves other requests (the edge's one tokio thread): a render
    /// still running after `inline` is handed to the Python engine, which renders it off this
    /// thread within the full time limit, so a long template never holds up the others.
    pub fn render_inline(&self, input_json: &str, inline: Duration) -> Result<Rendered, RenderError> {
        self.render_within(input_json, Some(inline))
    }

    fn render_within(&self, input_json: &str, inline: Option<Duration>) -> Result<Rendered, RenderError> {
        self.render_inner(input_json, inline).map_err(|stop| match stop {
            Stop::Defer(why) => RenderError::Defer(why),
            Stop::Fail(why) => RenderError::Failed(why),
            Stop::ScopeExit => RenderError::Defer("#break".into()),
        })
    }

    fn render_inner(&self, input_json: &str, inline: Option<Duration>) -> Result<Rendered, Stop> {
        let input = json::parse(input_json).ok_or_else(|| Stop::defer("an input that is not JSON"))?;
        let request = match map_get(&input, "kind") {
            Some(V::Str(k)) => &*k == "request",
            _ => return Err(Stop::defer("an input without its kind")),
        };
        let body: Rc<str> = match map_get(&input, "body") {
            Some(V::Str(b)) if !b.is_empty() => b,
            _ => "{}".into(),
        };
        let params = map_get(&input, "params").unwrap_or(V::Null);
        let context = context(&map_get(&input, "context").unwrap_or(V::Null), request)?;
        let stage_variables = match map_get(&input, "stage_variables") {
            Some(V::Map(m)) => V::map(m.entries.borrow().clone(), MapKind::Vtl),
            _ => empty_map(),
        };
        let mut renderer = eval::Renderer {
            scopes: vec![ahash::AHashMap::new()],
            context: context.clone(),
            stage_variables,
            input: eval::InputState::new(body, params),
            budget: Budget::new(inline),
        };
        let mut out = eval::Out::new();
        match renderer.nodes(&self.nodes, &mut out) {
            Ok(()) | Err(Stop::ScopeExit) => {}
            Err(other) => return Err(other),
        }
        Ok(Rendered {
            output: out.buf,
            overrides: overrides(&context, request)?,
        })
    }
}

#[cfg(test)]
mod tests;
