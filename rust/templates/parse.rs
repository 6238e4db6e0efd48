//! The template's syntax, parsed as the Python engine parses it: that engine is airspeed-ext, a
//! recursive-descent parser of regular expressions, so each function here is one of its elements
//! (named in the comments) and tries the same alternatives in the same order, including where a
//! failed alternative leaves the text to the next one (`#foo` that is no directive is text) and
//! how much white space a directive takes with it (`#if(..)`, `#end` and `#set(..)` take the rest
//! of their line when it is blank; `#else` and `#foreach(..)` do not). Constructs this engine does
//! not render (`#macro`, `#define`, `#evaluate`, `#include`, `#parse`, `#return`, the binary
//! `not`, an index evaluated against the value it indexes) make the template Unsupported.
//!
//! The source is ASCII (see `compile`), so byte offsets are character offsets and Python's
//! Unicode classes (`\s`, `\w`, `\d`, case-insensitive `[a-z]`) reduce to their ASCII members.

use super::CompileError;

#[derive(Debug)]
pub enum Node {
    Text(String),
    Ref(Reference),
    If {
        cond: Val,
        then: Vec<Node>,
        elseifs: Vec<(Val, Vec<Node>)>,
        otherwise: Option<Vec<Node>>,
    },
    Set(Assign),
    Foreach {
        var: String,
        items: Val,
        body: Vec<Node>,
    },
    Stop,
    Break,
}

/// `$x`, `${x}`, `$!x`, `${x|alternate}` in text.
#[derive(Debug)]
pub struct Reference {
    pub expr: Option<VarExpr>,
    pub alternate: Option<Val>,
    /// The reference's own text, written when it has no expression (`$` alone).
    pub text: String,
}

/// `name`, `name(args)` or `name[index]`, then `.more` or `[index]`.
#[derive(Debug)]
pub struct VarExpr {
    pub name: String,
    pub params: Option<Vec<Val>>,
    pub index: Option<Box<Val>>,
    pub sub: Option<Box<Sub>>,
}

