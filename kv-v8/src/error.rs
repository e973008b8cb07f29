//! The crate's error type.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while encoding, decoding or mapping a value.
///
/// Decoding errors carry the byte `offset` in the input where the problem
/// was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended in the middle of a value.
    #[error("the V8 value ends early (at byte {offset})")]
    UnexpectedEnd {
        /// Where more input was needed.
        offset: usize,
    },
    /// The input does not start with the `FF <version>` header.
    #[error("the V8 value has no version header")]
    MissingHeader,
    /// The format version is outside the range this codec reads (13 to 16).
    #[error("V8 serialization format version {version} is not supported (13 to 16 are)")]
    UnsupportedVersion {
        /// The version found.
        version: u64,
    },
    /// A tag this codec does not decode: host objects, shared or transferred
    /// objects, WebAssembly, or an unknown byte.
    #[error("V8 tag {} ({tag:#04x}) at byte {offset} is not supported", describe(*tag))]
    UnsupportedTag {
        /// The tag byte.
        tag: u8,
        /// Where it is.
        offset: usize,
    },
    /// An unknown sub-tag inside an `Error` or an array buffer view.
    #[error("V8 {within} sub-tag {} ({tag:#04x}) at byte {offset} is not supported", describe(*tag))]
    UnsupportedSubTag {
        /// `"error"` or `"array buffer view"`.
        within: &'static str,
        /// The sub-tag byte.
        tag: u8,
        /// Where it is.
        offset: usize,
    },
    /// The bytes are not a well-formed V8 value.
    #[error("malformed V8 value at byte {offset}: {reason}")]
    Malformed {
        /// Where the problem was found.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A back-reference names an object that does not exist (yet).
    #[error("V8 object reference {id} at byte {offset} names no earlier object")]
    InvalidReference {
        /// The reference id.
        id: u64,
        /// Where it is.
        offset: usize,
    },
    /// The value is larger than this decoder materialises (a sparse array
    /// whose length exceeds the remaining element budget).
    #[error("at byte {offset}: {what}")]
    TooLarge {
        /// Where the problem was found.
        offset: usize,
        /// What is too large.
        what: String,
    },
    /// Values nest deeper than [`crate::MAX_DEPTH`].
    #[error("the value nests deeper than {} levels", crate::MAX_DEPTH)]
    TooDeep,
    /// Bytes follow the end of the value.
    #[error("{count} unexpected bytes follow the V8 value at byte {offset}")]
    TrailingBytes {
        /// Where the value ended.
        offset: usize,
        /// How many bytes follow.
        count: usize,
    },
    /// A [`crate::JsValue`] that cannot be written (a dangling `Ref`, bad
    /// `RegExp` flags, a view whose length is not a multiple of its element
    /// size, …).
    #[error("the value cannot be encoded: {0}")]
    Unencodable(String),
    /// A serde `Serialize` or `Deserialize` implementation failed, or the
    /// value does not have the shape the Rust type expects.
    #[error("{0}")]
    Serde(String),
    /// A database operation failed.
    #[error(transparent)]
    Kv(#[from] kv_core::Error),
}

impl Error {
    pub(crate) fn malformed(offset: usize, reason: impl Into<String>) -> Self {
        Error::Malformed {
            offset,
            reason: reason.into(),
        }
    }
}

fn describe(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("{tag}")
    }
}

impl serde::ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error::Serde(msg.to_string())
    }
}

impl serde::de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error::Serde(msg.to_string())
    }
}
