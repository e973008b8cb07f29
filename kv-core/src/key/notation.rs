//! Keys as people type and read them: Deno's notation
//! (`["users", "alice", 1n, 2, true]`) and a short form for keys made of
//! strings only (`users/alice`).
//!
//! [`Key`]'s and [`KeyPart`]'s `Display` print the notation;
//! [`Key::parse`] (and `FromStr`) read it back, so printing then parsing
//! gives the same key for every key, and [`Key::short_form`] prints the
//! short form where one exists. The grammars are on [`Key::parse`].

use std::fmt::{self, Write as _};
use std::str::FromStr;

use num_bigint::{BigInt, Sign};
use num_traits::ToPrimitive;

use super::{Key, KeyPart, MAX_INT_BYTES};

/// Why a key could not be parsed, and where.
///
/// `Display` says what was expected and names the column, e.g.
/// `expected "," or "]" but found 'x' at column 12`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at column {column}")]
pub struct KeyParseError {
    kind: KeyParseErrorKind,
    offset: usize,
    column: usize,
}

impl KeyParseError {
    /// What is wrong.
    pub fn kind(&self) -> &KeyParseErrorKind {
        &self.kind
    }

    /// Byte offset in the input where the problem starts.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Column (1-based, in characters) where the problem starts.
    pub fn column(&self) -> usize {
        self.column
    }
}

/// The kinds of [`KeyParseError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyParseErrorKind {
    /// Something else was expected here (`found` is `None` at the end of the
    /// input).
    #[error("expected {expected} but found {}", found_text(*.found))]
    Expected {
        /// What would have been accepted, e.g. `"\",\" or \"]\""`.
        expected: &'static str,
        /// The character found instead.
        found: Option<char>,
    },
    /// A string has no closing quote.
    #[error("the string is not closed")]
    UnterminatedString,
    /// A backslash escape JavaScript does not accept in strict code.
    #[error("invalid escape sequence: {0}")]
    InvalidEscape(&'static str),
    /// A `\u` escape names half of a surrogate pair without the other half;
    /// keys are UTF-8 and cannot hold it.
    #[error("a lone surrogate (\\u{0:04X}) cannot be part of a key")]
    LoneSurrogate(u32),
    /// `${` in a back-quoted string.
    #[error("template substitutions (${{…}}) are not supported in keys")]
    TemplateSubstitution,
    /// A malformed number or bigint literal.
    #[error("invalid number: {0}")]
    InvalidNumber(&'static str),
    /// A bigint whose magnitude needs more than 255 bytes.
    #[error("the bigint needs more than 255 bytes, the largest a key holds")]
    IntegerTooLarge,
    /// A `Uint8Array` element that is not an integer from 0 to 255.
    #[error("a Uint8Array element must be an integer from 0 to 255")]
    ByteOutOfRange,
    /// `Uint8Array(n) [...]` with a different number of elements.
    #[error("Uint8Array({declared}) has {actual} elements")]
    LengthMismatch {
        /// The length written in parentheses.
        declared: usize,
        /// The number of elements listed.
        actual: usize,
    },
    /// A JavaScript value that is not a key part type (`null`, `undefined`,
    /// objects, nested arrays).
    #[error(
        "{0} is not a key part (key parts are strings, numbers, bigints, booleans and Uint8Arrays)"
    )]
    NotAKeyPart(&'static str),
    /// In the short form, `%` not followed by two hex digits.
    #[error("'%' must be followed by two hex digits (%2F for '/', %25 for '%')")]
    InvalidPercentEncoding,
    /// In the short form, percent-encoded bytes that are not UTF-8.
    #[error("the percent-encoded bytes are not UTF-8")]
    InvalidUtf8,
}

fn found_text(found: Option<char>) -> String {
    match found {
        None => "the end of the input".to_owned(),
        Some('\'') => "\"'\"".to_owned(),
        Some(c) if c.is_control() || c.is_whitespace() => format!("'{}'", c.escape_default()),
        Some(c) => format!("'{c}'"),
    }
}