#[derive(Debug)]
pub enum Sub {
    Dot(VarExpr),
    /// `$a[0][1]`: a literal index applied with Python's `value[index]`.
    Index(Val, Option<Box<Sub>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl Op {
    /// airspeed's precedence (a lower number binds tighter), `!=` apart from `==` as it has it.
    pub fn precedence(self) -> u8 {
        match self {
            Op::Mul | Op::Div | Op::Mod => 4,
            Op::Add | Op::Sub => 5,
            Op::Lt | Op::Le | Op::Gt | Op::Ge => 7,
            Op::Eq => 8,
            Op::Ne => 9,
            Op::And => 12,
            Op::Or => 13,
        }
    }
}

#[derive(Debug)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Interp(Vec<Node>),
    Ref(VarExpr),
    List(Vec<Val>),
    Range(Box<Val>, Box<Val>),
    Map(Vec<(Val, Val)>),
    Expr(Vec<Val>, Vec<Op>),
    Not(Box<Val>),
}

#[derive(Debug)]
pub struct Assign {
    pub root: String,
    pub terms: Vec<Val>,
    pub value: Val,
}

enum E {
    NoMatch,
    Fail(CompileError),
}

type R<T> = Result<(T, usize), E>;

fn syntax(what: &str, at: usize) -> E {
    E::Fail(CompileError::Syntax(format!("expected {what} at offset {at}")))
}

fn unsupported(what: &str) -> E {
    E::Fail(CompileError::Unsupported(what.to_string()))
}

/// Python's `\s` on ASCII.
fn space(b: u8) -> bool {
    matches!(b, 9..=13 | 28..=32)
}

fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Nesting this parser accepts; deeper templates go to the Python engine (whose own recursion
/// limit decides them).
const MAX_DEPTH: usize = 60;

pub fn parse(src: &str) -> Result<Vec<Node>, CompileError> {
    let mut p = P {
        s: src.as_bytes(),
        src,
        depth: 0,
    };
    match p.block(0) {
        Ok((nodes, end)) if end == src.len() => Ok(nodes),
        Ok((_, end)) => Err(CompileError::Syntax(format!(
            "expected a block element at offset {end}"
        ))),
        Err(E::NoMatch) => Err(CompileError::Syntax("no block".into())),
        Err(E::Fail(e)) => Err(e),
    }
}

struct P<'a> {
    s: &'a [u8],
    src: &'a str,
    depth: usize,
}

impl P<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.s.get(i).copied()
    }
    fn ws(&self, mut i: usize) -> usize {
        while self.at(i).is_some_and(space) {
            i += 1;
        }
        i
    }
    fn st(&self, mut i: usize) -> usize {
        while matches!(self.at(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        i
    }
    fn lit(&self, i: usize, word: &str) -> bool {
        self.s[i.min(self.s.len())..].starts_with(word.as_bytes())
    }
    fn lit_ci(&self, i: usize, word: &str) -> bool {
        self.s
            .get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    }
    /// `\b` after a keyword that ends in a word character.
    fn boundary(&self, i: usize) -> bool {
        !self.at(i).is_some_and(word)
    }
    fn keyword_ci(&self, i: usize, word: &str) -> bool {
        self.lit_ci(i, word) && self.boundary(i + word.len())
    }
    fn deeper(&mut self) -> Result<(), E> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(unsupported("nesting deeper than this engine takes"));
        }
        Ok(())
    }

    /// `[ \t\r]*\n`, when there.
    fn rest_of_line(&self, i: usize) -> usize {
        let mut j = i;
        while matches!(self.at(j), Some(b' ' | b'\t' | b'\r')) {
            j += 1;
        }
        if self.at(j) == Some(b'\n') {
            j + 1
        } else {
            i
        }
    }

    // Block: its elements, in airspeed's order, until none matches.
    fn block(&mut self, mut i: usize) -> R<Vec<Node>> {
        self.deeper()?;
        let mut nodes = Vec::new();
        loop {
            match self.element(i) {
                Ok((node, end)) => {
                    if let Some(node) = node {
                        nodes.push(node);
                    }
                    i = end;
                }
                Err(E::NoMatch) => break,
                Err(e) => return Err(e),
            }
        }
        self.depth -= 1;
        Ok((nodes, i))
    }

    fn element(&mut self, i: usize) -> R<Option<Node>> {
        if i >= self.s.len() {
            return Err(E::NoMatch);
        }
        macro_rules! attempt {
            ($e:expr) => {
                match $e {
                    Err(E::NoMatch) => {}
                    other => return other,
                }
            };
        }
        attempt!(self.text(i).map(|(t, e)| (Some(Node::Text(t)), e)));
        attempt!(self
            .reference(i)
            .map(|(r, e)| (Some(Node::Ref(r)), e)));
        attempt!(self.comment(i).map(|e| (None, e)));
        attempt!(self.if_directive(i).map(|(n, e)| (Some(n), e)));
        attempt!(self.set_directive(i).map(|(n, e)| (Some(n), e)));
        attempt!(self.foreach(i).map(|(n, e)| (Some(n), e)));
        for (name, ci) in [("#include", true), ("#parse", true), ("#macro", true), ("#define", true)] {
            if ci && self.keyword_ci(i, name) {
                return Err(unsupported(name));
            }
        }
        if self.keyword_ci(i, "#stop") {
            return Ok((Some(Node::Stop), i + 5));
        }
        attempt!(self.break_directive(i).map(|e| (Some(Node::Break), e)));
        for name in ["#return", "#evaluate"] {
            if self.lit(i, name) && self.boundary(i + name.len()) {
                return Err(unsupported(name));
            }
        }
        attempt!(self
            .macro_call(i)
            .map(|e| (Some(Node::Text(self.src[i..e].to_string())), e)));
        // FallthroughHashText: a `#` that starts no block-ending directive.
        if self.at(i) == Some(b'#')
            && !["end", "else", "{end}", "{else}", "{elseif}"]
                .iter()
                .any(|w| self.lit(i + 1, w))
        {
            return Ok((Some(Node::Text("#".into())), i + 1));
        }
        Err(E::NoMatch)
    }

    // Text.PLAIN, then its `\$x` / `\#x` unescaping.
    fn text(&self, i: usize) -> R<String> {
        let c = self.s[i];
        let escapable = |j: usize| matches!(self.at(j), Some(b'$' | b'#'));
        let end = if !matches!(c, b'\\' | b'$' | b'#') || (c == b'\\' && escapable(i + 1)) {
            let mut j = i;
            loop {
                match self.at(j) {
                    Some(b'\\') if escapable(j + 1) => j += 2,
                    Some(b'\\' | b'$' | b'#') | None => break,
                    Some(_) => j += 1,
                }
            }
            j
        } else if c == b'$' {
            match self.at(i + 1) {
                None => i + 1,
                Some(n) if n == b'!' || n == b'{' || word(n) => return Err(E::NoMatch),
                Some(_) => i + 2,
            }
        } else if c == b'#' {
            if i + 1 == self.s.len() || (self.at(i + 1) == Some(b'\n') && i + 2 == self.s.len()) {
                i + 1
            } else {
                let mut j = i + 1;
                while self
                    .at(j)
                    .is_some_and(|b| !(b == b'{' || b == b'}' || b.is_ascii_alphanumeric() || b == b'#' || b == b'*'))
                {
                    j += 1;
                }
                if j == i + 1 {
                    return Err(E::NoMatch);
                }
                j
            }
        } else if i + 1 < self.s.len() {
            i + 2 // `\\.`
        } else {
            return Err(E::NoMatch);
        };
        let raw = &self.s[i..end];
        let mut out = Vec::with_capacity(raw.len());
        let mut k = 0;
        while k < raw.len() {
            if raw[k] == b'\\'
                && matches!(raw.get(k + 1), Some(b'$' | b'#'))
                && raw.get(k + 2).is_some_and(|b| !space(*b))
            {
                k += 1;
                out.push(raw[k]);
                k += 1;
                while k < raw.len() && !space(raw[k]) {
                    out.push(raw[k]);
                    k += 1;
                }
            } else {
                out.push(raw[k]);
                k += 1;
            }
        }
        Ok((String::from_utf8(out).unwrap_or_default(), end))
    }

    // Comment: `## ...\n` or `#* ... *#` (and a blank rest of its line).
    fn comment(&self, i: usize) -> Result<usize, E> {
        if self.lit(i, "##") {
            return Ok(match self.s[i + 2..].iter().position(|b| *b == b'\n') {
                Some(n) => i + 2 + n + 1,
                None => self.s.len(),
            });
        }
        if self.lit(i, "#*") {
            let from = i + 2;
            if let Some(n) = self.src[from..].find("*#") {
                let end = from + n + 2;
                let j = self.st(end);
                return Ok(if self.at(j) == Some(b'\n') { j + 1 } else { end });
            }
        }
        Err(E::NoMatch)
    }

    // FormalReference.
    fn reference(&mut self, i: usize) -> R<Reference> {
        if self.at(i) != Some(b'$') {
            return Err(E::NoMatch);
        }
        let mut j = i + 1;
        if self.at(j) == Some(b'!') {
            j += 1;
        }
        let braces = self.at(j) == Some(b'{');
        if braces {
            j += 1;
        }
        let expr = match self.var_expr(j) {
            Ok((e, end)) => {
                j = end;
                Some(e)
            }
            Err(E::NoMatch) => None,
            Err(e) => return Err(e),
        };
        let mut alternate = None;
        if braces {
            if self.at(j) == Some(b'|') {
                let (v, end) = self.require_value(j + 1, "expression")?;
                alternate = Some(v);
                j = end;
            }
            if self.at(j) != Some(b'}') {
                return Err(syntax("}", j));
            }
            j += 1;
        }
        Ok((
            Reference {
                expr,
                alternate,
                text: self.src[i..j].to_string(),
            },
            j,
        ))
    }

    // VariableExpression: NameOrCall, then an optional SubExpression.
    fn var_expr(&mut self, i: usize) -> R<VarExpr> {
        let mut j = i;
        while self.at(j).is_some_and(|b| word(b) || b == b'-') {
            j += 1;
        }
        if j == i || !(self.s[i].is_ascii_alphabetic() || self.s[i] == b'_') {
            return Err(E::NoMatch);
        }
        self.deeper()?;
        let name = self.src[i..j].to_string();
        let mut params = None;
        let mut index = None;
        match self.param_list(j) {
            Ok((p, end)) => {
                params = Some(p);
                j = end;
            }
            Err(E::NoMatch) => match self.array_index(j) {
                Ok((v, end)) => {
                    index = Some(Box::new(v));
                    j = end;
                }
                Err(E::NoMatch) => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
        let sub = match self.sub(j) {
            Ok((s, end)) => {
                j = end;
                Some(Box::new(s))
            }
            Err(E::NoMatch) => None,
            Err(e) => return Err(e),
        };
        self.depth -= 1;
        Ok((
            VarExpr {
                name,
                params,
                index,
                sub,
            },
            j,
        ))
    }

    // SubExpression: `.` VariableExpression, else (after any `.`) ArrayIndex and more.
    fn sub(&mut self, i: usize) -> R<Sub> {
        let mut j = i;
        if self.at(i) == Some(b'.') {
            j = i + 1;
            match self.var_expr(j) {
                Ok((e, end)) => return Ok((Sub::Dot(e), end)),
                Err(E::NoMatch) => {}
                Err(e) => return Err(e),
            }
        }
        let (index, mut end) = self.array_index(j)?;
        if !matches!(index, Val::Int(_) | Val::Str(_)) {
            return Err(unsupported("an index evaluated against the value it indexes"));
        }
        let more = match self.sub(end) {
            Ok((s, e)) => {
                end = e;
                Some(Box::new(s))
            }
            Err(E::NoMatch) => None,
            Err(e) => return Err(e),
        };
        Ok((Sub::Index(index, more), end))
    }

    // ParameterList.
    fn param_list(&mut self, i: usize) -> R<Vec<Val>> {
        if self.at(i) != Some(b'(') {
            return Err(E::NoMatch);
        }
        let (values, j) = self.value_list(self.ws(i + 1))?;
        let j = self.ws(j);
        if self.at(j) != Some(b')') {
            return Err(syntax(")", j));
        }
        Ok((values, j + 1))
    }

    // ValueList: never fails to match (it may be empty).
    fn value_list(&mut self, i: usize) -> R<Vec<Val>> {
        let mut values = Vec::new();
        let mut j = i;
        match self.value(j) {
            Ok((v, end)) => {
                values.push(v);
                j = end;
            }
            Err(E::NoMatch) => return Ok((values, j)),
            Err(e) => return Err(e),
        }
        loop {
            let k = self.ws(j);
            if self.at(k) != Some(b',') {
                return Ok((values, j));
            }
            let (v, end) = self.require_value(self.ws(k + 1), "value")?;
            values.push(v);
            j = end;
        }
    }

    // ArrayIndex: `[` FormalReference | IntegerLiteral | StringLiteral | InterpolatedString |
    // ParenthesizedExpression `]`.
    fn array_index(&mut self, i: usize) -> R<Val> {
        if self.at(i) != Some(b'[') {
            return Err(E::NoMatch);
        }
        let j = self.st(i + 1);
        let attempts: [fn(&mut Self, usize) -> R<Val>; 5] = [
            Self::ref_value,
            Self::int_literal,
            Self::string_literal,
            Self::interpolated,
            Self::parenthesized,
        ];
        for attempt in attempts {
            match attempt(self, j) {
                Ok((v, end)) => {
                    let end = self.st(end);
                    if self.at(end) != Some(b']') {
                        return Err(syntax("]", end));
                    }
                    return Ok((v, end + 1));
                }
                Err(E::NoMatch) => {}
                Err(e) => return Err(e),
            }
        }
        Err(syntax("integer index or object key", j))
    }

    fn require_value(&mut self, i: usize, what: &str) -> R<Val> {
        match self.value(i) {
            Err(E::NoMatch) => Err(syntax(what, i)),
            other => other,
        }
    }

    // Value, in airspeed's order of alternatives.
    fn value(&mut self, i: usize) -> R<Val> {
        self.deeper()?;
        let attempts: [fn(&mut Self, usize) -> R<Val>; 11] = [
            Self::null_literal,
            Self::ref_value,
            Self::float_literal,
            Self::int_literal,
            Self::string_literal,
            Self::interpolated,
            Self::array_literal,
            Self::dict_literal,
            Self::parenthesized,
            Self::unary,
            Self::bool_literal,
        ];
        for attempt in attempts {
            match attempt(self, i) {
                Err(E::NoMatch) => {}
                other => {
                    self.depth -= 1;
                    return other;
                }
            }
        }
        self.depth -= 1;
        Err(E::NoMatch)
    }

    fn null_literal(&mut self, i: usize) -> R<Val> {
        if self.lit(i, "null") {
            Ok((Val::Null, i + 4))
        } else {
            Err(E::NoMatch)
        }
    }

    fn bool_literal(&mut self, i: usize) -> R<Val> {
        if self.lit_ci(i, "true") {
            Ok((Val::Bool(true), i + 4))
        } else if self.lit_ci(i, "false") {
            Ok((Val::Bool(false), i + 5))
        } else {
            Err(E::NoMatch)
        }
    }

    /// A FormalReference as a value: its expression (any `|alternate` is not used there).
    fn ref_value(&mut self, i: usize) -> R<Val> {
        let (r, end) = self.reference(i)?;
        match r.expr {
            Some(e) => Ok((Val::Ref(e), end)),
            None => Err(unsupported("a `$` without a name as a value")),
        }
    }

    fn digits(&self, mut i: usize) -> usize {
        while self.at(i).is_some_and(|b| b.is_ascii_digit()) {
            i += 1;
        }
        i
    }

    // FloatingPointLiteral: `-?\d*\.\d+`.
    fn float_literal(&mut self, i: usize) -> R<Val> {
        let start = if self.at(i) == Some(b'-') { i + 1 } else { i };
        let dot = self.digits(start);
        if self.at(dot) != Some(b'.') {
            return Err(E::NoMatch);
        }
        let end = self.digits(dot + 1);
        if end == dot + 1 {
            return Err(E::NoMatch);
        }
        let text = format!(
            "{}0{}",
            &self.src[i..start],
            &self.src[start..end]
        );
        match text.parse::<f64>() {
            Ok(f) => Ok((Val::Float(f), end)),
            Err(_) => Err(unsupported("a number literal")),
        }
    }

    // IntegerLiteral: `-?\d+`.
    fn int_literal(&mut self, i: usize) -> R<Val> {
        let start = if self.at(i) == Some(b'-') { i + 1 } else { i };
        let end = self.digits(start);
        if end == start {
            return Err(E::NoMatch);
        }
        match self.src[i..end].parse::<i64>() {
            Ok(n) => Ok((Val::Int(n), end)),
            Err(_) => Err(unsupported("an integer literal past 64 bits")),
        }
    }

    // StringLiteral: `'[^']*'`, no escapes.
    fn string_literal(&mut self, i: usize) -> R<Val> {
        if self.at(i) != Some(b'\'') {
            return Err(E::NoMatch);
        }
        match self.src[i + 1..].find('\'') {
            Some(n) => Ok((Val::Str(self.src[i + 1..i + 1 + n].to_string()), i + n + 2)),
            None => Err(E::NoMatch),
        }
    }

    // InterpolatedStringLiteral: `"((?:[^"]|"")*)"`, `""` for a quote, its content a Block.
    fn interpolated(&mut self, i: usize) -> R<Val> {
        if self.at(i) != Some(b'"') {
            return Err(E::NoMatch);
        }
        // The group's possible ends form one chain; the regex takes the last that a `"` closes.
        let mut p = i + 1;
        let mut close = None;
        loop {
            match self.at(p) {
                Some(b'"') => {
                    close = Some(p);
                    if self.at(p + 1) == Some(b'"') {
                        p += 2;
                    } else {
                        break;
                    }
                }
                Some(_) => p += 1,
                None => break,
            }
        }
        let Some(close) = close else {
            return Err(E::NoMatch);
        };
        let content = self.src[i + 1..close].replace("\"\"", "\"");
        let mut inner = P {
            s: content.as_bytes(),
            src: &content,
            depth: self.depth,
        };
        let (nodes, _) = inner.block(0)?;
        if nodes
            .iter()
            .any(|n| !matches!(n, Node::Text(_) | Node::Ref(_)))
        {
            return Err(unsupported("a directive inside a string"));
        }
        Ok((Val::Interp(nodes), close + 1))
    }

    // ArrayLiteral: `[` Range | ValueList `]`.
    fn array_literal(&mut self, i: usize) -> R<Val> {
        if self.at(i) != Some(b'[') {
            return Err(E::NoMatch);
        }
        let j = self.st(i + 1);
        let (v, end) = match self.range(j) {
            Ok(r) => r,
            Err(E::NoMatch) => {
                let (values, end) = self.value_list(j)?;
                (Val::List(values), end)
            }
            Err(e) => return Err(e),
        };
        let end = self.st(end);
        if self.at(end) != Some(b']') {
            return Err(syntax("]", end));
        }
        Ok((v, end + 1))
    }

    fn range_end(&mut self, i: usize) -> R<Val> {
        match self.reference(i) {
            Ok((r, end)) => Ok((
                match r.expr {
                    Some(e) => Val::Ref(e),
                    None => Val::Null, // checked by the caller once `..` is seen
                },
                end,
            )),
            Err(E::NoMatch) => self.int_literal(i),
            Err(e) => Err(e),
        }
    }

    // Range: (FormalReference | IntegerLiteral) `..` (FormalReference | IntegerLiteral).
    fn range(&mut self, i: usize) -> R<Val> {
        let (first, j) = self.range_end(i)?;
        let k = self.st(j);
        if !self.lit(k, "..") {
            return Err(E::NoMatch);
        }
        if matches!(first, Val::Null) {
            return Err(unsupported("a `$` without a name in a range"));
        }
        let (last, end) = self.range_end(self.st(k + 2))?;
        if matches!(last, Val::Null) {
            return Err(unsupported("a `$` without a name in a range"));
        }
        Ok((Val::Range(Box::new(first), Box::new(last)), end))
    }

    // DictionaryLiteral.
    fn dict_literal(&mut self, i: usize) -> R<Val> {
        if self.at(i) != Some(b'{') {
            return Err(E::NoMatch);
        }
        let mut j = self.ws(i + 1);
        let mut pairs = Vec::new();
        if self.at(j) == Some(b'}') {
            return Ok((Val::Map(pairs), j + 1));
        }
        loop {
            let (key, end) = self.value(j)?;
            let k = self.ws(end);
            if self.at(k) != Some(b':') {
                return Err(syntax(":", k));
            }
            let (value, end) = self.value(self.ws(k + 1))?;
            pairs.push((key, value));
            let k = self.ws(end);
            if self.at(k) == Some(b',') {
                j = self.ws(k + 1);
            } else {
                j = end;
                break;
            }
        }
        let k = self.ws(j);
        if self.at(k) != Some(b'}') {
            return Err(syntax("}", k));
        }
        Ok((Val::Map(pairs), k + 1))
    }

    // ParenthesizedExpression.
    fn parenthesized(&mut self, i: usize) -> R<Val> {
        if self.at(i) != Some(b'(') {
            return Err(E::NoMatch);
        }
        let (v, end) = self.expression(self.ws(i + 1))?;
        let end = self.ws(end);
        if self.at(end) != Some(b')') {
            return Err(syntax(")", end));
        }
        Ok((v, end + 1))
    }

    // UnaryOperatorValue: `\s*(!|not)\s*` Value.
    fn unary(&mut self, i: usize) -> R<Val> {
        let j = self.ws(i);
        let j = if self.at(j) == Some(b'!') {
            j + 1
        } else if self.lit(j, "not") {
            j + 3
        } else {
            return Err(E::NoMatch);
        };
        let (v, end) = self.value(self.ws(j))?;
        Ok((Val::Not(Box::new(v)), end))
    }

    // BinaryOperator: the first alternative of airspeed's regular expression that matches.
    fn binary_op(&self, i: usize) -> Result<(Op, usize), E> {
        let j = self.ws(i);
        const OPS: [(&str, Option<Op>); 23] = [
            (">=", Some(Op::Ge)),
            ("<=", Some(Op::Le)),
            ("<", Some(Op::Lt)),
            ("==", Some(Op::Eq)),
            ("!=", Some(Op::Ne)),
            (">", Some(Op::Gt)),
            ("%", Some(Op::Mod)),
            ("||", Some(Op::Or)),
            ("&&", Some(Op::And)),
            ("or", Some(Op::Or)),
            ("and", Some(Op::And)),
            ("+", Some(Op::Add)),
            ("-", Some(Op::Sub)),
            ("*", Some(Op::Mul)),
            ("/", Some(Op::Div)),
            ("%", Some(Op::Mod)),
            ("gt", Some(Op::Gt)),
            ("lt", Some(Op::Lt)),
            ("ne", Some(Op::Ne)),
            ("eq", Some(Op::Eq)),
            ("ge", Some(Op::Ge)),
            ("le", Some(Op::Le)),
            ("not", None),
        ];
        for (text, op) in OPS {
            if self.lit(j, text) {
                return match op {
                    Some(op) => Ok((op, self.ws(j + text.len()))),
                    None => Err(unsupported("`not` as a binary operator")),
                };
            }
        }
        Err(E::NoMatch)
    }

    // Expression: Value (BinaryOperator Value)*.
    fn expression(&mut self, i: usize) -> R<Val> {
        let (first, mut j) = self.value(i)?;
        let mut values = vec![first];
        let mut ops = Vec::new();
        loop {
            match self.binary_op(j) {
                Ok((op, k)) => {
                    let (v, end) = self.require_value(k, "value")?;
                    ops.push(op);
                    values.push(v);
                    j = end;
                }
                Err(E::NoMatch) => break,
                Err(e) => return Err(e),
            }
        }
        Ok((Val::Expr(values, ops), j))
    }

    // Condition: ParenthesizedExpression and a blank rest of the line.
    fn condition(&mut self, i: usize) -> R<Val> {
        let (v, end) = self.parenthesized(i)?;
        Ok((v, self.rest_of_line(end)))
    }

    // End: `#end` / `#{end}` and a blank rest of the line.
    fn end(&self, i: usize, what: &str) -> Result<usize, E> {
        let end = if self.lit_ci(i, "#end") {
            i + 4
        } else if self.lit_ci(i, "#{end}") {
            i + 6
        } else {
            return Err(syntax(what, i));
        };
        Ok(self.rest_of_line(end))
    }

    // IfDirective with its ElseifBlocks and ElseBlock.
    fn if_directive(&mut self, i: usize) -> R<Node> {
        if !self.keyword_ci(i, "#if") {
            return Err(E::NoMatch);
        }
        let (cond, j) = self.condition(self.ws(i + 3))?;
        let (then, mut j) = self.block(j)?;
        let mut elseifs = Vec::new();
        while self.keyword_ci(j, "#elseif") {
            let (c, k) = match self.condition(self.ws(j + 7)) {
                Err(E::NoMatch) => return Err(syntax("condition", j)),
                other => other?,
            };
            let (b, k) = self.block(k)?;
            elseifs.push((c, b));
            j = k;
        }
        let mut otherwise = None;
        let else_len = if self.lit_ci(j, "#else") {
            5
        } else if self.lit_ci(j, "#{else}") {
            7
        } else {
            0
        };
        if else_len > 0 {
            let (b, k) = self.block(j + else_len)?;
            otherwise = Some(b);
            j = k;
        }
        let end = self.end(j, "#else, #elseif or #end")?;
        Ok((
            Node::If {
                cond,
                then,
                elseifs,
                otherwise,
            },
            end,
        ))
    }

    // SetDirective and its Assignment.
    fn set_directive(&mut self, i: usize) -> R<Node> {
        if !self.keyword_ci(i, "#set") {
            return Err(E::NoMatch);
        }
        let j = self.ws(i + 4);
        if self.at(j) != Some(b'(') {
            return Err(syntax("assignment", j));
        }
        let j = self.ws(j + 1);
        if self.at(j) != Some(b'$') {
            return Err(syntax("assignment", j));
        }
        let mut k = j + 1;
        while self.at(k).is_some_and(word) {
            k += 1;
        }
        if k == j + 1 {
            return Err(syntax("assignment", j));
        }
        let root = self.src[j + 1..k].to_string();
        let mut terms = Vec::new();
        loop {
            if self.at(k) == Some(b'.') {
                let mut e = k + 1;
                while self.at(e).is_some_and(|b| word(b) || b == b'-') {
                    e += 1;
                }
                if e > k + 1 {
                    terms.push(Val::Str(self.src[k + 1..e].to_string()));
                    k = e;
                    continue;
                }
            }
            if self.at(k) == Some(b'[') {
                let v_at = self.ws(k + 1);
                if v_at < self.s.len() {
                    let (v, e) = self.require_value(v_at, "value")?;
                    let e = self.ws(e);
                    if self.at(e) != Some(b']') {
                        return Err(syntax("]", e));
                    }
                    terms.push(v);
                    k = e + 1;
                    continue;
                }
            }
            break;
        }
        let k = self.ws(k);
        if self.at(k) != Some(b'=') {
            return Err(syntax("=", k));
        }
        let (value, e) = match self.expression(self.ws(k + 1)) {
            Err(E::NoMatch) => return Err(syntax("expression", k)),
            other => other?,
        };
        let e = self.ws(e);
        if self.at(e) != Some(b')') {
            return Err(syntax(")", e));
        }
        let mut end = self.st(e + 1);
        if self.at(end) == Some(b'\r') {
            end += 1;
        }
        let end = if self.at(end) == Some(b'\n') { end + 1 } else { e + 1 };
        Ok((Node::Set(Assign { root, terms, value }), end))
    }

    // ForeachDirective.
    fn foreach(&mut self, i: usize) -> R<Node> {
        if !self.keyword_ci(i, "#foreach") {
            return Err(E::NoMatch);
        }
        let j = self.st(i + 8);
        if self.at(j) != Some(b'(') {
            return Err(syntax("(", j));
        }
        let j = self.ws(j + 1);
        if self.at(j) != Some(b'$')
            || !self
                .at(j + 1)
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        {
            return Err(syntax("loop var name", j));
        }
        let mut k = j + 2;
        while self.at(k).is_some_and(word) {
            k += 1;
        }
        let var = self.src[j + 1..k].to_string();
        let m = self.st(k);
        if m == k || !self.lit(m, "in") {
            return Err(syntax("in", k));
        }
        let n = self.st(m + 2);
        if n == m + 2 {
            return Err(syntax("in", k));
        }
        let (items, e) = self.value(n)?;
        let e = self.st(e);
        if self.at(e) != Some(b')') {
            return Err(syntax(")", e));
        }
        let (body, e) = self.block(e + 1)?;
        let end = self.end(e, "#end")?;
        Ok((Node::Foreach { var, items, body }, end))
    }

    // The `#break` user directive: `#break`, `#{break}`, optionally `($scope)`.
    fn break_directive(&self, i: usize) -> Result<usize, E> {
        let mut j = if self.lit(i, "#break") {
            i + 6
        } else if self.lit(i, "#{break}") {
            i + 8
        } else {
            return Err(E::NoMatch);
        };
        if self.at(j) == Some(b'(') {
            let k = self.ws(j + 1);
            if self.at(k) == Some(b'$')
                && self
                    .at(k + 1)
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            {
                let mut e = k + 2;
                while self.at(e).is_some_and(|b| word(b) || b == b'-') {
                    e += 1;
                }
                let e = self.ws(e);
                if self.at(e) == Some(b')') {
                    j = e + 1;
                }
            }
        }
        Ok(j)
    }

    // MacroCall: `#name(args)`; with no macros defined it renders as its own text.
    fn macro_call(&mut self, i: usize) -> Result<usize, E> {
        if self.at(i) != Some(b'#') || !self.at(i + 1).is_some_and(|b| b.is_ascii_alphabetic()) {
            return Err(E::NoMatch);
        }
        let mut j = i + 2;
        while self.at(j).is_some_and(word) {
            j += 1;
        }
        const RESERVED: [&str; 12] = [
            "if", "else", "elseif", "set", "macro", "foreach", "parse", "include", "stop", "end",
            "define", "return",
        ];
        let name = self.src[i + 1..j].to_ascii_lowercase();
        if RESERVED.contains(&name.as_str()) {
            return Err(E::NoMatch);
        }
        let k = self.st(j);
        if self.at(k) != Some(b'(') {
            return Err(E::NoMatch);
        }
        let mut k = self.ws(k + 1);
        loop {
            match self.value(k) {
                Ok((_, end)) => k = end,
                Err(E::NoMatch) => break,
                Err(e) => return Err(e),
            }
            let w = self.ws(k);
            if self.at(w) == Some(b',') {
                k = self.ws(w + 1);
            } else if w > k {
                k = w;
            } else {
                break;
            }
        }
        let k = self.st(k);
        if self.at(k) != Some(b')') {
            return Err(syntax("argument value or )", k));
        }
        Ok(k + 1)
    }
}
