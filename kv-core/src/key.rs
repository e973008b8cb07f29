//! Keys and their byte encoding (a subset of the FoundationDB tuple layer,
//! byte-identical to Deno's), and their text forms (`notation`: Deno's
//! `["users", 1n]` and the short form `users/alice`).

use std::cmp::Ordering;

use num_bigint::{BigInt, Sign};

use crate::Error;

mod notation;

pub use notation::{KeyParseError, KeyParseErrorKind};

const BYTES: u8 = 0x01;
const STRING: u8 = 0x02;
const NEG_INT_LONG: u8 = 0x0b;
const INT_ZERO: u8 = 0x14;
const POS_INT_LONG: u8 = 0x1d;
const DOUBLE: u8 = 0x21;
const FALSE: u8 = 0x26;
const TRUE: u8 = 0x27;

/// Largest magnitude, in bytes, that an integer key part may have.
pub(crate) const MAX_INT_BYTES: usize = 255;

/// One part of a [`Key`].
///
/// The variants mirror the JavaScript types Deno accepts: `Uint8Array`,
/// `string`, `bigint`, `number` and `boolean`. A JavaScript `number` is always
/// a [`KeyPart::Float`], so `["a", 1]` written by Deno is `Float(1.0)`, while
/// `["a", 1n]` is `Int(1)`; they are different keys.
///
/// Parts order as their encodings do: bytes < string < int < float < false <
/// true, and within a type by value (floats by IEEE total order, so `-0.0 <
/// 0.0`).
#[derive(Clone, Debug)]
pub enum KeyPart {
    /// A byte string (`Uint8Array`).
    Bytes(Vec<u8>),
    /// A text string.
    String(String),
    /// An arbitrary-precision integer (`bigint`), at most 255 magnitude bytes.
    Int(BigInt),
    /// A double (`number`). NaN payloads are canonicalised when encoded.
    Float(f64),
    /// `false`.
    False,
    /// `true`.
    True,
}

impl KeyPart {
    fn tag_rank(&self) -> u8 {
        match self {
            KeyPart::Bytes(_) => 0,
            KeyPart::String(_) => 1,
            KeyPart::Int(_) => 2,
            KeyPart::Float(_) => 3,
            KeyPart::False => 4,
            KeyPart::True => 5,
        }
    }
}

fn canonical_bits(f: f64) -> u64 {
    if f.is_nan() {
        if f.is_sign_negative() {
            0xfff8_0000_0000_0000
        } else {
            0x7ff8_0000_0000_0000
        }
    } else {
        f.to_bits()
    }
}

fn float_order_bits(f: f64) -> u64 {
    let bits = canonical_bits(f);
    if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    }
}

impl PartialEq for KeyPart {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for KeyPart {}

impl PartialOrd for KeyPart {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyPart {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (KeyPart::Bytes(a), KeyPart::Bytes(b)) => a.cmp(b),
            (KeyPart::String(a), KeyPart::String(b)) => a.as_bytes().cmp(b.as_bytes()),
            (KeyPart::Int(a), KeyPart::Int(b)) => a.cmp(b),
            (KeyPart::Float(a), KeyPart::Float(b)) => {
                float_order_bits(*a).cmp(&float_order_bits(*b))
            }
            _ => self.tag_rank().cmp(&other.tag_rank()),
        }
    }
}

impl std::hash::Hash for KeyPart {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.tag_rank().hash(state);
        match self {
            KeyPart::Bytes(b) => b.hash(state),
            KeyPart::String(s) => s.hash(state),
            KeyPart::Int(i) => i.hash(state),
            KeyPart::Float(f) => canonical_bits(*f).hash(state),
            KeyPart::False | KeyPart::True => {}
        }
    }
}

macro_rules! int_part_from {
    ($($t:ty),*) => {$(
        impl From<$t> for KeyPart {
            fn from(v: $t) -> Self {
                KeyPart::Int(BigInt::from(v))
            }
        }
    )*};
}
int_part_from!(
    i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, isize, usize
);

impl From<BigInt> for KeyPart {
    fn from(v: BigInt) -> Self {
        KeyPart::Int(v)
    }
}
impl From<f64> for KeyPart {
    fn from(v: f64) -> Self {
        KeyPart::Float(v)
    }
}
impl From<f32> for KeyPart {
    fn from(v: f32) -> Self {
        KeyPart::Float(f64::from(v))
    }
}
impl From<bool> for KeyPart {
    fn from(v: bool) -> Self {
        if v { KeyPart::True } else { KeyPart::False }
    }
}
impl From<&str> for KeyPart {
    fn from(v: &str) -> Self {
        KeyPart::String(v.to_owned())
    }
}
impl From<String> for KeyPart {
    fn from(v: String) -> Self {
        KeyPart::String(v)
    }
}
impl From<&String> for KeyPart {
    fn from(v: &String) -> Self {
        KeyPart::String(v.clone())
    }
}
impl From<Vec<u8>> for KeyPart {
    fn from(v: Vec<u8>) -> Self {
        KeyPart::Bytes(v)
    }
}
impl From<&[u8]> for KeyPart {
    fn from(v: &[u8]) -> Self {
        KeyPart::Bytes(v.to_vec())
    }
}
impl<const N: usize> From<&[u8; N]> for KeyPart {
    fn from(v: &[u8; N]) -> Self {
        KeyPart::Bytes(v.to_vec())
    }
}

