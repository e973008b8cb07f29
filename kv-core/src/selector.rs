//! List selectors, the byte ranges Deno derives from them, and list cursors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;

use crate::{Error, Key, Result};

/// Which keys a `list` visits. Construct with [`Selector::prefix`],
/// [`Selector::range`] and the `with_*` methods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    /// Keys strictly under this prefix (never the prefix itself).
    pub prefix: Option<Key>,
    /// Inclusive start.
    pub start: Option<Key>,
    /// Exclusive end.
    pub end: Option<Key>,
}

impl Selector {
    /// All keys strictly under `prefix`; `Key::empty()` selects everything.
    pub fn prefix(prefix: impl Into<Key>) -> Self {
        Selector {
            prefix: Some(prefix.into()),
            start: None,
            end: None,
        }
    }

    /// Keys in `[start, end)`.
    pub fn range(start: impl Into<Key>, end: impl Into<Key>) -> Self {
        Selector {
            prefix: None,
            start: Some(start.into()),
            end: Some(end.into()),
        }
    }

    /// Starts at `start` (inclusive), which must lie under the prefix.
    pub fn with_start(mut self, start: impl Into<Key>) -> Self {
        self.start = Some(start.into());
        self
    }

    /// Ends at `end` (exclusive), which must lie under the prefix.
    pub fn with_end(mut self, end: impl Into<Key>) -> Self {
        self.end = Some(end.into());
        self
    }

    /// Resolves the selector into byte bounds, as Deno does.
    ///
    /// # Errors
    /// `InvalidSelector` with Deno's messages for invalid combinations,
    /// `InvalidKey` for unencodable keys.
    pub fn bounds(&self) -> Result<SelectorBounds> {
        let enc = |k: &Key| k.encode();
        match (&self.prefix, &self.start, &self.end) {
            (Some(_), Some(_), Some(_)) => Err(Error::InvalidSelector(
                "Selector can not specify both 'start' and 'end' key when specifying 'prefix'",
            )),
            (Some(p), start, end) => {
                let p = enc(p)?;
                let lo = match start {
                    Some(s) => {
                        let s = enc(s)?;
                        if !(s.starts_with(&p) && s.len() > p.len()) {
                            return Err(Error::InvalidSelector(
                                "Start key is not in the keyspace defined by prefix",
                            ));
                        }
                        s
                    }
                    None => concat(&p, 0x00),
                };
                let hi = match end {
                    Some(e) => {
                        let e = enc(e)?;
                        if !(e.starts_with(&p) && e.len() > p.len()) {
                            return Err(Error::InvalidSelector(
                                "End key is not in the keyspace defined by prefix",
                            ));
                        }
                        e
                    }
                    None => concat(&p, 0xff),
                };
                Ok(SelectorBounds {
                    start: lo,
                    end: hi,
                    common_prefix: p,
                    explicit_start: start.is_some(),
                    explicit_end: end.is_some(),
                })
            }
            (None, Some(s), Some(e)) => {
                let (s, e) = (enc(s)?, enc(e)?);
                if s > e {
                    return Err(Error::InvalidSelector("Start key is greater than end key"));
                }
                let common = s.iter().zip(&e).take_while(|(a, b)| a == b).count();
                Ok(SelectorBounds {
                    common_prefix: s[..common].to_vec(),
                    start: s,
                    end: e,
                    explicit_start: true,
                    explicit_end: true,
                })
            }
            _ => Err(Error::InvalidSelector(
                "Selector must specify either 'prefix' or both 'start' and 'end' key",
            )),
        }
    }
}

fn concat(p: &[u8], b: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(p.len() + 1);
    v.extend_from_slice(p);
    v.push(b);
    v
}

/// The byte range of a [`Selector`] and what cursors need to know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorBounds {
    /// Inclusive start.
    pub start: Vec<u8>,
    /// Exclusive end.
    pub end: Vec<u8>,
    /// The prefix cursors are relative to.
    pub common_prefix: Vec<u8>,
    /// Whether the selector gave a start key.
    pub explicit_start: bool,
    /// Whether the selector gave an end key.
    pub explicit_end: bool,
}

impl SelectorBounds {
    /// The cursor that resumes after `last_key` (an encoded key).
    ///
    /// # Errors
    /// `InvalidCursor("Invalid boundary key")` if the key is not under the
    /// common prefix.
    pub fn cursor_after(&self, last_key: &[u8]) -> Result<String> {
        let rest = last_key
            .strip_prefix(self.common_prefix.as_slice())
            .ok_or(Error::InvalidCursor("Invalid boundary key"))?;
        Ok(URL_SAFE.encode(rest))
    }

    /// Checks that [`cursor_after`](Self::cursor_after) can encode a cursor
    /// for `key`, without encoding it.
    ///
    /// # Errors
    /// As `cursor_after`.
    pub fn check_boundary(&self, key: &[u8]) -> Result<()> {
        if key.starts_with(&self.common_prefix) {
            Ok(())
        } else {
            Err(Error::InvalidCursor("Invalid boundary key"))
        }
    }

    /// The byte range left to scan after resuming from `cursor` (an empty
    /// cursor means no cursor, as in Deno).
    ///
    /// # Errors
    /// `InvalidCursor` for a malformed cursor or one outside the selector.
    pub fn resume(&self, cursor: &str, reverse: bool) -> Result<(Vec<u8>, Vec<u8>)> {
        if cursor.is_empty() {
            return Ok((self.start.clone(), self.end.clone()));
        }
        let bytes = URL_SAFE
            .decode(cursor)
            .map_err(|_| Error::InvalidCursor("invalid cursor"))?;
        let mut key = self.common_prefix.clone();
        key.extend_from_slice(&bytes);
        let (start, end) = if reverse {
            (self.start.clone(), key)
        } else {
            key.push(0x00);
            (key, self.end.clone())
        };
        if (self.explicit_start && start < self.start) || (self.explicit_end && end > self.end) {
            return Err(Error::InvalidCursor("cursor out of bounds"));
        }
        // A cursor never widens the selector, whatever bytes it carries.
        Ok((start.max(self.start.clone()), end.min(self.end.clone())))
    }
}
