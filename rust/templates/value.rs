//! A render's values, with the behaviour the Python engine gives them
//! (`python/portico/templates/values.py`): Java's printing (`{a=1}`, `[a, b]`, `1.0`), JSON
//! arrays from a payload printed as JSON, Python's dict and list equality where that engine uses
//! it. Values are shared by reference (a list added to through one name changes for all), as
//! Python's objects are; a render is single-threaded.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use indexmap::IndexMap;

use super::{Budget, Stop};

/// A map key: the Python engine's maps hold string keys (JSON objects, `'k'` literals) and, from a
/// template, integer keys; anything else (a boolean key, which Python equates with 1) defers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Str(Rc<str>),
    Int(i64),
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Key::Str(s) => StrKey(s).hash(state),
            Key::Int(i) => {
                state.write_u8(1);
                i.hash(state);
            }
        }
    }
}

/// A string key to look up without allocating one (hashes as `Key::Str` does).
pub struct StrKey<'a>(pub &'a str);

impl Hash for StrKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(0);
        self.0.hash(state);
    }
}

impl indexmap::Equivalent<Key> for StrKey<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        matches!(key, Key::Str(s) if **s == *self.0)
    }
}

/// A map in insertion order, as Python's dicts are.
pub type Map = IndexMap<Key, V, ahash::RandomState>;

/// The value under a string key.
pub fn get_str(map: &Map, key: &str) -> Option<V> {
    map.get(&StrKey(key)).cloned()
}

impl Key {
    /// The key to look `v` up by (None: nothing can be stored under it).
    pub fn from_value(v: &V) -> Result<Option<Key>, Stop> {
        match v {
            V::Str(s) => Ok(Some(Key::Str(s.clone()))),
            V::Int(i) => Ok(Some(Key::Int(*i))),
            // Python finds an integer key by an equal boolean or double; no other key is stored.
            V::Bool(b) => Ok(Some(Key::Int(*b as i64))),
            V::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Some(Key::Int(*f as i64))),
            V::Float(_) => Ok(None),
            // Nothing stored under None (a set of a null key defers, below), a range or an entry.
            V::Null | V::Range(_) | V::Entry(_) => Ok(None),
            _ => Err(Stop::defer("a map key of this type")),
        }
    }
    pub fn for_store(v: &V) -> Result<Key, Stop> {
        match v {
            V::Str(s) => Ok(Key::Str(s.clone())),
            V::Int(i) => Ok(Key::Int(*i)),
            _ => Err(Stop::defer("a map key of this type")),
        }
    }
    pub fn to_value(&self) -> V {
        match self {
            Key::Str(s) => V::Str(s.clone()),
            Key::Int(i) => V::Int(*i),
        }
    }
}

/// Which Python class a map is: the engine's `VtlMap`, `NullMap` (`$context.authorizer.claims`:
/// null itself, its keys readable) or a plain `dict` (`$foreach`, printed as Python prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    Vtl,
    NullMap,
    Plain,
}

#[derive(Debug)]
pub struct MapObj {
    pub kind: MapKind,
    pub entries: RefCell<Map>,
}

/// `VtlList` (built by a template: `[a, b]`) or `JsonList` (from a payload: printed as JSON).
#[derive(Debug)]
pub struct ListObj {
    pub json: bool,
    pub items: RefCell<Vec<V>>,
}

#[derive(Debug, Clone)]
pub enum V {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    List(Rc<ListObj>),
    Map(Rc<MapObj>),
    /// `[a..b]`: first and last, inclusive.
    Range(Rc<(i64, i64)>),
    /// `entrySet()`'s items.
    Entry(Rc<(V, V)>),
    Input,
    Util,
}

impl V {
    pub fn str(s: &str) -> V {
        V::Str(s.into())
    }
    pub fn list(items: Vec<V>, json: bool) -> V {
        V::List(Rc::new(ListObj {
            json,
            items: RefCell::new(items),
        }))
    }
    pub fn map(entries: Map, kind: MapKind) -> V {
        V::Map(Rc::new(MapObj {
            kind,
            entries: RefCell::new(entries),
        }))
    }
    pub fn is_number(&self) -> bool {
        matches!(self, V::Int(_) | V::Float(_))
    }
}