impl Key {
    /// Parses a key in Deno's notation (`["users", 1n]`) or the short form
    /// (`users/alice`).
    ///
    /// # The notation
    ///
    /// A JavaScript array literal of key parts, as a Deno program writes the
    /// key (whitespace and a trailing comma allowed):
    ///
    /// - strings in double, single or back quotes, with JavaScript's escapes
    ///   (`\n`, `\t`, `\xHH`, `\uHHHH`, `\u{H…}`, `\\`, `\"`, …); a lone
    ///   surrogate, a legacy octal escape and a template substitution (`${`)
    ///   are errors;
    /// - numbers (`number`) as JavaScript writes them: `2`, `-1.5`, `1e21`,
    ///   `0x1f`, `0o17`, `0b101`, `1_000`, `NaN`, `Infinity`, `-Infinity`.
    ///   `-0` is kept: Deno stores `-0` and `0` as different keys. `-NaN` is
    ///   the NaN with its sign bit set (also a key of its own; JavaScript
    ///   cannot write it, but the key encoding can hold it);
    /// - bigints (`bigint`): `1n`, `-12n`, `0xffn`, at most 255 bytes of
    ///   magnitude (the key encoding's limit);
    /// - `true` and `false`;
    /// - bytes: `new Uint8Array([1, 2, 3])`, or `Uint8Array(3) [1, 2, 3]` as
    ///   Deno's console prints them (the length must match). Each element is
    ///   an integer from 0 to 255.
    ///
    /// Printing uses double quotes, escapes control and invisible formatting
    /// characters, writes numbers as JavaScript's `String(n)` does (with `-0`
    /// and `-NaN` for those two), and bytes as `new Uint8Array([…])`.
    ///
    /// # The short form
    ///
    /// Any text whose first non-blank character is not `[` is a key of string
    /// parts separated by `/`: `users/alice` is `["users", "alice"]`. Text is
    /// taken verbatim (spaces included); `%XX` stands for the byte `XX` of the
    /// part's UTF-8, so a `/` inside a part is `%2F` and a `%` is `%25`
    /// (`a%2Fb/c` is `["a/b", "c"]`). An empty part is the empty string
    /// (`a//b` is `["a", "", "b"]`), and the empty text is the empty key `[]`
    /// (the whole key space, as a list prefix). The key `[""]` has no short
    /// form.
    ///
    /// ```
    /// use kv_core::{Key, key};
    ///
    /// assert_eq!(Key::parse(r#"["users", 1n, 2]"#)?, key!["users", 1, 2.0]);
    /// assert_eq!(Key::parse("users/alice")?, key!["users", "alice"]);
    /// assert_eq!(key!["users", 1].to_string(), r#"["users", 1n]"#);
    /// # Ok::<(), kv_core::KeyParseError>(())
    /// ```
    ///
    /// # Errors
    /// [`KeyParseError`], naming the column and what was expected there.
    pub fn parse(input: &str) -> Result<Key, KeyParseError> {
        let result = if input.trim_start().starts_with('[') {
            let mut p = Parser::new(input);
            p.key()
        } else {
            parse_short(input)
        };
        result.map_err(|e| e.locate(input))
    }

    /// The short form (`users/alice`) of a key made of string parts only,
    /// which [`Key::parse`] reads back as this key; `None` when a part is
    /// not a string, or for `[""]`. The empty key is the empty text.
    pub fn short_form(&self) -> Option<String> {
        if let [KeyPart::String(s)] = self.parts()
            && s.is_empty()
        {
            return None;
        }
        let mut out = String::new();
        for (i, part) in self.parts().iter().enumerate() {
            let KeyPart::String(s) = part else {
                return None;
            };
            if i > 0 {
                out.push('/');
            }
            for c in s.chars() {
                let opens_notation = c == '[' && out.trim_start().is_empty();
                if c == '%' || c == '/' || c.is_control() || opens_notation {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "%{b:02X}");
                    }
                } else {
                    out.push(c);
                }
            }
        }
        Some(out)
    }
}

impl FromStr for Key {
    type Err = KeyParseError;

    /// As [`Key::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Key::parse(s)
    }
}

impl FromStr for KeyPart {
    type Err = KeyParseError;

    /// One key part in Deno's notation: `"alice"`, `1n`, `2`, `true`,
    /// `new Uint8Array([1])`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = Parser::new(s);
        p.single_part().map_err(|e| e.locate(s))
    }
}

impl fmt::Display for Key {
    /// Deno's notation: `["users", "alice", 1n, 2, true]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        for (i, p) in self.parts().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        f.write_char(']')
    }
}

