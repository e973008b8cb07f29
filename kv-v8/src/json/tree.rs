//! JSON text as a tree that keeps object members in order (serde_json's
//! `Value` sorts them unless its `preserve_order` feature is on, and a
//! JavaScript object's property order is part of its V8 bytes).

use super::JsonError;

/// A parsed JSON value. Numbers are `f64`, as `JSON.parse` reads them
/// (`-0` included).
#[derive(Debug, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// What this is, for error messages.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// The member `name` of an object; the last one wins, as in
    /// `JSON.parse`.
    pub(super) fn member(&self, name: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// How deeply JSON may nest: a typed value takes up to three JSON levels
/// per JavaScript level (a `Map`'s entries), and JavaScript values nest at
/// most [`crate::MAX_DEPTH`] levels.
pub(super) const MAX_JSON_DEPTH: usize = 3 * crate::MAX_DEPTH + 8;

/// Parses one JSON document (whitespace may surround it) as `JSON.parse`
/// does: numbers are the nearest doubles (`1e400` is `Infinity`, `-0` is
/// kept), a lone surrogate escape becomes U+FFFD (Rust strings cannot hold
/// it; kv-v8 decodes one in a V8 string the same way).
///
/// The parser keeps its own stack of open containers instead of
/// recursing, so deep documents cost no thread stack.
pub(super) fn parse(text: &str) -> Result<Json, JsonError> {
    Parser {
        text,
        s: text.as_bytes(),
        i: 0,
    }
    .document()
}

enum Open {
    Array(Vec<Json>),
    /// The members so far and the name of the one being read.
    Object(Vec<(String, Json)>, String),
}

struct Parser<'a> {
    text: &'a str,
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn column(&self, at: usize) -> usize {
        self.text.get(..at).map_or(at, |t| t.chars().count()) + 1
    }

    fn fail<T>(&self, at: usize, message: impl Into<String>) -> Result<T, JsonError> {
        if at >= self.s.len() {
            return Err(JsonError::Truncated {
                column: self.column(self.s.len()),
            });
        }
        Err(JsonError::Syntax {
            column: self.column(at),
            message: message.into(),
        })
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn document(mut self) -> Result<Json, JsonError> {
        let mut open: Vec<Open> = Vec::new();
        'value: loop {
            self.ws();
            let mut value = match self.peek() {
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        Json::Array(Vec::new())
                    } else {
                        self.nest(&open)?;
                        open.push(Open::Array(Vec::new()));
                        continue 'value;
                    }
                }
                Some(b'{') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        Json::Object(Vec::new())
                    } else {
                        self.nest(&open)?;
                        let name = self.member_name()?;
                        open.push(Open::Object(Vec::new(), name));
                        continue 'value;
                    }
                }
                Some(b'"') => Json::String(self.string()?),
                Some(b'-' | b'0'..=b'9') => Json::Number(self.number()?),
                Some(b't') => self.literal("true", Json::Bool(true))?,
                Some(b'f') => self.literal("false", Json::Bool(false))?,
                Some(b'n') => self.literal("null", Json::Null)?,
                _ => return self.fail(self.i, "expected a JSON value"),
            };
            // A value is complete: hand it to the container it is in,
            // closing containers as their ends come.
            loop {
                self.ws();
                let at = self.i;
                match (open.last_mut(), self.peek()) {
                    (None, None) => return Ok(value),
                    (None, Some(_)) => {
                        return self.fail(at, "unexpected text after the JSON value");
                    }
                    (Some(Open::Array(items)), Some(b',')) => {
                        items.push(value);
                        self.i += 1;
                        continue 'value;
                    }
                    (Some(Open::Object(members, name)), Some(b',')) => {
                        members.push((std::mem::take(name), value));
                        self.i += 1;
                        self.ws();
                        *name = self.member_name()?;
                        continue 'value;
                    }
                    (Some(Open::Array(_)), Some(b']')) | (Some(Open::Object(..)), Some(b'}')) => {
                        self.i += 1;
                    }
                    (Some(Open::Array(_)), _) => return self.fail(at, "expected ',' or ']'"),
                    (Some(Open::Object(..)), _) => return self.fail(at, "expected ',' or '}'"),
                }
                value = match open.pop() {
                    Some(Open::Array(mut items)) => {
                        items.push(value);
                        Json::Array(items)
                    }
                    Some(Open::Object(mut members, name)) => {
                        members.push((name, value));
                        Json::Object(members)
                    }
                    // Not reached: the match above found a container.
                    None => value,
                };
            }
        }
    }

    fn nest(&self, open: &[Open]) -> Result<(), JsonError> {
        if open.len() >= MAX_JSON_DEPTH {
            return self.fail(
                self.i,
                format!("the JSON nests deeper than {MAX_JSON_DEPTH} levels"),
            );
        }
        Ok(())
    }

    /// `"name"` and the `:` after it.
    fn member_name(&mut self) -> Result<String, JsonError> {
        if self.peek() != Some(b'"') {
            return self.fail(self.i, "expected a member name in double quotes");
        }
        let name = self.string()?;
        self.ws();
        if self.peek() != Some(b':') {
            return self.fail(self.i, "expected ':'");
        }
        self.i += 1;
        Ok(name)
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, JsonError> {
        let end = self.i + word.len();
        match self.s.get(self.i..end) {
            Some(w) if w == word.as_bytes() => {
                self.i = end;
                Ok(value)
            }
            _ if end > self.s.len() && word.as_bytes().starts_with(&self.s[self.i..]) => {
                self.fail(self.s.len(), "")
            }
            _ => self.fail(self.i, "expected a JSON value"),
        }
    }

    fn number(&mut self) -> Result<f64, JsonError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.i += 1;
            }
            p.i - from
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return self.fail(self.i, "expected a digit"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return self.fail(self.i, "expected a digit after '.'");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if digits(self) == 0 {
                return self.fail(self.i, "expected a digit in the exponent");
            }
        }
        // The grammar checked above is a subset of Rust's, whose parse is
        // correctly rounded (and gives infinity beyond the range, as
        // JavaScript does).
        self.text[start..self.i]
            .parse::<f64>()
            .or_else(|_| self.fail(start, "not a number"))
    }

    fn string(&mut self) -> Result<String, JsonError> {
        let open = self.i;
        self.i += 1;
        let mut out = String::new();
        let mut run = self.i;
        loop {
            let Some(b) = self.peek() else {
                return self.fail(self.s.len(), "");
            };
            match b {
                b'"' => {
                    out.push_str(&self.text[run..self.i]);
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.text[run..self.i]);
                    self.i += 1;
                    self.escape(&mut out)?;
                    run = self.i;
                }
                0..=0x1f => {
                    return self.fail(
                        self.i,
                        format!(
                            "a control character in the string that starts at column {}",
                            self.column(open)
                        ),
                    );
                }
                _ => self.i += 1,
            }
        }
    }

    /// After a backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let at = self.i - 1;
        let Some(b) = self.peek() else {
            return self.fail(self.s.len(), "");
        };
        self.i += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4(at)?;
                let cp = if (0xD800..0xDC00).contains(&unit)
                    && self.s.get(self.i..self.i + 2) == Some(b"\\u")
                {
                    let save = self.i;
                    self.i += 2;
                    let low = self.hex4(save)?;
                    if (0xDC00..0xE000).contains(&low) {
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        // Not a pair: the low half is read on its own.
                        self.i = save;
                        unit
                    }
                } else {
                    unit
                };
                char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER)
            }
            _ => return self.fail(at, "invalid escape in a string"),
        };
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self, at: usize) -> Result<u32, JsonError> {
        let mut v = 0;
        for _ in 0..4 {
            match self.peek().and_then(|b| char::from(b).to_digit(16)) {
                Some(d) => {
                    v = v * 16 + d;
                    self.i += 1;
                }
                None if self.i >= self.s.len() => return self.fail(self.s.len(), ""),
                None => return self.fail(at, "\\u needs four hex digits"),
            }
        }
        Ok(v)
    }
}

/// Appends `s` as a JSON string, escaped as `JSON.stringify` escapes it:
/// `"`, `\` and control characters only (`\b \f \n \r \t`, else `\u00xx`).
pub(super) fn push_string(out: &mut String, s: &str) {
    out.push('"');
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        from = i + 1;
    }
    out.push_str(&s[from..]);
    out.push('"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";
