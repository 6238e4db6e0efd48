//! JSON text read as Python reads it, for the places that must agree with Python exactly: a Lambda
//! function's output as orjson turns it into Python objects (`lambda::response`), and JSON in
//! mapping templates as `json.loads` reads it for the Python engine (`templates`).
//!
//! Both readers are strict RFC 8259 (no `NaN`, no control characters in strings, a lone surrogate
//! refused) and keep Python's dict semantics: objects in document order, a repeated key keeping
//! its first place and taking the last value. What differs is what a number becomes and how deep
//! documents may nest; a `Build` says that. `serde_json` is not used here because it keeps neither
//! a repeated key's first place nor integers past 64 bits the way Python does.

/// What a reader makes of each JSON value.
pub trait Build {
    type Value;
    type Object: Default;
    /// Containers nested deeper than this refuse the document.
    const MAX_DEPTH: usize;

    fn null() -> Self::Value;
    fn boolean(value: bool) -> Self::Value;
    /// A number's literal (valid JSON), and whether it has neither fraction nor exponent. None
    /// refuses the document.
    fn number(literal: &str, integral: bool) -> Option<Self::Value>;
    fn string(value: String) -> Self::Value;
    fn array(items: Vec<Self::Value>) -> Self::Value;
    /// Python's dict insert: a repeated key keeps its place and takes the new value.
    fn insert(object: &mut Self::Object, key: String, value: Self::Value);
    fn object(object: Self::Object) -> Self::Value;
}

/// The value of a whole JSON document, or None when it is not one.
pub fn parse<B: Build>(text: &str) -> Option<B::Value> {
    let mut reader = Reader { s: text.as_bytes(), text, i: 0 };
    reader.ws();
    let value = reader.value::<B>(0)?;
    reader.ws();
    (reader.i == reader.s.len()).then_some(value)
}

struct Reader<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, literal: &[u8]) -> Option<()> {
        self.s[self.i..].starts_with(literal).then(|| self.i += literal.len())
    }

    fn value<B: Build>(&mut self, depth: usize) -> Option<B::Value> {
        match self.peek()? {
            b'{' if depth < B::MAX_DEPTH => {
                self.i += 1;
                let mut object = B::Object::default();
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(B::object(object));
                }
                loop {
                    self.ws();
                    if self.peek()? != b'"' {
                        return None;
                    }
                    let key = self.string()?;
                    self.ws();
                    self.eat(b":")?;
                    self.ws();
                    let value = self.value::<B>(depth + 1)?;
                    B::insert(&mut object, key, value);
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(B::object(object));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' if depth < B::MAX_DEPTH => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(B::array(items));
                }
                loop {
                    self.ws();
                    items.push(self.value::<B>(depth + 1)?);
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(B::array(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(B::string),
            b't' => self.eat(b"true").map(|()| B::boolean(true)),
            b'f' => self.eat(b"false").map(|()| B::boolean(false)),
            b'n' => self.eat(b"null").map(|()| B::null()),
            b'-' | b'0'..=b'9' => self.number::<B>(),
            _ => None,
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number<B: Build>(&mut self) -> Option<B::Value> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        let n = self.digits();
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return None;
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
            integral = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            integral = false;
        }
        B::number(&self.text[start..self.i], integral)
    }

    /// A string literal (the opening quote is at `self.i`).
    fn string(&mut self) -> Option<String> {
        self.i += 1;
        let mut out = String::new();
        let mut run = self.i;
        loop {
            match self.peek()? {
                b'"' => {
                    out.push_str(&self.text[run..self.i]);
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    out.push_str(&self.text[run..self.i]);
                    self.i += 1;
                    let escaped = self.peek()?;
                    self.i += 1;
                    match escaped {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\x08'),
                        b'f' => out.push('\x0c'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let high = self.hex4()?;
                            let code = match high {
                                // Only a pair makes a character.
                                0xD800..=0xDBFF => {
                                    self.eat(b"\\u")?;
                                    let low = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&low) {
                                        return None;
                                    }
                                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                                }
                                0xDC00..=0xDFFF => return None,
                                _ => high,
                            };
                            out.push(char::from_u32(code)?);
                        }
                        _ => return None,
                    }
                    run = self.i;
                }
                // A control character: Python's strict scanners refuse it.
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.i..self.i + 4)?;
        let mut value = 0u32;
        for &digit in digits {
            value = value * 16 + char::from(digit).to_digit(16)?;
        }
        self.i += 4;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values as text, to check what the reader hands a `Build`.
    struct Echo;

    impl Build for Echo {
        type Value = String;
        type Object = Vec<(String, String)>;
        const MAX_DEPTH: usize = 3;

        fn null() -> String {
            "null".into()
        }
        fn boolean(value: bool) -> String {
            value.to_string()
        }
        fn number(literal: &str, integral: bool) -> Option<String> {
            Some(format!("{}{literal}", if integral { "i" } else { "f" }))
        }
        fn string(value: String) -> String {
            format!("{value:?}")
        }
        fn array(items: Vec<String>) -> String {
            format!("[{}]", items.join(","))
        }
        fn insert(object: &mut Self::Object, key: String, value: String) {
            match object.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => object.push((key, value)),
            }
        }
        fn object(object: Self::Object) -> String {
            let members: Vec<String> = object.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("{{{}}}", members.join(","))
        }
    }

    #[test]
    fn reads_documents_in_order_with_python_dict_semantics() {
        assert_eq!(
            parse::<Echo>(r#" {"b": 1, "a": [true, null, -0.5e3], "b": "x\u00e9\ud83d\ude00"} "#).as_deref(),
            Some("{b:\"xé😀\",a:[true,null,f-0.5e3]}")
        );
        assert_eq!(parse::<Echo>("12").as_deref(), Some("i12"));
    }

    #[test]
    fn refuses_what_python_refuses() {
        for text in [
            "", "01", "1.", "1e", "-", "+1", "NaN", "[1,]", "{\"a\" 1}", "\"\t\"", "\"\\ud800\"", "\"\\udc00\"",
            "\"\\x\"", "[1] 2", "[[[[1]]]]", "tru",
        ] {
            assert_eq!(parse::<Echo>(text), None, "{text:?}");
        }
        assert_eq!(parse::<Echo>("[[[1]]]").as_deref(), Some("[[[i1]]]"));
    }
}