pub fn range_len(r: &(i64, i64)) -> usize {
    (r.0 - r.1).unsigned_abs() as usize + 1
}

pub fn range_item(r: &(i64, i64), i: usize) -> i64 {
    if r.0 <= r.1 {
        r.0 + i as i64
    } else {
        r.0 - i as i64
    }
}

/// Velocity 1.7's condition: only null, false (and the null map) are false.
pub fn truthy(v: &V) -> bool {
    !matches!(v, V::Null | V::Bool(false)) && !matches!(v, V::Map(m) if m.kind == MapKind::NullMap)
}

// ------------------------------------------------------------------------------------------------
// Printing

/// The Python engine refuses to print a value of more than this many elements (values.py's
/// MAX_PRINTED_ELEMENTS); here such a value defers to it, as does nesting past `MAX_DEPTH`.
const MAX_PRINTED_ELEMENTS: usize = 1_000_000;
const MAX_DEPTH: usize = 200;

/// `float.__repr__`: the shortest round-tripping digits, exponent form below 1e-4 and from 1e16.
pub fn py_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let (negative, digits, exp) = shortest(f);
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// (negative, significant digits, decimal exponent of the first digit), shortest round trip.
fn shortest(f: f64) -> (bool, String, i32) {
    let text = format!("{:e}", f.abs());
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    (f < 0.0, digits, exp.parse().unwrap_or(0))
}

/// values.py's `java_double` (`Double.toString` as that engine writes it).
pub fn java_double(f: f64) -> Result<String, Stop> {
    if f.is_nan() {
        return Ok("NaN".into());
    }
    if f.is_infinite() {
        return Ok(if f > 0.0 { "Infinity" } else { "-Infinity" }.into());
    }
    if f == 0.0 {
        return Ok(if f.is_sign_negative() { "-0.0" } else { "0.0" }.into());
    }
    if (1e-3..1e7).contains(&f.abs()) {
        return Ok(py_repr(f));
    }
    let (negative, digits, exp) = shortest(f);
    if (-4..16).contains(&exp) && digits.len() > 7 {
        // That engine takes these digits from a 7-digit `%e`, whose rounding is not repeated here.
        return Err(Stop::defer("a double printed through %e"));
    }
    let trimmed = digits.trim_end_matches('0');
    let trimmed = if trimmed.is_empty() { "0" } else { trimmed };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(&trimmed[..1]);
    out.push('.');
    out.push_str(if trimmed.len() > 1 { &trimmed[1..] } else { "0" });
    out.push('E');
    out.push_str(&exp.to_string());
    Ok(out)
}

/// How Java prints a value (values.py's `java_str`).
pub fn java_str(v: &V, budget: &mut Budget) -> Result<String, Stop> {
    let mut out = String::new();
    let mut elements = 0;
    text_into(v, &mut out, &mut elements, 0, budget)?;
    Ok(out)
}

fn count(elements: &mut usize, depth: usize) -> Result<(), Stop> {
    *elements += 1;
    if *elements > MAX_PRINTED_ELEMENTS || depth > MAX_DEPTH {
        return Err(Stop::defer("a value too large to print"));
    }
    Ok(())
}

