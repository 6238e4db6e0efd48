//! Rendering a parsed template with the Python engine's semantics (`engine.py`'s adjustments of
//! airspeed, `values.py`'s methods and operators, `input.py`, `util.py`). Where that engine would
//! raise, or where a result depends on something not repeated here (a regular expression, a
//! non-ASCII case mapping, an integer past 64 bits), the render stops with `Stop::Defer` and the
//! caller renders the template with the Python engine instead, which then decides.

use std::rc::Rc;

use base64::Engine as _;

use super::json;
use super::parse::{Assign, Node, Op, Reference, Sub, Val, VarExpr};
use super::value::{
    compare, get_str, java_str, range_item, range_len, to_json, truthy, vtl_equals, Key, Map, MapKind, V,
};
use super::{Budget, Stop, MAX_FOREACH_ITERATIONS};

/// What one render writes to (the output, or an interpolated string): `#stop` stops it.
pub struct Out {
    pub buf: String,
    pub stopped: bool,
}

impl Out {
    pub fn new() -> Out {
        Out {
            buf: String::new(),
            stopped: false,
        }
    }
}

/// `$input`'s state: the payload, parsed on first use, and `params()`, built once.
pub struct InputState {
    pub body: Rc<str>,
    pub params: V,
    document: Option<V>,
    all_params: Option<V>,
}

impl InputState {
    pub fn new(body: Rc<str>, params: V) -> InputState {
        InputState {
            body,
            params,
            document: None,
            all_params: None,
        }
    }
}

pub struct Renderer {
    pub scopes: Vec<ahash::AHashMap<String, V>>,
    pub context: V,
    pub stage_variables: V,
    pub input: InputState,
    pub budget: Budget,
}

type R<T> = Result<T, Stop>;

fn defer<T>(why: &str) -> R<T> {
    Err(Stop::defer(why))
}