impl fmt::Display for KeyPart {
    /// The part as a Deno program writes it: `"alice"`, `1n`, `2`, `-0`,
    /// `NaN`, `true`, `new Uint8Array([1, 2])`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::Bytes(b) => {
                f.write_str("new Uint8Array([")?;
                for (i, byte) in b.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{byte}")?;
                }
                f.write_str("])")
            }
            KeyPart::String(s) => write_string(f, s),
            KeyPart::Int(i) => write!(f, "{i}n"),
            KeyPart::Float(x) => write_number(f, *x),
            KeyPart::False => f.write_str("false"),
            KeyPart::True => f.write_str("true"),
        }
    }
}

/// Characters printed as escapes although JavaScript strings may hold them
/// raw: they are invisible or reorder text on a terminal.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}')
}

fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            '\u{b}' => f.write_str("\\v")?,
            c if hidden(c) && (c as u32) <= 0xff => write!(f, "\\x{:02x}", c as u32)?,
            c if hidden(c) => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// JavaScript's `Number.prototype.toString()`, except that `-0` and a NaN
/// with its sign bit set keep their sign (they are distinct keys).
fn write_number(f: &mut fmt::Formatter<'_>, n: f64) -> fmt::Result {
    if n.is_nan() {
        return f.write_str(if n.is_sign_negative() { "-NaN" } else { "NaN" });
    }
    if n.is_infinite() {
        return f.write_str(if n > 0.0 { "Infinity" } else { "-Infinity" });
    }
    if n == 0.0 {
        return f.write_str(if n.is_sign_negative() { "-0" } else { "0" });
    }
    let abs = n.abs();
    if (1e-6..1e21).contains(&abs) {
        // Rust's shortest round-trip digits, as JavaScript picks them; in
        // this range both print them positionally.
        return write!(f, "{n}");
    }
    // JavaScript's exponent form: 1e+21, 1.5e-7.
    let s = format!("{n:e}");
    match s.split_once('e') {
        Some((m, e)) if !e.starts_with('-') => write!(f, "{m}e+{e}"),
        _ => f.write_str(&s),
    }
}

/// An error before its column is known.
struct Located {
    kind: KeyParseErrorKind,
    offset: usize,
}

impl Located {
    fn locate(self, input: &str) -> KeyParseError {
        let offset = self.offset.min(input.len());
        let column = input.get(..offset).map_or(offset, |s| s.chars().count()) + 1;
        KeyParseError {
            kind: self.kind,
            offset,
            column,
        }
    }
}

type R<T> = Result<T, Located>;

fn parse_short(input: &str) -> R<Key> {
    if input.is_empty() {
        return Ok(Key::empty());
    }
    let mut parts = Vec::new();
    let mut start = 0;
    for piece in input.split('/') {
        parts.push(KeyPart::String(percent_decode(piece, start)?));
        start += piece.len() + 1;
    }
    Ok(Key(parts))
}

