//! V8 `SerializationTag` bytes and RegExp flag bits.

pub(crate) const VERSION: u8 = 0xFF;
pub(crate) const PADDING: u8 = 0;
pub(crate) const VERIFY_OBJECT_COUNT: u8 = b'?';
pub(crate) const THE_HOLE: u8 = b'-';
pub(crate) const UNDEFINED: u8 = b'_';
pub(crate) const NULL: u8 = b'0';
pub(crate) const TRUE: u8 = b'T';
pub(crate) const FALSE: u8 = b'F';
pub(crate) const INT32: u8 = b'I';
pub(crate) const UINT32: u8 = b'U';
pub(crate) const DOUBLE: u8 = b'N';
pub(crate) const BIGINT: u8 = b'Z';
pub(crate) const UTF8_STRING: u8 = b'S';
pub(crate) const ONE_BYTE_STRING: u8 = b'"';
pub(crate) const TWO_BYTE_STRING: u8 = b'c';
pub(crate) const OBJECT_REFERENCE: u8 = b'^';
pub(crate) const BEGIN_OBJECT: u8 = b'o';
pub(crate) const END_OBJECT: u8 = b'{';
pub(crate) const BEGIN_SPARSE_ARRAY: u8 = b'a';
pub(crate) const END_SPARSE_ARRAY: u8 = b'@';
pub(crate) const BEGIN_DENSE_ARRAY: u8 = b'A';
pub(crate) const END_DENSE_ARRAY: u8 = b'$';
pub(crate) const DATE: u8 = b'D';
pub(crate) const TRUE_OBJECT: u8 = b'y';
pub(crate) const FALSE_OBJECT: u8 = b'x';
pub(crate) const NUMBER_OBJECT: u8 = b'n';
pub(crate) const BIGINT_OBJECT: u8 = b'z';
pub(crate) const STRING_OBJECT: u8 = b's';
pub(crate) const REGEXP: u8 = b'R';
pub(crate) const BEGIN_MAP: u8 = b';';
pub(crate) const END_MAP: u8 = b':';
pub(crate) const BEGIN_SET: u8 = b'\'';
pub(crate) const END_SET: u8 = b',';
pub(crate) const ARRAY_BUFFER: u8 = b'B';
pub(crate) const IMMUTABLE_ARRAY_BUFFER: u8 = b'C';
pub(crate) const RESIZABLE_ARRAY_BUFFER: u8 = b'~';
pub(crate) const ARRAY_BUFFER_VIEW: u8 = b'V';
pub(crate) const ERROR: u8 = b'r';

/// RegExp flag characters by V8's bit position (`JSRegExp::Flag`).
const REGEXP_FLAG_BITS: [(char, u32); 9] = [
    ('g', 1),
    ('i', 2),
    ('m', 4),
    ('y', 8),
    ('u', 16),
    ('s', 32),
    ('l', 64),
    ('d', 128),
    ('v', 256),
];

/// JavaScript's canonical order of the flags string.
const REGEXP_FLAG_ORDER: &str = "dgilmsuvy";

fn flag_bit(c: char) -> Option<u32> {
    REGEXP_FLAG_BITS
        .iter()
        .find(|(ch, _)| *ch == c)
        .map(|(_, b)| *b)
}

/// The flags string for V8's flag bits, or `None` for unknown bits.
pub(crate) fn regexp_flags_to_string(bits: u32) -> Option<String> {
    if bits >= 512 {
        return None;
    }
    Some(
        REGEXP_FLAG_ORDER
            .chars()
            .filter(|&c| flag_bit(c).is_some_and(|b| bits & b != 0))
            .collect(),
    )
}

/// V8's flag bits for a flags string, or `None` for an unknown or repeated
/// flag.
pub(crate) fn regexp_flags_from_str(flags: &str) -> Option<u32> {
    let mut bits = 0;
    for c in flags.chars() {
        let b = flag_bit(c)?;
        if bits & b != 0 {
            return None;
        }
        bits |= b;
    }
    Some(bits)
}
