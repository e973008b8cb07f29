//! Keys and values to typed JSON text, as kv-utils' `keyToJSON` and
//! `valueToJSON` followed by `JSON.stringify` write them.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kv_core::{Key, KeyPart};

use super::tree::push_string;
use super::{Dialect, JsonError, date};
use crate::value::{JsArray, JsError, JsValue, PropertyKey, TypedArray};

/// How many values one value may expand to: shared references are written
/// once per reference, so a small value that shares objects many times
/// over could otherwise produce gigabytes.
const MAX_WRITTEN: usize = 1 << 20;

pub(super) fn key(dialect: Dialect, key: &Key, out: &mut String) {
    out.push('[');
    for (i, part) in key.parts().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match part {
            KeyPart::Bytes(b) => typed_bytes(out, "Uint8Array", b),
            KeyPart::String(s) => {
                out.push_str("{\"type\":\"string\",\"value\":");
                push_string(out, s);
                out.push('}');
            }
            KeyPart::Int(i) => {
                let _ = write!(out, "{{\"type\":\"bigint\",\"value\":\"{i}\"}}");
            }
            KeyPart::Float(f) => {
                out.push_str("{\"type\":\"number\",\"value\":");
                push_number(out, dialect, *f);
                out.push('}');
            }
            KeyPart::False => out.push_str("{\"type\":\"boolean\",\"value\":false}"),
            KeyPart::True => out.push_str("{\"type\":\"boolean\",\"value\":true}"),
        }
    }
    out.push(']');
}

/// `{"type":name,"value":"<base64url>","byteLength":n}`.
pub(super) fn typed_bytes(out: &mut String, name: &str, bytes: &[u8]) {
    out.push_str("{\"type\":\"");
    out.push_str(name);
    out.push_str("\",\"value\":\"");
    URL_SAFE_NO_PAD.encode_string(bytes, out);
    let _ = write!(out, "\",\"byteLength\":{}}}", bytes.len());
}