fn percent_decode(piece: &str, start: usize) -> R<String> {
    if !piece.contains('%') {
        return Ok(piece.to_owned());
    }
    let bytes = piece.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(Located {
                    kind: KeyParseErrorKind::InvalidPercentEncoding,
                    offset: start + i,
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Located {
        kind: KeyParseErrorKind::InvalidUtf8,
        offset: start,
    })
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn err<T>(&self, kind: KeyParseErrorKind) -> R<T> {
        self.err_at(self.pos, kind)
    }

    fn err_at<T>(&self, offset: usize, kind: KeyParseErrorKind) -> R<T> {
        Err(Located { kind, offset })
    }

    fn expected<T>(&self, expected: &'static str) -> R<T> {
        self.err(KeyParseErrorKind::Expected {
            expected,
            found: self.peek(),
        })
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char, expected: &'static str) -> R<()> {
        self.ws();
        if self.eat(c) {
            Ok(())
        } else {
            self.expected(expected)
        }
    }

    fn end(&mut self) -> R<()> {
        self.ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => self.expected("the end of the input"),
        }
    }

    /// An identifier-like word at the cursor, not consumed.
    fn word(&self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .char_indices()
            .find(|&(_, c)| !is_ident(c))
            .map_or(rest.len(), |(i, _)| i);
        &rest[..end]
    }

    fn key(&mut self) -> R<Key> {
        self.expect('[', "\"[\"")?;
        let parts = self.list(|p| p.part(), "a key part or \"]\"")?;
        self.end()?;
        Ok(Key(parts))
    }

    fn single_part(&mut self) -> R<KeyPart> {
        self.ws();
        let part = self.part()?;
        self.end()?;
        Ok(part)
    }

    /// Elements up to the closing `]` (the `[` is already read), separated
    /// by commas, a trailing comma allowed.
    fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> R<T>,
        first: &'static str,
    ) -> R<Vec<T>> {
        let mut items = Vec::new();
        self.ws();
        if self.eat(']') {
            return Ok(items);
        }
        loop {
            self.ws();
            if self.peek().is_none() {
                return self.expected(first);
            }
            items.push(item(self)?);
            self.ws();
            if self.eat(']') {
                return Ok(items);
            }
            if !self.eat(',') {
                return self.expected("\",\" or \"]\"");
            }
            self.ws();
            if self.eat(']') {
                return Ok(items);
            }
        }
    }

    fn part(&mut self) -> R<KeyPart> {
        let start = self.pos;
        match self.peek() {
            Some(q @ ('"' | '\'' | '`')) => {
                self.bump();
                self.string(q).map(KeyPart::String)
            }
            Some(c) if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => self.number(),
            Some('[') => self.err(KeyParseErrorKind::NotAKeyPart("an array")),
            Some('{') => self.err(KeyParseErrorKind::NotAKeyPart("an object")),
            Some(c) if is_ident(c) => {
                let word = self.word();
                match word {
                    "true" => {
                        self.pos += word.len();
                        Ok(KeyPart::True)
                    }
                    "false" => {
                        self.pos += word.len();
                        Ok(KeyPart::False)
                    }
                    "NaN" | "Infinity" => self.number(),
                    "new" | "Uint8Array" => self.bytes(),
                    "null" => self.err_at(start, KeyParseErrorKind::NotAKeyPart("null")),
                    "undefined" => self.err_at(start, KeyParseErrorKind::NotAKeyPart("undefined")),
                    _ => self.expected("a key part"),
                }
            }
            _ => self.expected("a key part"),
        }
    }

    fn string(&mut self, quote: char) -> R<String> {
        let open = self.pos - 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return self.err_at(open, KeyParseErrorKind::UnterminatedString);
            };
            match c {
                c if c == quote => return Ok(out),
                '\\' => self.escape(&mut out)?,
                '\n' | '\r' if quote != '`' => {
                    return self.err_at(open, KeyParseErrorKind::UnterminatedString);
                }
                '\r' => {
                    // Template literals read CR and CRLF as LF.
                    self.eat('\n');
                    out.push('\n');
                }
                '$' if quote == '`' && self.peek() == Some('{') => {
                    return self.err_at(self.pos - 1, KeyParseErrorKind::TemplateSubstitution);
                }
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> R<()> {
        let start = self.pos - 1;
        let Some(c) = self.bump() else {
            return self.err_at(start, KeyParseErrorKind::UnterminatedString);
        };
        let simple = match c {
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'v' => Some('\u{b}'),
            '0' if !self.peek().is_some_and(|d| d.is_ascii_digit()) => Some('\0'),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            return Ok(());
        }
        match c {
            '0'..='9' => self.err_at(
                start,
                KeyParseErrorKind::InvalidEscape("octal escapes are not allowed; use \\x or \\u"),
            ),
            'x' => {
                let v = self.hex_digits(2, start, "\\x needs two hex digits")?;
                out.push(char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER));
                Ok(())
            }
            'u' => {
                let unit = self.unicode_escape(start)?;
                if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate: a low one must follow as `\uXXXX`.
                    let save = self.pos;
                    if self.rest().starts_with("\\u") {
                        self.pos += 2;
                        let low = self.unicode_escape(save)?;
                        if (0xDC00..0xE000).contains(&low) {
                            let cp = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                            out.push(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
                            return Ok(());
                        }
                    }
                    return self.err_at(start, KeyParseErrorKind::LoneSurrogate(unit));
                }
                match char::from_u32(unit) {
                    Some(ch) => {
                        out.push(ch);
                        Ok(())
                    }
                    None => self.err_at(start, KeyParseErrorKind::LoneSurrogate(unit)),
                }
            }
            // A line continuation: the backslash and line break vanish.
            '\r' => {
                self.eat('\n');
                Ok(())
            }
            '\n' | '\u{2028}' | '\u{2029}' => Ok(()),
            other => {
                out.push(other);
                Ok(())
            }
        }
    }

    /// The code unit or point of a `\u` escape (after `\u`).
    fn unicode_escape(&mut self, start: usize) -> R<u32> {
        if self.eat('{') {
            let digits_start = self.pos;
            let mut v: u32 = 0;
            while let Some(d) = self.peek().and_then(|c| c.to_digit(16)) {
                self.bump();
                v = v.saturating_mul(16).saturating_add(d);
            }
            if self.pos == digits_start || !self.eat('}') || v > 0x10FFFF {
                return self.err_at(
                    start,
                    KeyParseErrorKind::InvalidEscape(
                        "\\u{…} needs 1 to 6 hex digits, at most 10FFFF",
                    ),
                );
            }
            Ok(v)
        } else {
            self.hex_digits(4, start, "\\u needs four hex digits or {…}")
        }
    }

    fn hex_digits(&mut self, n: usize, start: usize, what: &'static str) -> R<u32> {
        let mut v = 0;
        for _ in 0..n {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    self.bump();
                    v = v * 16 + d;
                }
                None => return self.err_at(start, KeyParseErrorKind::InvalidEscape(what)),
            }
        }
        Ok(v)
    }

    /// A number or bigint literal, with an optional sign.
    fn number(&mut self) -> R<KeyPart> {
        let start = self.pos;
        let negative = if self.eat('-') {
            true
        } else {
            self.eat('+');
            false
        };
        let word = self.word();
        if word == "NaN" || word == "Infinity" {
            self.pos += word.len();
            let v = match (word, negative) {
                ("NaN", false) => f64::from_bits(0x7ff8_0000_0000_0000),
                ("NaN", true) => f64::from_bits(0xfff8_0000_0000_0000),
                (_, false) => f64::INFINITY,
                (_, true) => f64::NEG_INFINITY,
            };
            return Ok(KeyPart::Float(v));
        }
        match self.literal(start)? {
            Literal::Float(v) => Ok(KeyPart::Float(if negative { -v } else { v })),
            Literal::Int(v) => {
                let v = if negative { -v } else { v };
                if v.magnitude().to_bytes_be().len() > MAX_INT_BYTES && v.sign() != Sign::NoSign {
                    return self.err_at(start, KeyParseErrorKind::IntegerTooLarge);
                }
                Ok(KeyPart::Int(v))
            }
        }
    }

    /// An unsigned numeric literal: a number, or with the `n` suffix a
    /// bigint.
    fn literal(&mut self, start: usize) -> R<Literal> {
        let bad = |p: &Self, what| p.err_at(start, KeyParseErrorKind::InvalidNumber(what));
        let rest = self.rest();
        let radix = match rest.get(..2) {
            Some("0x" | "0X") => 16,
            Some("0o" | "0O") => 8,
            Some("0b" | "0B") => 2,
            _ => 10,
        };
        if radix != 10 {
            self.pos += 2;
            let digits = self.digits(radix, start)?;
            if digits.is_empty() {
                return bad(self, "the prefix must be followed by digits");
            }
            let value = BigInt::parse_bytes(digits.as_bytes(), radix)
                .expect("the digits were checked for this radix");
            let bigint = self.eat('n');
            self.after_literal(start)?;
            return Ok(if bigint {
                Literal::Int(value)
            } else {
                Literal::Float(value.to_f64().unwrap_or(f64::INFINITY))
            });
        }
        let int_start = self.pos;
        let int = self.digits(10, start)?;
        if int.len() > 1 && int.starts_with('0') {
            return bad(
                self,
                "a leading zero (legacy octal) is not allowed; use 0o for octal",
            );
        }
        let mut text = int.clone();
        let mut fractional = false;
        if self.peek() == Some('.') {
            fractional = true;
            self.bump();
            text.push('.');
            let frac = self.digits(10, start)?;
            if int.is_empty() && frac.is_empty() {
                return bad(self, "a number needs digits");
            }
            text.push_str(&frac);
        } else if int.is_empty() {
            return self.err_at(
                int_start,
                KeyParseErrorKind::Expected {
                    expected: "a digit, NaN or Infinity",
                    found: self.peek(),
                },
            );
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            fractional = true;
            self.bump();
            text.push('e');
            if let Some(sign @ ('+' | '-')) = self.peek() {
                self.bump();
                text.push(sign);
            }
            let exp = self.digits(10, start)?;
            if exp.is_empty() {
                return bad(self, "the exponent needs digits");
            }
            text.push_str(&exp);
        }
        if self.peek() == Some('n') {
            if fractional {
                return bad(
                    self,
                    "a bigint must be an integer without a fraction or exponent",
                );
            }
            self.bump();
            self.after_literal(start)?;
            let value = BigInt::parse_bytes(int.as_bytes(), 10).expect("the digits were checked");
            return Ok(Literal::Int(value));
        }
        self.after_literal(start)?;
        match text.parse::<f64>() {
            Ok(v) => Ok(Literal::Float(v)),
            Err(_) => bad(self, "not a number literal"),
        }
    }

    /// Digits of `radix` with `_` separators between them (removed).
    fn digits(&mut self, radix: u32, start: usize) -> R<String> {
        let mut out = String::new();
        let mut last_underscore = false;
        while let Some(c) = self.peek() {
            if c == '_' {
                if out.is_empty() || last_underscore {
                    return self.err_at(
                        start,
                        KeyParseErrorKind::InvalidNumber("'_' may only separate digits"),
                    );
                }
                last_underscore = true;
            } else if c.is_digit(radix) {
                out.push(c);
                last_underscore = false;
            } else {
                break;
            }
            self.bump();
        }
        if last_underscore {
            return self.err_at(
                start,
                KeyParseErrorKind::InvalidNumber("'_' may only separate digits"),
            );
        }
        Ok(out)
    }

    /// A literal must not run into a letter or digit (`1abc`, `0x1g`).
    fn after_literal(&self, start: usize) -> R<()> {
        if self.peek().is_some_and(|c| is_ident(c) || c == '.') {
            return self.err_at(
                start,
                KeyParseErrorKind::InvalidNumber("unexpected character after the number"),
            );
        }
        Ok(())
    }

    /// `new Uint8Array([…])`, `new Uint8Array()` or `Uint8Array(n) […]`.
    fn bytes(&mut self) -> R<KeyPart> {
        if self.word() == "new" {
            self.pos += 3;
            self.ws();
            if self.word() != "Uint8Array" {
                return self.expected("\"Uint8Array\" after \"new\"");
            }
            self.pos += "Uint8Array".len();
            self.expect('(', "\"(\"")?;
            self.ws();
            if self.eat(')') {
                return Ok(KeyPart::Bytes(Vec::new()));
            }
            self.expect('[', "\"[\" or \")\"")?;
            let bytes = self.list(|p| p.byte(), "a byte or \"]\"")?;
            self.expect(')', "\")\"")?;
            return Ok(KeyPart::Bytes(bytes));
        }
        // Deno's console form: Uint8Array(3) [ 1, 2, 3 ].
        self.pos += "Uint8Array".len();
        self.expect('(', "\"(\"")?;
        self.ws();
        let len_at = self.pos;
        let digits = self.digits(10, len_at)?;
        if digits.is_empty() {
            return self.expected("the array's length");
        }
        let declared: usize = digits.parse().unwrap_or(usize::MAX);
        self.expect(')', "\")\"")?;
        self.expect('[', "\"[\"")?;
        let bytes = self.list(|p| p.byte(), "a byte or \"]\"")?;
        if bytes.len() != declared {
            return self.err_at(
                len_at,
                KeyParseErrorKind::LengthMismatch {
                    declared,
                    actual: bytes.len(),
                },
            );
        }
        Ok(KeyPart::Bytes(bytes))
    }

    fn byte(&mut self) -> R<u8> {
        let start = self.pos;
        if !self.peek().is_some_and(|c| c.is_ascii_digit() || c == '+') {
            return self.expected("a byte (0 to 255)");
        }
        self.eat('+');
        let value = match self.literal(start)? {
            Literal::Float(v) if v.fract() == 0.0 && (0.0..=255.0).contains(&v) => v as u8,
            _ => return self.err_at(start, KeyParseErrorKind::ByteOutOfRange),
        };
        Ok(value)
    }
}

enum Literal {
    Float(f64),
    Int(BigInt),
}

#[cfg(test)]
mod tests;