fn chars(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

impl Renderer {
    fn write(&mut self, out: &mut Out, text: &str) -> R<()> {
        if !out.stopped && !text.is_empty() {
            self.budget.produced(chars(text))?;
            out.buf.push_str(text);
        }
        Ok(())
    }

    pub fn nodes(&mut self, nodes: &[Node], out: &mut Out) -> R<()> {
        for node in nodes {
            self.node(node, out)?;
        }
        Ok(())
    }

    fn node(&mut self, node: &Node, out: &mut Out) -> R<()> {
        match node {
            Node::Text(t) => self.write(out, t),
            Node::Ref(r) => self.reference(r, out),
            Node::If {
                cond,
                then,
                elseifs,
                otherwise,
            } => {
                if truthy(&self.val(cond)?) {
                    return self.nodes(then, out);
                }
                for (c, block) in elseifs {
                    if truthy(&self.val(c)?) {
                        return self.nodes(block, out);
                    }
                }
                match otherwise {
                    Some(block) => self.nodes(block, out),
                    None => Ok(()),
                }
            }
            Node::Set(a) => {
                self.budget.check_time()?;
                self.assign(a)
            }
            Node::Foreach { var, items, body } => match self.foreach(var, items, body, out) {
                Err(Stop::ScopeExit) => Ok(()),
                other => other,
            },
            Node::Stop => {
                out.stopped = true;
                Ok(())
            }
            Node::Break => Err(Stop::ScopeExit),
        }
    }

    fn reference(&mut self, r: &Reference, out: &mut Out) -> R<()> {
        let Some(expr) = &r.expr else {
            return self.write(out, &r.text);
        };
        let mut value = self.var(expr)?;
        if let (V::Null, Some(alternate)) = (&value, &r.alternate) {
            value = self.val(alternate)?;
        }
        match &value {
            V::Null => Ok(()),
            V::Str(s) => {
                let s = s.clone();
                self.write(out, &s)
            }
            other => {
                let text = java_str(other, &mut self.budget)?;
                self.write(out, &text)
            }
        }
    }

    fn foreach(&mut self, var: &str, items: &Val, body: &[Node], out: &mut Out) -> R<()> {
        let items = match self.val(items)? {
            V::Map(m) => V::list(m.entries.borrow().values().cloned().collect(), false),
            v @ (V::List(_) | V::Range(_)) => v,
            _ => return Ok(()),
        };
        let length = match &items {
            V::List(l) => l.items.borrow().len(),
            V::Range(r) => range_len(r),
            _ => 0,
        };
        let mut counter = 1usize;
        loop {
            let item = match &items {
                V::List(l) => match l.items.borrow().get(counter - 1) {
                    Some(v) => v.clone(),
                    None => break,
                },
                V::Range(r) if counter <= length => V::Int(range_item(r, counter - 1)),
                _ => break,
            };
            if counter > MAX_FOREACH_ITERATIONS {
                break;
            }
            self.budget.check_time()?;
            let mut foreach = Map::default();
            for (k, v) in [
                ("count", V::Int(counter as i64)),
                ("index", V::Int(counter as i64 - 1)),
                ("hasNext", V::Bool(counter < length)),
                ("first", V::Bool(counter == 1)),
                ("last", V::Bool(counter == length)),
            ] {
                foreach.insert(Key::Str(k.into()), v);
            }
            let mut scope = ahash::AHashMap::with_capacity(4);
            scope.insert("velocityCount".to_string(), V::Int(counter as i64));
            scope.insert("velocityHasNext".to_string(), V::Bool(counter < length));
            scope.insert("foreach".to_string(), V::map(foreach, MapKind::Plain));
            scope.insert(var.to_string(), item);
            self.scopes.push(scope);
            let result = self.nodes(body, out);
            self.scopes.pop();
            result?;
            counter += 1;
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> V {
        for scope in self.scopes.iter().rev() {
            if let Some(v) = scope.get(name) {
                return v.clone();
            }
        }
        match name {
            "input" => V::Input,
            "util" => V::Util,
            "context" => self.context.clone(),
            "stageVariables" => self.stage_variables.clone(),
            _ => V::Null,
        }
    }

    /// `#set($x = ..)` changes the innermost scope that has `$x` (a loop's variables), else the
    /// template's.
    fn set_var(&mut self, name: &str, value: V) {
        for scope in self.scopes.iter_mut().rev() {
            if let Some(slot) = scope.get_mut(name) {
                *slot = value;
                return;
            }
        }
        self.scopes[0].insert(name.to_string(), value);
    }

    fn assign(&mut self, a: &Assign) -> R<()> {
        let value = self.val(&a.value)?;
        if matches!(value, V::Null) {
            return Ok(());
        }
        let Some((last, path)) = a.terms.split_last() else {
            self.set_var(&a.root, value);
            return Ok(());
        };
        let mut target = self.lookup(&a.root);
        for term in path {
            let key = self.val(term)?;
            target = get_index(&target, &key)?;
        }
        let key = self.val(last)?;
        match &target {
            V::Map(m) => {
                let key = Key::for_store(&key)?;
                m.entries.borrow_mut().insert(key, value);
                Ok(())
            }
            V::List(l) => match key {
                V::Int(i) if i >= 0 && (i as usize) < l.items.borrow().len() => {
                    l.items.borrow_mut()[i as usize] = value;
                    Ok(())
                }
                _ => defer("setting a list item"),
            },
            V::Null => Ok(()),
            _ => defer("setting a property of a value that has none"),
        }
    }

    pub fn val(&mut self, v: &Val) -> R<V> {
        Ok(match v {
            Val::Null => V::Null,
            Val::Bool(b) => V::Bool(*b),
            Val::Int(i) => V::Int(*i),
            Val::Float(f) => V::Float(*f),
            Val::Str(s) => V::str(s),
            Val::Interp(nodes) => {
                let mut out = Out::new();
                self.nodes(nodes, &mut out)?;
                V::Str(out.buf.into())
            }
            Val::Ref(e) => self.var(e)?,
            Val::List(items) => {
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    values.push(self.val(item)?);
                }
                V::list(values, false)
            }
            Val::Range(a, b) => match (self.val(a)?, self.val(b)?) {
                (V::Int(x), V::Int(y)) => V::Range(Rc::new((x, y))),
                _ => V::Null,
            },
            Val::Map(pairs) => {
                let mut map = Map::default();
                for (k, item) in pairs {
                    // Python's `tmp[key] = value` computes the value first.
                    let value = self.val(item)?;
                    let key = Key::for_store(&self.val(k)?)?;
                    map.insert(key, value);
                }
                V::map(map, MapKind::Vtl)
            }
            Val::Not(inner) => V::Bool(!truthy(&self.val(inner)?)),
            Val::Expr(values, ops) => self.expression(values, ops)?,
        })
    }

    /// airspeed's operator-precedence evaluation, in its order: each operator's right operand is
    /// computed before its left one, and `&&` / `||` compute both.
    fn expression(&mut self, values: &[Val], ops: &[Op]) -> R<V> {
        enum Slot<'a> {
            Node(&'a Val),
            Done(V),
        }
        let mut opstack: Vec<Op> = Vec::new();
        let mut stack = vec![Slot::Node(&values[0])];
        let reduce = |this: &mut Self, opstack: &mut Vec<Op>, stack: &mut Vec<Slot>| -> R<()> {
            let right = match stack.pop() {
                Some(Slot::Node(v)) => this.val(v)?,
                Some(Slot::Done(v)) => v,
                None => V::Null,
            };
            let left = match stack.pop() {
                Some(Slot::Node(v)) => this.val(v)?,
                Some(Slot::Done(v)) => v,
                None => V::Null,
            };
            let op = opstack.pop().expect("an operator per reduction");
            stack.push(Slot::Done(this.binary(op, left, right)?));
            Ok(())
        };
        let mut t = 0;
        while t < ops.len() {
            if opstack
                .last()
                .map_or(true, |top| ops[t].precedence() < top.precedence())
            {
                opstack.push(ops[t]);
                stack.push(Slot::Node(&values[t + 1]));
                t += 1;
            } else {
                reduce(self, &mut opstack, &mut stack)?;
            }
        }
        while !opstack.is_empty() {
            reduce(self, &mut opstack, &mut stack)?;
        }
        match stack.pop() {
            Some(Slot::Node(v)) => self.val(v),
            Some(Slot::Done(v)) => Ok(v),
            None => Ok(V::Null),
        }
    }

    fn binary(&mut self, op: Op, a: V, b: V) -> R<V> {
        let float = |v: &V| match v {
            V::Int(i) => *i as f64,
            V::Float(f) => *f,
            _ => 0.0,
        };
        let numbers = a.is_number() && b.is_number();
        Ok(match op {
            Op::Add => match (&a, &b) {
                (V::Int(x), V::Int(y)) => match x.checked_add(*y) {
                    Some(n) => V::Int(n),
                    None => return defer("an integer past 64 bits"),
                },
                _ if numbers => V::Float(float(&a) + float(&b)),
                (V::Str(_), _) | (_, V::Str(_)) => {
                    let mut text = java_str(&a, &mut self.budget)?;
                    text.push_str(&java_str(&b, &mut self.budget)?);
                    self.budget.produced(chars(&text))?;
                    V::Str(text.into())
                }
                _ => V::Null,
            },
            Op::Sub | Op::Mul => {
                if !numbers {
                    return Ok(V::Null);
                }
                match (&a, &b) {
                    (V::Int(x), V::Int(y)) => {
                        let r = if op == Op::Sub {
                            x.checked_sub(*y)
                        } else {
                            x.checked_mul(*y)
                        };
                        match r {
                            Some(n) => V::Int(n),
                            None => return defer("an integer past 64 bits"),
                        }
                    }
                    _ if op == Op::Sub => V::Float(float(&a) - float(&b)),
                    _ => V::Float(float(&a) * float(&b)),
                }
            }
            Op::Div | Op::Mod => {
                if !numbers {
                    return Ok(V::Null);
                }
                match (&a, &b) {
                    (V::Int(_), V::Int(0)) => V::Null,
                    (V::Int(x), V::Int(y)) => {
                        let r = if op == Op::Div {
                            x.checked_div(*y)
                        } else {
                            x.checked_rem(*y)
                        };
                        match r {
                            Some(n) => V::Int(n),
                            None => return defer("an integer past 64 bits"),
                        }
                    }
                    _ => {
                        let (x, y) = (float(&a), float(&b));
                        if op == Op::Div {
                            if y == 0.0 {
                                V::Null
                            } else {
                                V::Float(x / y)
                            }
                        } else if y == 0.0 || !x.is_finite() || y.is_nan() {
                            return defer("math.fmod's domain");
                        } else {
                            V::Float(x % y)
                        }
                    }
                }
            }
            Op::Eq => V::Bool(vtl_equals(&a, &b, &mut self.budget)?),
            Op::Ne => V::Bool(!vtl_equals(&a, &b, &mut self.budget)?),
            Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                use std::cmp::Ordering::*;
                V::Bool(match compare(&a, &b) {
                    None => false,
                    Some(o) => match op {
                        Op::Lt => o == Less,
                        Op::Le => o != Greater,
                        Op::Gt => o == Greater,
                        _ => o != Less,
                    },
                })
            }
            Op::And => V::Bool(truthy(&a) && truthy(&b)),
            Op::Or => V::Bool(truthy(&a) || truthy(&b)),
        })
    }

    /// `$name...` from the template's variables.
    fn var(&mut self, e: &VarExpr) -> R<V> {
        if let Some(params) = &e.params {
            for p in params {
                self.val(p)?; // computed (and then unused), as that engine does
            }
        }
        let mut value = self.lookup(&e.name);
        if let Some(index) = &e.index {
            let key = self.val(index)?;
            value = get_index(&value, &key)?;
        }
        match &e.sub {
            Some(sub) => self.sub(value, sub),
            None => Ok(value),
        }
    }

    fn sub(&mut self, current: V, sub: &Sub) -> R<V> {
        match sub {
            Sub::Dot(e) => {
                let mut value = match &e.params {
                    Some(params) => {
                        let mut args = Vec::with_capacity(params.len());
                        for p in params {
                            args.push(self.val(p)?);
                        }
                        self.call(&current, &e.name, args)?
                    }
                    None => self.property(&current, &e.name)?,
                };
                if let Some(index) = &e.index {
                    let key = self.val(index)?;
                    value = get_index(&value, &key)?;
                }
                match &e.sub {
                    Some(more) => self.sub(value, more),
                    None => Ok(value),
                }
            }
            Sub::Index(index, more) => {
                let key = self.val(index)?;
                let value = subscript(&current, &key)?;
                match more {
                    Some(more) => self.sub(value, more),
                    None => Ok(value),
                }
            }
        }
    }

    /// `$value.name`: a map's key, else a `getName()` / `isName()` method.
    fn property(&mut self, v: &V, name: &str) -> R<V> {
        if let V::Map(m) = v {
            return Ok(get_str(&m.entries.borrow(), name).unwrap_or(V::Null));
        }
        let mut capitalised = name[..1].to_ascii_uppercase();
        capitalised.push_str(&name[1..]);
        for getter in [format!("get{capitalised}"), format!("is{capitalised}")] {
            if methods(v).contains(&getter.as_str()) {
                return self.call(v, &getter, Vec::new());
            }
        }
        Ok(V::Null)
    }

    fn str_arg(&mut self, v: &V) -> R<String> {
        java_str(v, &mut self.budget)
    }

    /// `$value.name(args)`: the Java method of values.py's tables; any other is null.
    fn call(&mut self, v: &V, name: &str, args: Vec<V>) -> R<V> {
        if !methods(v).contains(&name) {
            return Ok(V::Null);
        }
        let n = args.len();
        let arity = |lo: usize, hi: usize| -> R<()> {
            if n < lo || n > hi {
                defer("a method given the wrong number of arguments")
            } else {
                Ok(())
            }
        };
        if name == "toString" {
            arity(0, 0)?;
            return Ok(match v {
                V::Str(_) => v.clone(),
                _ => V::Str(java_str(v, &mut self.budget)?.into()),
            });
        }
        match v {
            V::Str(s) => self.string_method(s, name, args),
            V::List(l) => {
                let items = &l.items;
                match name {
                    "size" => {
                        arity(0, 0)?;
                        Ok(V::Int(items.borrow().len() as i64))
                    }
                    "isEmpty" => {
                        arity(0, 0)?;
                        Ok(V::Bool(items.borrow().is_empty()))
                    }
                    "get" => {
                        arity(1, 1)?;
                        let i = index_arg(&args[0], items.borrow().len())?;
                        Ok(items.borrow()[i].clone())
                    }
                    "contains" | "indexOf" => {
                        arity(1, 1)?;
                        let snapshot = items.borrow().clone();
                        let mut found = -1i64;
                        for (i, item) in snapshot.iter().enumerate() {
                            if vtl_equals(item, &args[0], &mut self.budget)? {
                                found = i as i64;
                                break;
                            }
                        }
                        Ok(if name == "contains" {
                            V::Bool(found >= 0)
                        } else {
                            V::Int(found)
                        })
                    }
                    "add" => {
                        arity(1, 1)?;
                        items.borrow_mut().push(args[0].clone());
                        Ok(V::Bool(true))
                    }
                    "addAll" => {
                        arity(1, 1)?;
                        let more: Vec<V> = match &args[0] {
                            V::List(o) => o.items.borrow().clone(),
                            V::Range(r) => {
                                if range_len(r) > 10_000_000 {
                                    return defer("a range too large to add");
                                }
                                (0..range_len(r)).map(|i| V::Int(range_item(r, i))).collect()
                            }
                            _ => return defer("addAll of no list"),
                        };
                        let any = !more.is_empty();
                        items.borrow_mut().extend(more);
                        Ok(V::Bool(any))
                    }
                    "set" => {
                        arity(2, 2)?;
                        let i = index_arg(&args[0], items.borrow().len())?;
                        let previous =
                            std::mem::replace(&mut items.borrow_mut()[i], args[1].clone());
                        Ok(previous)
                    }
                    "remove" => {
                        arity(1, 1)?;
                        if let V::Int(_) = args[0] {
                            let i = index_arg(&args[0], items.borrow().len())?;
                            return Ok(items.borrow_mut().remove(i));
                        }
                        let snapshot = items.borrow().clone();
                        for (i, item) in snapshot.iter().enumerate() {
                            if vtl_equals(item, &args[0], &mut self.budget)? {
                                items.borrow_mut().remove(i);
                                return Ok(V::Bool(true));
                            }
                        }
                        Ok(V::Bool(false))
                    }
                    "subList" => {
                        arity(2, 2)?;
                        let (V::Int(a), V::Int(b)) = (&args[0], &args[1]) else {
                            return defer("subList of no integers");
                        };
                        let len = items.borrow().len() as i64;
                        if *a < 0 || *b > len || a > b {
                            return defer("subList out of range");
                        }
                        Ok(V::list(items.borrow()[*a as usize..*b as usize].to_vec(), false))
                    }
                    _ => defer("a list method"),
                }
            }
            V::Range(r) => {
                let len = range_len(r);
                match name {
                    "size" => {
                        arity(0, 0)?;
                        Ok(V::Int(len as i64))
                    }
                    "isEmpty" => {
                        arity(0, 0)?;
                        Ok(V::Bool(false))
                    }
                    "get" => {
                        arity(1, 1)?;
                        Ok(V::Int(range_item(r, index_arg(&args[0], len)?)))
                    }
                    "contains" | "indexOf" => {
                        arity(1, 1)?;
                        let found = match &args[0] {
                            V::Int(x) => {
                                let (lo, hi) = (r.0.min(r.1), r.0.max(r.1));
                                if (lo..=hi).contains(x) {
                                    (x - r.0).abs()
                                } else {
                                    -1
                                }
                            }
                            V::Float(f) => {
                                let lo = r.0.min(r.1) as f64;
                                let hi = r.0.max(r.1) as f64;
                                if f.fract() == 0.0 && *f >= lo && *f <= hi {
                                    (*f as i64 - r.0).abs()
                                } else {
                                    -1
                                }
                            }
                            _ => {
                                if len > 1_000_000 {
                                    return defer("a search of a large range");
                                }
                                let mut found = -1;
                                for i in 0..len {
                                    if vtl_equals(
                                        &V::Int(range_item(r, i)),
                                        &args[0],
                                        &mut self.budget,
                                    )? {
                                        found = i as i64;
                                        break;
                                    }
                                }
                                found
                            }
                        };
                        Ok(if name == "contains" {
                            V::Bool(found >= 0)
                        } else {
                            V::Int(found)
                        })
                    }
                    _ => defer("a range method"),
                }
            }
            V::Map(m) => {
                let entries = &m.entries;
                match name {
                    "size" => {
                        arity(0, 0)?;
                        Ok(V::Int(entries.borrow().len() as i64))
                    }
                    "isEmpty" => {
                        arity(0, 0)?;
                        Ok(V::Bool(entries.borrow().is_empty()))
                    }
                    "get" | "containsKey" | "remove" => {
                        arity(1, 1)?;
                        let key = Key::from_value(&args[0])?;
                        Ok(match (name, key) {
                            ("get", Some(k)) => entries.borrow().get(&k).cloned().unwrap_or(V::Null),
                            ("containsKey", Some(k)) => V::Bool(entries.borrow().contains_key(&k)),
                            ("remove", Some(k)) => {
                                entries.borrow_mut().shift_remove(&k).unwrap_or(V::Null)
                            }
                            ("containsKey", None) => V::Bool(false),
                            _ => V::Null,
                        })
                    }
                    "containsValue" => {
                        arity(1, 1)?;
                        let snapshot: Vec<V> = entries.borrow().values().cloned().collect();
                        for item in &snapshot {
                            if vtl_equals(item, &args[0], &mut self.budget)? {
                                return Ok(V::Bool(true));
                            }
                        }
                        Ok(V::Bool(false))
                    }
                    "keySet" => {
                        arity(0, 0)?;
                        Ok(V::list(entries.borrow().keys().map(Key::to_value).collect(), false))
                    }
                    "values" => {
                        arity(0, 0)?;
                        Ok(V::list(entries.borrow().values().cloned().collect(), false))
                    }
                    "entrySet" => {
                        arity(0, 0)?;
                        Ok(V::list(
                            entries
                                .borrow()
                                .iter()
                                .map(|(k, v)| V::Entry(Rc::new((k.to_value(), v.clone()))))
                                .collect(),
                            false,
                        ))
                    }
                    "put" => {
                        arity(2, 2)?;
                        let key = Key::for_store(&args[0])?;
                        Ok(entries
                            .borrow_mut()
                            .insert(key, args[1].clone())
                            .unwrap_or(V::Null))
                    }
                    "putAll" => {
                        arity(1, 1)?;
                        let V::Map(other) = &args[0] else {
                            return defer("putAll of no map");
                        };
                        let more: Vec<(Key, V)> = other
                            .entries
                            .borrow()
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        let mut entries = entries.borrow_mut();
                        for (k, v) in more {
                            entries.insert(k, v);
                        }
                        Ok(V::Null)
                    }
                    _ => defer("a map method"),
                }
            }
            V::Entry(e) => {
                arity(0, 0)?;
                Ok(if name == "getKey" { e.0.clone() } else { e.1.clone() })
            }
            V::Int(_) | V::Float(_) => {
                arity(0, 0)?;
                match (name, v) {
                    ("intValue", V::Int(i)) => Ok(V::Int(*i)),
                    ("intValue", V::Float(f)) => {
                        if f.is_finite() && f.abs() < 9.2e18 {
                            Ok(V::Int(f.trunc() as i64))
                        } else {
                            defer("intValue of a large double")
                        }
                    }
                    ("doubleValue", V::Int(i)) => Ok(V::Float(*i as f64)),
                    ("doubleValue", _) => Ok(v.clone()),
                    _ => defer("a number method"),
                }
            }
            V::Bool(_) => {
                arity(0, 0)?;
                Ok(v.clone())
            }
            V::Input => self.input_method(name, args),
            V::Util => {
                arity(1, 1)?;
                self.util_method(name, &args[0])
            }
            V::Null => Ok(V::Null),
        }
    }

    fn string_method(&mut self, s: &Rc<str>, name: &str, args: Vec<V>) -> R<V> {
        let n = args.len();
        let arity = |lo: usize, hi: usize| -> R<()> {
            if n < lo || n > hi {
                defer("a method given the wrong number of arguments")
            } else {
                Ok(())
            }
        };
        let text: &str = s;
        match name {
            "length" => {
                arity(0, 0)?;
                Ok(V::Int(chars(text) as i64))
            }
            "isEmpty" => {
                arity(0, 0)?;
                Ok(V::Bool(text.is_empty()))
            }
            "charAt" => {
                arity(1, 1)?;
                let i = index_arg(&args[0], chars(text))?;
                Ok(V::Str(text.chars().nth(i).map(String::from).unwrap_or_default().into()))
            }
            "contains" => {
                arity(1, 1)?;
                let part = self.str_arg(&args[0])?;
                Ok(V::Bool(text.contains(part.as_str())))
            }
            "startsWith" => {
                arity(1, 2)?;
                let prefix = self.str_arg(&args[0])?;
                let offset = match args.get(1) {
                    None => 0,
                    Some(V::Int(o)) if *o >= 0 => *o as usize,
                    Some(_) => return defer("startsWith's offset"),
                };
                if offset > chars(text) {
                    return Ok(V::Bool(false));
                }
                Ok(V::Bool(char_tail(text, offset).starts_with(prefix.as_str())))
            }
            "endsWith" => {
                arity(1, 1)?;
                let suffix = self.str_arg(&args[0])?;
                Ok(V::Bool(text.ends_with(suffix.as_str())))
            }
            "indexOf" => {
                arity(1, 2)?;
                let needle = self.str_arg(&args[0])?;
                let start = match args.get(1) {
                    None => 0,
                    Some(V::Int(o)) => (*o).max(0) as usize,
                    Some(_) => return defer("indexOf's start"),
                };
                if start > chars(text) {
                    return Ok(V::Int(-1));
                }
                let tail = char_tail(text, start);
                Ok(V::Int(match tail.find(needle.as_str()) {
                    Some(b) => (start + chars(&tail[..b])) as i64,
                    None => -1,
                }))
            }
            "lastIndexOf" => {
                arity(1, 1)?;
                let needle = self.str_arg(&args[0])?;
                Ok(V::Int(match text.rfind(needle.as_str()) {
                    Some(b) => chars(&text[..b]) as i64,
                    None => -1,
                }))
            }
            "substring" => {
                arity(1, 2)?;
                let len = chars(text);
                let V::Int(begin) = args[0] else {
                    return defer("substring of no integer");
                };
                let end = match args.get(1) {
                    None => len as i64,
                    Some(V::Int(e)) => *e,
                    Some(_) => return defer("substring of no integer"),
                };
                if begin < 0 || end > len as i64 || begin > end {
                    return defer("substring out of range");
                }
                let tail = char_tail(text, begin as usize);
                let end_byte = tail
                    .char_indices()
                    .nth((end - begin) as usize)
                    .map_or(tail.len(), |(b, _)| b);
                Ok(V::str(&tail[..end_byte]))
            }
            "toLowerCase" | "toUpperCase" => {
                arity(0, 0)?;
                if !text.is_ascii() {
                    return defer("a case mapping beyond ASCII");
                }
                Ok(V::Str(
                    if name == "toLowerCase" {
                        text.to_ascii_lowercase()
                    } else {
                        text.to_ascii_uppercase()
                    }
                    .into(),
                ))
            }
            "trim" => {
                arity(0, 0)?;
                Ok(V::str(text.trim_matches(|c: char| c <= ' ')))
            }
            "replace" => {
                arity(2, 2)?;
                let target = self.str_arg(&args[0])?;
                let replacement = self.str_arg(&args[1])?;
                let result = text.replace(target.as_str(), &replacement);
                self.budget.produced(chars(&result))?;
                Ok(V::Str(result.into()))
            }
            "concat" => {
                arity(1, 1)?;
                let other = self.str_arg(&args[0])?;
                self.budget.produced(chars(text) + chars(&other))?;
                Ok(V::Str(format!("{text}{other}").into()))
            }
            "equals" => {
                arity(1, 1)?;
                Ok(V::Bool(vtl_equals(&V::Str(s.clone()), &args[0], &mut self.budget)?))
            }
            "equalsIgnoreCase" => {
                arity(1, 1)?;
                match &args[0] {
                    V::Str(o) if text.is_ascii() && o.is_ascii() => {
                        Ok(V::Bool(text.eq_ignore_ascii_case(o)))
                    }
                    V::Str(_) => defer("a case mapping beyond ASCII"),
                    _ => Ok(V::Bool(false)),
                }
            }
            // Java regular expressions, which the Python engine runs with the `regex` module: here
            // only a pattern that stands for a literal text (`,`, `\\'`), else it defers.
            "replaceAll" | "replaceFirst" => {
                arity(2, 2)?;
                let pattern = literal_pattern(&self.str_arg(&args[0])?)?;
                let replacement = java_replacement(&self.str_arg(&args[1])?, &pattern)?;
                let result = if name == "replaceAll" {
                    text.replace(pattern.as_str(), &replacement)
                } else {
                    text.replacen(pattern.as_str(), &replacement, 1)
                };
                self.budget.produced(chars(&result))?;
                Ok(V::Str(result.into()))
            }
            "matches" => {
                arity(1, 1)?;
                let pattern = literal_pattern(&self.str_arg(&args[0])?)?;
                Ok(V::Bool(text == pattern))
            }
            "split" => {
                arity(1, 2)?;
                let pattern = literal_pattern(&self.str_arg(&args[0])?)?;
                let most = match args.get(1) {
                    None => 0,
                    Some(V::Int(n)) => *n,
                    Some(_) => return defer("split's limit"),
                };
                // values.py's `_split` (Java's `String.split`) over the pattern's matches.
                let mut parts: Vec<&str> = Vec::new();
                let mut start = 0;
                for (at, _) in text.match_indices(pattern.as_str()) {
                    if most > 0 && parts.len() as i64 == most - 1 {
                        break;
                    }
                    parts.push(&text[start..at]);
                    start = at + pattern.len();
                }
                parts.push(&text[start..]);
                if most == 0 {
                    while parts.len() > 1 && parts.last() == Some(&"") {
                        parts.pop();
                    }
                    if parts == [""] && !text.is_empty() {
                        parts.clear();
                    }
                }
                Ok(V::list(parts.into_iter().map(V::str).collect(), false))
            }
            _ => defer("a string method"),
        }
    }

    fn document(&mut self) -> R<V> {
        if self.input.document.is_none() {
            match json::parse(&self.input.body) {
                Some(v) => self.input.document = Some(v),
                None => return defer("a payload json::parse does not read"),
            }
        }
        Ok(self.input.document.clone().unwrap_or(V::Null))
    }

    fn input_method(&mut self, name: &str, args: Vec<V>) -> R<V> {
        match (name, args.len()) {
            ("getBody", 0) => Ok(V::Str(self.input.body.clone())),
            ("path" | "json", 1) => {
                let path = self.str_arg(&args[0])?;
                let document = self.document()?;
                let found = query(&document, &path)?;
                if name == "path" {
                    Ok(copy(&found))
                } else {
                    Ok(V::Str(to_json(&found, &mut self.budget)?.into()))
                }
            }
            ("params", 0) => {
                if self.input.all_params.is_none() {
                    let mut groups = Map::default();
                    for group in ["path", "querystring", "header"] {
                        let entries = match get_key(&self.input.params, group) {
                            V::Map(m) => m.entries.borrow().clone(),
                            _ => Map::default(),
                        };
                        groups.insert(Key::Str(group.into()), V::map(entries, MapKind::Vtl));
                    }
                    self.input.all_params = Some(V::map(groups, MapKind::Vtl));
                }
                Ok(self.input.all_params.clone().unwrap_or(V::Null))
            }
            ("params", 1) => {
                let key = self.str_arg(&args[0])?;
                for group in ["path", "querystring", "header"] {
                    if let V::Map(m) = get_key(&self.input.params, group) {
                        if let Some(v) = get_str(&m.entries.borrow(), &key) {
                            return Ok(v);
                        }
                    }
                }
                if let V::Map(m) = get_key(&self.input.params, "header") {
                    for (header, value) in m.entries.borrow().iter() {
                        let Key::Str(header) = header else {
                            return defer("a header name that is no string");
                        };
                        if !header.is_ascii() || !key.is_ascii() {
                            return defer("a case mapping beyond ASCII");
                        }
                        if header.eq_ignore_ascii_case(&key) {
                            return Ok(value.clone());
                        }
                    }
                }
                Ok(V::str(""))
            }
            _ => defer("an $input method given the wrong number of arguments"),
        }
    }

    fn util_method(&mut self, name: &str, arg: &V) -> R<V> {
        if name == "escapeJavaScript" && matches!(arg, V::Null) {
            return Ok(V::Null);
        }
        let text = self.str_arg(arg)?;
        let result = match name {
            "escapeJavaScript" => {
                let mut out = String::with_capacity(text.len() + 8);
                for c in text.chars() {
                    match c {
                        '\'' => out.push_str("\\'"),
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '/' => out.push_str("\\/"),
                        '\u{8}' => out.push_str("\\b"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        '\u{c}' => out.push_str("\\f"),
                        '\r' => out.push_str("\\r"),
                        c if (c as u32) < 32 => out.push_str(&format!("\\u{:04X}", c as u32)),
                        c if (c as u32) < 128 => out.push(c),
                        c => {
                            let mut units = [0u16; 2];
                            for unit in c.encode_utf16(&mut units) {
                                out.push_str(&format!("\\u{:04X}", unit));
                            }
                        }
                    }
                }
                out
            }
            "parseJson" => {
                return match json::parse(&text) {
                    Some(v) => Ok(v),
                    None => defer("parseJson of what json::parse does not read"),
                }
            }
            "urlEncode" => {
                let mut out = String::with_capacity(text.len());
                for b in text.bytes() {
                    match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'*' => {
                            out.push(b as char)
                        }
                        b' ' => out.push('+'),
                        b => out.push_str(&format!("%{b:02X}")),
                    }
                }
                out
            }
            "urlDecode" => {
                if !text.is_ascii() {
                    return defer("urlDecode beyond ASCII");
                }
                let bytes = text.as_bytes();
                let mut out = Vec::with_capacity(bytes.len());
                let mut i = 0;
                while i < bytes.len() {
                    match bytes[i] {
                        b'+' => out.push(b' '),
                        b'%' => {
                            let hex = text.get(i + 1..i + 3).filter(|h| {
                                h.bytes().all(|b| b.is_ascii_hexdigit())
                            });
                            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                                Some(b) => {
                                    out.push(b);
                                    i += 2;
                                }
                                None => return defer("urlDecode of a bad escape"),
                            }
                        }
                        b => out.push(b),
                    }
                    i += 1;
                }
                match String::from_utf8(out) {
                    Ok(s) => return Ok(V::Str(s.into())),
                    Err(_) => return defer("urlDecode to no UTF-8"),
                }
            }
            "base64Encode" => base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            "base64Decode" => {
                let mut kept: String = text
                    .chars()
                    .map(|c| match c {
                        '-' => '+',
                        '_' => '/',
                        c => c,
                    })
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
                    .collect();
                if kept.len() % 4 == 1 {
                    kept.pop();
                }
                let engine = base64::engine::GeneralPurpose::new(
                    &base64::alphabet::STANDARD,
                    base64::engine::GeneralPurposeConfig::new()
                        .with_decode_allow_trailing_bits(true)
                        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
                );
                let bytes = match engine.decode(kept.as_bytes()) {
                    Ok(b) => b,
                    Err(_) => return defer("base64Decode"),
                };
                match String::from_utf8(bytes) {
                    Ok(s) => return Ok(V::Str(s.into())),
                    Err(_) => return defer("base64Decode to no UTF-8"),
                }
            }
            _ => return defer("a $util method"),
        };
        self.budget.produced(chars(&result))?;
        Ok(V::Str(result.into()))
    }
}