/// A Deno KV key: an ordered list of [`KeyPart`]s.
///
/// Build one with [`key!`](crate::key!) or from a `Vec<KeyPart>`, or parse
/// one with [`Key::parse`]; `Display` prints Deno's notation, which
/// `parse` reads back. Keys order part by part, a strict prefix first,
/// which is also the order of their encodings.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub Vec<KeyPart>);

impl Key {
    /// The empty key: valid as a list prefix (the whole key space), not as a
    /// write key.
    pub fn empty() -> Self {
        Key(Vec::new())
    }

    /// The parts of this key.
    pub fn parts(&self) -> &[KeyPart] {
        &self.0
    }

    /// Whether the key has no parts.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A new key made of this one followed by `part`.
    pub fn with(mut self, part: impl Into<KeyPart>) -> Self {
        self.0.push(part.into());
        self
    }

    /// Encodes the key as Deno does.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when an integer part needs more than 255 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(16);
        for part in &self.0 {
            encode_part(part, &mut out)?;
        }
        Ok(out)
    }

    /// Decodes bytes produced by [`Key::encode`] (or by Deno).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] on an unknown tag, truncated input or invalid UTF-8.
    pub fn decode(bytes: &[u8]) -> Result<Key, Error> {
        let mut parts = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (part, tail) = decode_part(rest)?;
            parts.push(part);
            rest = tail;
        }
        Ok(Key(parts))
    }

    /// Checks that `bytes` would [`decode`](Key::decode), without building
    /// the key (for raw keys from elsewhere, which KV Connect servers store
    /// as opaque bytes).
    ///
    /// # Errors
    /// As [`Key::decode`].
    pub fn validate(bytes: &[u8]) -> Result<(), Error> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (part, tail) = scan_part(rest)?;
            if let RawPart::String(e) = part {
                e.validate_utf8()?;
            }
            rest = tail;
        }
        Ok(())
    }
}

impl From<Vec<KeyPart>> for Key {
    fn from(parts: Vec<KeyPart>) -> Self {
        Key(parts)
    }
}

impl<const N: usize> From<[KeyPart; N]> for Key {
    fn from(parts: [KeyPart; N]) -> Self {
        Key(parts.into())
    }
}

impl From<&Key> for Key {
    fn from(key: &Key) -> Self {
        key.clone()
    }
}

/// Builds a [`Key`] from values convertible into [`KeyPart`]:
/// `key!["users", 42, true]`. Rust integers become `bigint` parts and `f64`
/// becomes a `number` part, as in Deno.
#[macro_export]
macro_rules! key {
    ($($part:expr),* $(,)?) => {
        $crate::Key(::std::vec![$($crate::KeyPart::from($part)),*])
    };
}

fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.push(0);
}

fn encode_part(part: &KeyPart, out: &mut Vec<u8>) -> Result<(), Error> {
    match part {
        KeyPart::Bytes(b) => {
            out.push(BYTES);
            escape_into(b, out);
        }
        KeyPart::String(s) => {
            out.push(STRING);
            escape_into(s.as_bytes(), out);
        }
        KeyPart::Int(i) => encode_int(i, out)?,
        KeyPart::Float(f) => {
            out.push(DOUBLE);
            out.extend_from_slice(&float_order_bits(*f).to_be_bytes());
        }
        KeyPart::False => out.push(FALSE),
        KeyPart::True => out.push(TRUE),
    }
    Ok(())
}

fn encode_int(i: &BigInt, out: &mut Vec<u8>) -> Result<(), Error> {
    let (sign, mag) = i.to_bytes_be();
    if sign == Sign::NoSign {
        out.push(INT_ZERO);
        return Ok(());
    }
    let len = mag.len();
    if len > MAX_INT_BYTES {
        return Err(Error::InvalidKey(
            "BigUint requires more than 255 bytes to be represented".into(),
        ));
    }
    let len_u8 = len as u8;
    if sign == Sign::Plus {
        if len <= 8 {
            out.push(INT_ZERO + len_u8);
        } else {
            out.push(POS_INT_LONG);
            out.push(len_u8);
        }
        out.extend_from_slice(&mag);
    } else {
        if len <= 8 {
            out.push(INT_ZERO - len_u8);
        } else {
            out.push(NEG_INT_LONG);
            out.push(len_u8 ^ 0xff);
        }
        out.extend(mag.iter().map(|b| !b));
    }
    Ok(())
}

fn truncated() -> Error {
    Error::InvalidKey("unexpected end of key".into())
}

/// An escaped byte string: the bytes up to its terminating NUL, where
/// `00 FF` stands for a NUL byte.
struct Escaped<'a> {
    raw: &'a [u8],
    has_nul: bool,
}

