//! NDJSON entry lines, as kv-utils' `exportEntries` writes them and
//! `importEntries` reads them.

use std::io::BufRead;

use kv_core::{Key, KvValue, Versionstamp};

use super::JsonError;
use super::read::{self, Path};
use super::tree::{self, Json};

/// One entry read from an NDJSON line.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The key.
    pub key: Key,
    /// The value, as Deno would store it (see [`super::decode_value`]).
    pub value: KvValue,
    /// The versionstamp the line carries, if any. kv-utils' import ignores
    /// it: a write gets a new one.
    pub versionstamp: Option<Versionstamp>,
    /// `expireAt`, in Unix milliseconds (at most 2^53 - 1): an extension of
    /// this crate (kv-utils neither writes nor reads expiry).
    pub expire_at: Option<u64>,
}

/// `Number.MAX_SAFE_INTEGER`: the largest `expireAt` read exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

pub(super) fn decode(text: &str) -> Result<Line, JsonError> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let json = tree::parse(text)?;
    let root = Path::Root("line");
    if !matches!(json, Json::Object(_)) {
        return Err(JsonError::Invalid {
            path: root.to_string(),
            message: format!(
                "expected an object with key, value and versionstamp, found {}",
                json.describe()
            ),
        });
    }
    let missing = |field: &str| JsonError::Invalid {
        path: field.to_owned(),
        message: "missing".to_owned(),
    };
    let key = read::key(
        json.member("key").ok_or_else(|| missing("key"))?,
        &Path::Root("key"),
    )?;
    let value = read::kv_value(
        json.member("value").ok_or_else(|| missing("value"))?,
        &Path::Root("value"),
    )?;
    let versionstamp = match json.member("versionstamp") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => {
            Some(s.parse::<Versionstamp>().map_err(|_| JsonError::Invalid {
                path: "versionstamp".to_owned(),
                message: format!("{s:?} is not 20 hex digits"),
            })?)
        }
        Some(other) => {
            return Err(JsonError::Invalid {
                path: "versionstamp".to_owned(),
                message: format!(
                    "expected a string of 20 hex digits, found {}",
                    other.describe()
                ),
            });
        }
    };
    let expire_at = match json.member("expireAt") {
        None | Some(Json::Null) => None,
        // Whole and at most 2^53 (every larger double is a rounded
        // integer), so the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(Json::Number(n)) if n.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER).contains(n) => {
            Some(*n as u64)
        }
        Some(other) => {
            return Err(JsonError::Invalid {
                path: "expireAt".to_owned(),
                message: format!(
                    "expected Unix milliseconds (an integer from 0 to 2^53 - 1), found {}",
                    match other {
                        Json::Number(n) => n.to_string(),
                        other => other.describe().to_owned(),
                    }
                ),
            });
        }
    };
    Ok(Line {
        key,
        value,
        versionstamp,
        expire_at,
    })
}

/// Why a line of an NDJSON stream could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// Reading failed.
    #[error("reading line {line}: {source}")]
    Io {
        /// The line being read (1-based).
        line: usize,
        /// The failure.
        source: std::io::Error,
    },
    /// The line is not UTF-8.
    #[error("line {line} is not UTF-8")]
    NotUtf8 {
        /// The line (1-based).
        line: usize,
    },
    /// The line is not a typed entry.
    #[error("line {line}: {source}")]
    Json {
        /// The line (1-based).
        line: usize,
        /// What is wrong with it.
        source: JsonError,
    },
}

impl LineError {
    /// The line (1-based) the error is about.
    pub fn line(&self) -> usize {
        match self {
            LineError::Io { line, .. }
            | LineError::NotUtf8 { line }
            | LineError::Json { line, .. } => *line,
        }
    }
}

/// The entries of an NDJSON stream, one [`Line`] per line, as kv-utils'
/// import reads them: lines end in LF or CRLF, the last one may lack its
/// end, and blank lines are skipped. Each item is the line number
/// (1-based) and the entry; an error names its line, and reading may go
/// on past it.
///
/// ```
/// use kv_v8::json::Lines;
///
/// let text = "{\"key\":[{\"type\":\"string\",\"value\":\"a\"}],\"value\":{\"type\":\"null\",\"value\":null},\"versionstamp\":\"00000000000000010000\"}\r\n\n{\"key\":[";
/// let mut lines = Lines::new(text.as_bytes());
/// let (n, first) = lines.next().expect("a line")?;
/// assert_eq!((n, first.key), (1, kv_core::key!["a"]));
/// let err = lines.next().expect("a line").expect_err("truncated");
/// assert_eq!(err.to_string(), "line 3: the JSON ends early, at column 9 (is the line truncated?)");
/// assert!(lines.next().is_none());
/// # Ok::<(), kv_v8::json::LineError>(())
/// ```
#[derive(Debug)]
pub struct Lines<R> {
    reader: R,
    line: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    /// Reads entries from `reader`.
    pub fn new(reader: R) -> Self {
        Lines {
            reader,
            line: 0,
            buf: Vec::new(),
        }
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = Result<(usize, Line), LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.line += 1;
            let line = self.line;
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => return Some(Err(LineError::Io { line, source })),
            }
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                return Some(Err(LineError::NotUtf8 { line }));
            };
            if text.trim().is_empty() {
                continue;
            }
            return Some(
                decode(text)
                    .map(|entry| (line, entry))
                    .map_err(|source| LineError::Json { line, source }),
            );
        }
    }
}