/// The text a regular expression matches when it is a literal one: characters other than
/// metacharacters, and backslash escapes of punctuation; any other pattern (or an empty one,
/// whose empty matches Python's and Java's engines place alike only mostly) defers.
fn literal_pattern(pattern: &str) -> R<String> {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => out.push(e),
                _ => return defer("a regular expression"),
            },
            '.' | '^' | '$' | '*' | '+' | '?' | '{' | '}' | '[' | ']' | '|' | '(' | ')' => {
                return defer("a regular expression")
            }
            c if c.is_ascii() => out.push(c),
            _ => return defer("a regular expression beyond ASCII"),
        }
    }
    if out.is_empty() {
        return defer("an empty regular expression");
    }
    Ok(out)
}

/// Java's `Matcher.replaceAll` replacement (values.py's `_java_replacement`) for a literal
/// pattern: `\x` is x, `$0` the match; another group or a malformed one defers (Python raises).
fn java_replacement(replacement: &str, matched: &str) -> R<String> {
    let mut out = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => out.push(e),
                None => return defer("a replacement ending in a backslash"),
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() || digits.parse::<u64>().ok() != Some(0) {
                    return defer("a replacement's group reference");
                }
                out.push_str(matched);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn char_tail(text: &str, chars_in: usize) -> &str {
    if text.is_ascii() {
        return &text[chars_in.min(text.len())..];
    }
    match text.char_indices().nth(chars_in) {
        Some((b, _)) => &text[b..],
        None => "",
    }
}

/// values.py's `_index` and `_check_range`: an integer within `0..len`.
fn index_arg(v: &V, len: usize) -> R<usize> {
    match v {
        V::Int(i) if *i >= 0 && (*i as usize) < len => Ok(*i as usize),
        _ => defer("an index out of range or no integer"),
    }
}

fn get_key(v: &V, key: &str) -> V {
    match v {
        V::Map(m) => get_str(&m.entries.borrow(), key).unwrap_or(V::Null),
        _ => V::Null,
    }
}

/// values.py's `get_index` (`$a[i]`, `$a['k']`): a map's key or a list's item, else null.
pub fn get_index(v: &V, index: &V) -> R<V> {
    match v {
        V::Map(m) => Ok(match Key::from_value(index)? {
            Some(k) => m.entries.borrow().get(&k).cloned().unwrap_or(V::Null),
            None => V::Null,
        }),
        V::List(l) => Ok(match index {
            V::Int(i) if *i >= 0 => l.items.borrow().get(*i as usize).cloned().unwrap_or(V::Null),
            _ => V::Null,
        }),
        V::Range(r) => Ok(match index {
            V::Int(i) if *i >= 0 && (*i as usize) < range_len(r) => {
                V::Int(range_item(r, *i as usize))
            }
            _ => V::Null,
        }),
        _ => Ok(V::Null),
    }
}

/// airspeed's `current[index]` for a chained literal index (`$a[0][1]`): Python's indexing,
/// negative positions included; what Python refuses defers.
fn subscript(v: &V, index: &V) -> R<V> {
    let position = |i: i64, len: usize| -> R<usize> {
        let p = if i < 0 { i + len as i64 } else { i };
        if p < 0 || p as usize >= len {
            defer("an index out of range")
        } else {
            Ok(p as usize)
        }
    };
    match (v, index) {
        (V::Map(m), _) => match Key::from_value(index)? {
            Some(k) => match m.entries.borrow().get(&k) {
                Some(found) => Ok(found.clone()),
                None => defer("a missing key"),
            },
            None => defer("a missing key"),
        },
        (V::List(l), V::Int(i)) => {
            let items = l.items.borrow();
            Ok(items[position(*i, items.len())?].clone())
        }
        (V::Range(r), V::Int(i)) => Ok(V::Int(range_item(r, position(*i, range_len(r))?))),
        (V::Str(s), V::Int(i)) => {
            let p = position(*i, chars(s))?;
            Ok(V::Str(s.chars().nth(p).map(String::from).unwrap_or_default().into()))
        }
        _ => defer("an index Python refuses"),
    }
}

/// The method names of values.py's tables for a value's class.
fn methods(v: &V) -> &'static [&'static str] {
    match v {
        V::Str(_) => &[
            "length",
            "isEmpty",
            "charAt",
            "contains",
            "startsWith",
            "endsWith",
            "indexOf",
            "lastIndexOf",
            "substring",
            "toLowerCase",
            "toUpperCase",
            "trim",
            "replace",
            "replaceAll",
            "replaceFirst",
            "matches",
            "split",
            "concat",
            "equals",
            "equalsIgnoreCase",
            "toString",
        ],
        V::Bool(_) => &["toString", "booleanValue"],
        V::Int(_) | V::Float(_) => &["toString", "intValue", "doubleValue"],
        V::List(_) => &[
            "size", "isEmpty", "get", "contains", "indexOf", "add", "addAll", "set", "remove",
            "subList", "toString",
        ],
        V::Map(_) => &[
            "size",
            "isEmpty",
            "get",
            "containsKey",
            "containsValue",
            "keySet",
            "values",
            "entrySet",
            "put",
            "putAll",
            "remove",
            "toString",
        ],
        V::Range(_) => &["size", "isEmpty", "get", "contains", "indexOf", "toString"],
        V::Entry(_) => &["getKey", "getValue", "toString"],
        V::Input => &["getBody", "path", "json", "params"],
        V::Util => &[
            "escapeJavaScript",
            "parseJson",
            "urlEncode",
            "urlDecode",
            "base64Encode",
            "base64Decode",
        ],
        V::Null => &[],
    }
}

