//! JSON text as template values, as Python's `json.loads` reads it for the Python engine (the
//! reader is `crate::json`): objects in document order (a repeated key keeps its first place and
//! its last value), integers exact (one past i64 defers to that engine), other numbers as doubles.
//! Anything refused here (invalid JSON, a lone surrogate, containers nested past 200) defers to
//! the Python engine, which then gives its own error or result.

use super::value::{Key, Map, MapKind, V};

/// `json.loads` into template values.
struct Loads;

impl crate::json::Build for Loads {
    type Value = V;
    type Object = Map;
    const MAX_DEPTH: usize = 200;

    fn null() -> V {
        V::Null
    }
    fn boolean(value: bool) -> V {
        V::Bool(value)
    }
    fn number(literal: &str, integral: bool) -> Option<V> {
        if integral {
            literal.parse::<i64>().ok().map(V::Int)
        } else {
            literal.parse::<f64>().ok().map(V::Float)
        }
    }
    fn string(value: String) -> V {
        V::Str(value.into())
    }
    fn array(items: Vec<V>) -> V {
        V::list(items, true)
    }
    fn insert(object: &mut Map, key: String, value: V) {
        object.insert(Key::Str(key.into()), value);
    }
    fn object(object: Map) -> V {
        V::map(object, MapKind::Vtl)
    }
}

pub fn parse(text: &str) -> Option<V> {
    crate::json::parse::<Loads>(text)
}