fn text_into(
    v: &V,
    out: &mut String,
    elements: &mut usize,
    depth: usize,
    budget: &mut Budget,
) -> Result<(), Stop> {
    count(elements, depth)?;
    match v {
        V::Null => out.push_str("null"),
        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        V::Int(i) => out.push_str(&i.to_string()),
        V::Float(f) => out.push_str(&java_double(*f)?),
        V::Str(s) => out.push_str(s),
        V::Map(m) => match m.kind {
            MapKind::NullMap => {}
            MapKind::Plain => return Err(Stop::defer("a plain dict printed")),
            MapKind::Vtl => {
                out.push('{');
                for (i, (k, item)) in m.entries.borrow().iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match k {
                        Key::Str(s) => out.push_str(s),
                        Key::Int(n) => out.push_str(&n.to_string()),
                    }
                    out.push('=');
                    text_into(item, out, elements, depth + 1, budget)?;
                }
                out.push('}');
            }
        },
        V::List(l) if l.json => {
            let text = to_json_inner(v, elements, depth)?;
            budget.produced(text.chars().count())?;
            out.push_str(&text);
        }
        V::List(l) => {
            out.push('[');
            for (i, item) in l.items.borrow().iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                text_into(item, out, elements, depth + 1, budget)?;
            }
            out.push(']');
        }
        V::Range(r) => {
            budget.produced(range_len(r).saturating_mul(3))?;
            out.push('[');
            for i in 0..range_len(r) {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&range_item(r, i).to_string());
            }
            out.push(']');
        }
        V::Entry(e) => {
            text_into(&e.0, out, elements, depth + 1, budget)?;
            out.push('=');
            text_into(&e.1, out, elements, depth + 1, budget)?;
        }
        V::Input | V::Util => return Err(Stop::defer("an object printed")),
    }
    Ok(())
}

/// Compact JSON with non-ASCII kept, as values.py's `to_json` (Python's `json.dumps`) writes it.
pub fn to_json(v: &V, budget: &mut Budget) -> Result<String, Stop> {
    let mut elements = 0;
    let text = to_json_inner(v, &mut elements, 0)?;
    budget.produced(text.chars().count())?;
    Ok(text)
}

fn to_json_inner(v: &V, elements: &mut usize, depth: usize) -> Result<String, Stop> {
    let mut out = String::new();
    json_into(v, &mut out, elements, depth)?;
    Ok(out)
}

pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_into(v: &V, out: &mut String, elements: &mut usize, depth: usize) -> Result<(), Stop> {
    count(elements, depth)?;
    match v {
        V::Null => out.push_str("null"),
        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        V::Int(i) => out.push_str(&i.to_string()),
        V::Float(f) if f.is_finite() => out.push_str(&py_repr(*f)),
        V::Float(_) => return Err(Stop::defer("a non-finite number in JSON")),
        V::Str(s) => json_string(out, s),
        V::Map(m) => {
            out.push('{');
            for (i, (k, item)) in m.entries.borrow().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k {
                    Key::Str(s) => json_string(out, s),
                    Key::Int(n) => json_string(out, &n.to_string()),
                }
                out.push(':');
                json_into(item, out, elements, depth + 1)?;
            }
            out.push('}');
        }
        V::List(l) => {
            out.push('[');
            for (i, item) in l.items.borrow().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_into(item, out, elements, depth + 1)?;
            }
            out.push(']');
        }
        V::Range(r) => {
            if range_len(r) > MAX_PRINTED_ELEMENTS {
                return Err(Stop::defer("a range too large to print"));
            }
            out.push('[');
            for i in 0..range_len(r) {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&range_item(r, i).to_string());
            }
            out.push(']');
        }
        // json.dumps' default: the Java string, as a JSON string.
        V::Entry(_) => {
            let mut text = String::new();
            let mut budget = Budget::unbounded();
            text_into(v, &mut text, elements, depth, &mut budget)?;
            json_string(out, &text);
        }
        V::Input | V::Util => return Err(Stop::defer("an object in JSON")),
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Equality and comparison

/// The Python class of a value, for values.py's `type(left) is type(right)`.
fn class(v: &V) -> u8 {
    match v {
        V::Null => 0,
        V::Bool(_) => 1,
        V::Int(_) => 2,
        V::Float(_) => 3,
        V::Str(_) => 4,
        V::Map(m) => match m.kind {
            MapKind::Vtl => 5,
            MapKind::NullMap => 6,
            MapKind::Plain => 7,
        },
        V::List(l) => {
            if l.json {
                9
            } else {
                8
            }
        }
        V::Range(_) => 10,
        V::Entry(_) => 11,
        V::Input => 12,
        V::Util => 13,
    }
}