/// A deep copy, as values.py's `from_python` makes of each `$input.path` result.
fn copy(v: &V) -> V {
    match v {
        V::Map(m) => V::map(
            m.entries
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), copy(v)))
                .collect(),
            MapKind::Vtl,
        ),
        V::List(l) => V::list(l.items.borrow().iter().map(copy).collect(), true),
        other => other.clone(),
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Name(String),
    Index(usize),
    Wildcard,
}

/// The paths this engine reads the way the Python engine's python-jsonpath does (with Jayway's
/// result shapes): `$`, then `.name`, `['name']`, `[n]`, `.*`, `[*]`; any other path defers.
fn steps(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.strip_prefix('$')?;
    let mut steps = Vec::new();
    let name_like = |s: &str| {
        s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(".*") {
            steps.push(Step::Wildcard);
            rest = after;
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if !name_like(&after[..end]) {
                return None;
            }
            steps.push(Step::Name(after[..end].to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("[*]") {
            steps.push(Step::Wildcard);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("['") {
            let end = after.find("']")?;
            let name = &after[..end];
            if !name_like(name) {
                return None;
            }
            steps.push(Step::Name(name.to_string()));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let digits = &after[..end];
            if digits.is_empty()
                || digits.len() > 9
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || (digits.len() > 1 && digits.starts_with('0'))
            {
                return None;
            }
            steps.push(Step::Index(digits.parse().ok()?));
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// `$input.path`'s and `$input.json`'s JSONPath: a definite path's one value (or null), any
/// other's list of matches.
fn query(document: &V, path: &str) -> R<V> {
    let Some(steps) = steps(path) else {
        return defer("a JSONPath outside this engine's subset");
    };
    let mut matches = vec![document.clone()];
    for step in &steps {
        let mut next = Vec::new();
        for m in &matches {
            match (step, m) {
                (Step::Name(n), V::Map(map)) => {
                    if let Some(v) = get_str(&map.entries.borrow(), n) {
                        next.push(v);
                    }
                }
                (Step::Index(i), V::List(l)) => {
                    if let Some(v) = l.items.borrow().get(*i) {
                        next.push(v.clone());
                    }
                }
                // python-jsonpath reads an index on an object as the key of its digits.
                (Step::Index(i), V::Map(map)) => {
                    if let Some(v) = get_str(&map.entries.borrow(), &i.to_string()) {
                        next.push(v);
                    }
                }
                (Step::Wildcard, V::Map(map)) => next.extend(map.entries.borrow().values().cloned()),
                (Step::Wildcard, V::List(l)) => next.extend(l.items.borrow().iter().cloned()),
                _ => {}
            }
        }
        matches = next;
    }
    if steps.contains(&Step::Wildcard) {
        Ok(V::list(matches, true))
    } else {
        Ok(matches.into_iter().next().unwrap_or(V::Null))
    }
}