/// A number as `JSON.stringify` writes what kv-utils gives it: the special
/// values as strings, `-0` as `0` (kv-utils) or `-0` (lossless).
fn push_number(out: &mut String, dialect: Dialect, n: f64) {
    if n.is_nan() {
        out.push_str("\"NaN\"");
    } else if n.is_infinite() {
        out.push_str(if n > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else if n == 0.0 && n.is_sign_negative() && dialect == Dialect::Lossless {
        out.push_str("-0");
    } else {
        out.push_str(&crate::display::number_to_string(n));
    }
}

pub(super) fn js(dialect: Dialect, value: &JsValue, out: &mut String) -> Result<(), JsonError> {
    let mut w = Writer {
        dialect,
        out,
        root: value,
        nodes: None,
        open: Vec::new(),
        budget: MAX_WRITTEN,
    };
    w.value(value).map_err(|e| within(e, "value"))
}

/// Prefixes the path of an [`JsonError::Unrepresentable`] as the error
/// travels up from where it was found.
fn within(e: JsonError, segment: &str) -> JsonError {
    match e {
        JsonError::Unrepresentable { path, message } => JsonError::Unrepresentable {
            path: format!("{segment}{path}"),
            message,
        },
        other => other,
    }
}

fn unrepresentable(message: impl Into<String>) -> JsonError {
    JsonError::Unrepresentable {
        path: String::new(),
        message: message.into(),
    }
}

fn member_segment(name: &str) -> String {
    let ident = name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$');
    if ident {
        format!(".{name}")
    } else {
        format!("[{name:?}]")
    }
}

/// Whether JavaScript finds the value truthy (kv-utils writes an error's
/// `cause` only then).
fn truthy(v: &JsValue) -> bool {
    match v {
        JsValue::Undefined | JsValue::Null => false,
        JsValue::Bool(b) => *b,
        JsValue::Number(n) => !(*n == 0.0 || n.is_nan()),
        JsValue::BigInt(b) => b.sign() != num_bigint::Sign::NoSign,
        JsValue::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// V8's escaping of a `RegExp` source (`EscapeRegExpSource`): `/` outside
/// a character class and line breaks are escaped, and the empty pattern is
/// `(?:)`. `String(re)` and the stored source both use it; it leaves an
/// escaped source as it is.
pub(super) fn escape_regexp_source(source: &str) -> String {
    if source.is_empty() {
        return "(?:)".to_owned();
    }
    let mut out = String::with_capacity(source.len() + 2);
    let mut in_class = false;
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                // The line break is escaped on its own below.
                Some('\n' | '\r' | '\u{2028}' | '\u{2029}') => {}
                Some(&next) => {
                    out.push('\\');
                    out.push(next);
                    chars.next();
                }
                None => out.push('\\'),
            },
            '/' if !in_class => out.push_str("\\/"),
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

struct Writer<'v, 'o> {
    dialect: Dialect,
    out: &'o mut String,
    root: &'v JsValue,
    /// The object nodes in pre-order, computed at the first `Ref`.
    nodes: Option<Vec<&'v JsValue>>,
    /// The containers being written (ancestors of the current value): a
    /// `Ref` to one of them is a cycle.
    open: Vec<&'v JsValue>,
    budget: usize,
}

impl<'v> Writer<'v, '_> {
    fn push(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn value(&mut self, v: &'v JsValue) -> Result<(), JsonError> {
        if self.budget == 0 {
            return Err(unrepresentable(format!(
                "the value's shared objects expand to more than {MAX_WRITTEN} values"
            )));
        }
        self.budget -= 1;
        if self.open.len() > crate::MAX_DEPTH {
            return Err(unrepresentable(format!(
                "the value nests deeper than {} levels",
                crate::MAX_DEPTH
            )));
        }
        match v {
            JsValue::Undefined => self.push("{\"type\":\"undefined\"}"),
            JsValue::Null => self.push("{\"type\":\"null\",\"value\":null}"),
            JsValue::Bool(b) => self.push(if *b {
                "{\"type\":\"boolean\",\"value\":true}"
            } else {
                "{\"type\":\"boolean\",\"value\":false}"
            }),
            JsValue::Number(n) => {
                self.push("{\"type\":\"number\",\"value\":");
                push_number(self.out, self.dialect, *n);
                self.push("}");
            }
            JsValue::BigInt(b) => {
                let _ = write!(self.out, "{{\"type\":\"bigint\",\"value\":\"{b}\"}}");
            }
            JsValue::String(s) => {
                self.push("{\"type\":\"string\",\"value\":");
                push_string(self.out, s);
                self.push("}");
            }
            JsValue::Date(ms) => match date::to_json(*ms) {
                Some(iso) => {
                    self.push("{\"type\":\"Date\",\"value\":\"");
                    self.push(&iso);
                    self.push("\"}");
                }
                None => self.push("{\"type\":\"Date\",\"value\":null}"),
            },
            JsValue::RegExp(re) => {
                let flags = crate::tag::regexp_flags_from_str(&re.flags)
                    .and_then(crate::tag::regexp_flags_to_string)
                    .unwrap_or_else(|| re.flags.clone());
                let text = format!("/{}/{flags}", escape_regexp_source(&re.source));
                self.push("{\"type\":\"RegExp\",\"value\":");
                push_string(self.out, &text);
                self.push("}");
            }
            JsValue::ArrayBuffer(b) => typed_bytes(self.out, "ArrayBuffer", b),
            JsValue::TypedArray(TypedArray { kind, bytes }) => {
                typed_bytes(self.out, kind.name(), bytes);
            }
            JsValue::Array(a) => self.container(v, |w| w.array(a))?,
            JsValue::Object(props) => self.container(v, |w| w.object(props))?,
            JsValue::Map(entries) => self.container(v, |w| w.map(entries))?,
            JsValue::Set(items) => self.container(v, |w| w.set(items))?,
            JsValue::Error(e) => self.container(v, |w| w.error(e))?,
            JsValue::StringObject(s) => self.string_object(s),
            // `Object.entries` of a boxed number, boolean or bigint is empty.
            JsValue::NumberObject(_) | JsValue::BooleanObject(_) | JsValue::BigIntObject(_) => {
                self.push("{\"type\":\"object\",\"value\":{}}");
            }
            JsValue::Ref(n) => self.reference(*n)?,
        }
        Ok(())
    }

    fn container(
        &mut self,
        v: &'v JsValue,
        body: impl FnOnce(&mut Self) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.open.push(v);
        let result = body(self);
        self.open.pop();
        result
    }

    fn reference(&mut self, n: u32) -> Result<(), JsonError> {
        let root = self.root;
        let nodes = self.nodes.get_or_insert_with(|| {
            let mut nodes = Vec::new();
            root.object_nodes(&mut nodes, 0);
            nodes
        });
        let Some(&target) = nodes.get(n as usize) else {
            return Err(unrepresentable(format!(
                "the reference to object {n} names no object of the value"
            )));
        };
        if self.open.iter().any(|open| std::ptr::eq(*open, target)) {
            return Err(unrepresentable(
                "the value contains itself (a cycle), which kv-utils' JSON cannot hold",
            ));
        }
        self.value(target)
    }

    fn array(&mut self, a: &'v JsArray) -> Result<(), JsonError> {
        self.push("{\"type\":\"Array\",\"value\":[");
        for (i, item) in a.items.iter().enumerate() {
            if i > 0 {
                self.push(",");
            }
            match item {
                // `JSON.stringify` writes a hole (which `map` keeps) as null.
                None => self.push("null"),
                Some(v) => self
                    .value(v)
                    .map_err(|e| within(e, &format!(".value[{i}]")))?,
            }
        }
        self.push("]}");
        Ok(())
    }

    fn object(&mut self, props: &'v [(PropertyKey, JsValue)]) -> Result<(), JsonError> {
        self.push("{\"type\":\"object\",\"value\":{");
        for (i, (k, v)) in props.iter().enumerate() {
            if i > 0 {
                self.push(",");
            }
            let name = k.as_string();
            push_string(self.out, &name);
            self.push(":");
            self.value(v)
                .map_err(|e| within(e, &format!(".value{}", member_segment(&name))))?;
        }
        self.push("}}");
        Ok(())
    }

    fn map(&mut self, entries: &'v [(JsValue, JsValue)]) -> Result<(), JsonError> {
        self.push("{\"type\":\"Map\",\"value\":[");
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                self.push(",");
            }
            self.push("[");
            self.value(k)
                .map_err(|e| within(e, &format!(".value[{i}][0]")))?;
            self.push(",");
            self.value(v)
                .map_err(|e| within(e, &format!(".value[{i}][1]")))?;
            self.push("]");
        }
        self.push("]}");
        Ok(())
    }

    fn set(&mut self, items: &'v [JsValue]) -> Result<(), JsonError> {
        self.push("{\"type\":\"Set\",\"value\":[");
        for (i, v) in items.iter().enumerate() {
            if i > 0 {
                self.push(",");
            }
            self.value(v)
                .map_err(|e| within(e, &format!(".value[{i}]")))?;
        }
        self.push("]}");
        Ok(())
    }

    fn error(&mut self, e: &'v JsError) -> Result<(), JsonError> {
        let lossless = self.dialect == Dialect::Lossless;
        self.push("{\"type\":\"");
        self.push(e.name.as_str());
        self.push("\",\"value\":{");
        let mut first = true;
        let mut sep = |w: &mut Self| {
            if !std::mem::take(&mut first) {
                w.push(",");
            }
        };
        // kv-utils reads `error.message`, which is "" from the prototype
        // when the error has none of its own.
        match (&e.message, lossless) {
            (Some(m), _) => {
                sep(self);
                self.push("\"message\":");
                push_string(self.out, m);
            }
            (None, false) => {
                sep(self);
                self.push("\"message\":\"\"");
            }
            (None, true) => {}
        }
        if let Some(cause) = &e.cause
            && (lossless || truthy(cause))
        {
            sep(self);
            self.push("\"cause\":");
            self.value(cause)
                .map_err(|err| within(err, ".value.cause"))?;
        }
        if let Some(stack) = &e.stack
            && (lossless || !stack.is_empty())
        {
            sep(self);
            self.push("\"stack\":");
            push_string(self.out, stack);
        }
        self.push("}}");
        Ok(())
    }

    /// `Object.entries(new String(s))`: one property per UTF-16 code unit
    /// (half of a surrogate pair becomes U+FFFD, which JSON can carry).
    fn string_object(&mut self, s: &str) {
        self.push("{\"type\":\"object\",\"value\":{");
        let mut buf = [0u16; 2];
        let mut i = 0;
        for c in s.chars() {
            let units = c.encode_utf16(&mut buf).len();
            for _ in 0..units {
                if i > 0 {
                    self.push(",");
                }
                let unit = if units == 1 {
                    c
                } else {
                    char::REPLACEMENT_CHARACTER
                };
                let _ = write!(self.out, "\"{i}\":");
                self.push("{\"type\":\"string\",\"value\":");
                push_string(self.out, unit.encode_utf8(&mut [0u8; 4]));
                self.push("}");
                i += 1;
            }
        }
        self.push("}}");
    }
}