/// Python's `==` between an int and a float: exact.
fn int_float_eq(i: i64, f: f64) -> bool {
    f.fract() == 0.0 && (-9.223372036854776e18..9.223372036854776e18).contains(&f) && f as i64 == i
}

fn num_eq(a: &V, b: &V) -> Option<bool> {
    let as_int = |v: &V| match v {
        V::Bool(b) => Some(*b as i64),
        V::Int(i) => Some(*i),
        _ => None,
    };
    match (a, b) {
        (V::Float(x), V::Float(y)) => Some(x == y),
        (V::Float(f), other) | (other, V::Float(f)) => as_int(other).map(|i| int_float_eq(i, *f)),
        _ => Some(as_int(a)? == as_int(b)?),
    }
}

/// Python's `==` (dict and list contents compare this way).
pub fn py_eq(a: &V, b: &V, depth: usize) -> Result<bool, Stop> {
    if depth > MAX_DEPTH {
        return Err(Stop::defer("values nested too deep to compare"));
    }
    if let Some(eq) = num_eq(a, b) {
        return Ok(eq);
    }
    Ok(match (a, b) {
        (V::Null, V::Null) => true,
        (V::Str(x), V::Str(y)) => x == y,
        (V::Map(x), V::Map(y)) => {
            if Rc::ptr_eq(x, y) {
                return Ok(true);
            }
            let (x, y) = (x.entries.borrow(), y.entries.borrow());
            if x.len() != y.len() {
                return Ok(false);
            }
            for (k, item) in x.iter() {
                match y.get(k) {
                    Some(other) => {
                        if !py_eq(item, other, depth + 1)? {
                            return Ok(false);
                        }
                    }
                    None => return Ok(false),
                }
            }
            true
        }
        (V::List(x), V::List(y)) => {
            if Rc::ptr_eq(x, y) {
                return Ok(true);
            }
            let (x, y) = (x.items.borrow(), y.items.borrow());
            if x.len() != y.len() {
                return Ok(false);
            }
            for (p, q) in x.iter().zip(y.iter()) {
                if !py_eq(p, q, depth + 1)? {
                    return Ok(false);
                }
            }
            true
        }
        (V::Range(x), V::Range(y)) => Rc::ptr_eq(x, y),
        (V::Entry(x), V::Entry(y)) => Rc::ptr_eq(x, y),
        (V::Input, V::Input) | (V::Util, V::Util) => true,
        _ => false,
    })
}

/// Velocity's `==` as values.py's `vtl_equals` has it.
pub fn vtl_equals(a: &V, b: &V, budget: &mut Budget) -> Result<bool, Stop> {
    match (a, b) {
        (V::Null, V::Null) => return Ok(true),
        (V::Null, _) | (_, V::Null) => return Ok(false),
        _ => {}
    }
    if a.is_number() && b.is_number() {
        return Ok(num_eq(a, b).unwrap_or(false));
    }
    if class(a) == class(b) {
        return py_eq(a, b, 0);
    }
    Ok(java_str(a, budget)? == java_str(b, budget)?)
}

/// `<`, `<=`, `>`, `>=`: numbers or two strings, else None (values.py answers false).
pub fn compare(a: &V, b: &V) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (V::Int(x), V::Int(y)) => Some(x.cmp(y)),
        (V::Float(x), V::Float(y)) => x.partial_cmp(y),
        (V::Int(i), V::Float(f)) => int_float_cmp(*i, *f),
        (V::Float(f), V::Int(i)) => int_float_cmp(*i, *f).map(|o| o.reverse()),
        (V::Str(x), V::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    }
}

fn int_float_cmp(i: i64, f: f64) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering::*;
    if f.is_nan() {
        return None;
    }
    if f >= 9.223372036854776e18 {
        return Some(Less);
    }
    if f < -9.223372036854776e18 {
        return Some(Greater);
    }
    let t = f.trunc() as i64;
    Some(match i.cmp(&t) {
        Equal => {
            let frac = f - f.trunc();
            if frac > 0.0 {
                Less
            } else if frac < 0.0 {
                Greater
            } else {
                Equal
            }
        }
        o => o,
    })
}