impl Escaped<'_> {
    fn to_vec(&self) -> Vec<u8> {
        if !self.has_nul {
            return self.raw.to_vec();
        }
        let mut out = Vec::with_capacity(self.raw.len());
        let mut i = 0;
        while i < self.raw.len() {
            out.push(self.raw[i]);
            // The scan guaranteed that every NUL here is followed by FF.
            i += if self.raw[i] == 0 { 2 } else { 1 };
        }
        out
    }

    fn validate_utf8(&self) -> Result<(), Error> {
        let valid = if self.has_nul {
            std::str::from_utf8(&self.to_vec()).is_ok()
        } else {
            std::str::from_utf8(self.raw).is_ok()
        };
        valid
            .then_some(())
            .ok_or_else(|| Error::InvalidKey("invalid utf8".into()))
    }
}

/// Splits an escaped byte string from what follows its terminator.
fn escaped(input: &[u8]) -> Result<(Escaped<'_>, &[u8]), Error> {
    let mut from = 0;
    let mut has_nul = false;
    loop {
        let end = from
            + input[from..]
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(truncated)?;
        if input.get(end + 1) == Some(&0xff) {
            has_nul = true;
            from = end + 2;
            continue;
        }
        let raw = &input[..end];
        return Ok((Escaped { raw, has_nul }, &input[end + 1..]));
    }
}

fn take(input: &[u8], n: usize) -> Result<(&[u8], &[u8]), Error> {
    if input.len() < n {
        return Err(truncated());
    }
    Ok(input.split_at(n))
}

/// A big-endian magnitude; the common case of at most 8 bytes skips
/// `BigInt`'s general byte conversion.
fn magnitude(mag: &[u8]) -> BigInt {
    if mag.len() <= 8 {
        let mut word = [0u8; 8];
        word[8 - mag.len()..].copy_from_slice(mag);
        BigInt::from(u64::from_be_bytes(word))
    } else {
        BigInt::from_bytes_be(Sign::Plus, mag)
    }
}

/// One encoded part, located but not yet built: what [`Key::decode`] and
/// [`Key::validate`] share.
enum RawPart<'a> {
    Bytes(Escaped<'a>),
    String(Escaped<'a>),
    /// A positive integer's big-endian magnitude (empty for zero).
    PosInt(&'a [u8]),
    /// A negative integer's magnitude, one's-complemented.
    NegInt(&'a [u8]),
    Double([u8; 8]),
    False,
    True,
}

fn scan_part(input: &[u8]) -> Result<(RawPart<'_>, &[u8]), Error> {
    let (&tag, rest) = input.split_first().ok_or_else(truncated)?;
    match tag {
        BYTES => escaped(rest).map(|(e, rest)| (RawPart::Bytes(e), rest)),
        STRING => escaped(rest).map(|(e, rest)| (RawPart::String(e), rest)),
        INT_ZERO..=0x1c | POS_INT_LONG => {
            let (len, rest) = if tag == POS_INT_LONG {
                let (l, r) = take(rest, 1)?;
                (l[0] as usize, r)
            } else {
                ((tag - INT_ZERO) as usize, rest)
            };
            let (mag, rest) = take(rest, len)?;
            Ok((RawPart::PosInt(mag), rest))
        }
        NEG_INT_LONG | 0x0c..=0x13 => {
            let (len, rest) = if tag == NEG_INT_LONG {
                let (l, r) = take(rest, 1)?;
                ((l[0] ^ 0xff) as usize, r)
            } else {
                ((INT_ZERO - tag) as usize, rest)
            };
            let (mag, rest) = take(rest, len)?;
            Ok((RawPart::NegInt(mag), rest))
        }
        DOUBLE => {
            let (body, rest) = take(rest, 8)?;
            let mut arr = [0u8; 8];
            arr.copy_from_slice(body);
            Ok((RawPart::Double(arr), rest))
        }
        FALSE => Ok((RawPart::False, rest)),
        TRUE => Ok((RawPart::True, rest)),
        other => Err(Error::InvalidKey(format!(
            "invalid key part tag 0x{other:02x}"
        ))),
    }
}

fn decode_part(input: &[u8]) -> Result<(KeyPart, &[u8]), Error> {
    let (raw, rest) = scan_part(input)?;
    let part = match raw {
        RawPart::Bytes(e) => KeyPart::Bytes(e.to_vec()),
        RawPart::String(e) => KeyPart::String(
            String::from_utf8(e.to_vec()).map_err(|_| Error::InvalidKey("invalid utf8".into()))?,
        ),
        RawPart::PosInt(mag) => KeyPart::Int(magnitude(mag)),
        RawPart::NegInt(mag) => {
            let mag: Vec<u8> = mag.iter().map(|b| !b).collect();
            KeyPart::Int(-magnitude(&mag))
        }
        RawPart::Double(arr) => {
            let ordered = u64::from_be_bytes(arr);
            let bits = if ordered >> 63 == 0 {
                !ordered
            } else {
                ordered ^ (1 << 63)
            };
            KeyPart::Float(f64::from_bits(bits))
        }
        RawPart::False => KeyPart::False,
        RawPart::True => KeyPart::True,
    };
    Ok((part, rest))
}

#[cfg(test)]
mod tests;
