//! Values on the command line: how a typed-in value becomes a `KvValue`
//! that Deno reads back as the same JavaScript value, and how stored
//! values print (readably for people, kv-utils typed JSON for programs).

use anyhow::Context;
use base64::Engine;
use kv::{Key, KvEntry, KvValue, Versionstamp};

/// How `kv set` reads its VALUE.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ValueFormat {
    /// Plain JSON, stored as the value `JSON.parse` gives in Deno
    /// (`'{"a": 1}'`, `42`, `'"text"'`).
    #[default]
    Json,
    /// kv-utils typed JSON (`{"type": "Map", "value": [...]}`), for every
    /// value type (bigint, Date, Map, Set, Uint8Array, KvU64…).
    Typed,
    /// The text itself, as a string.
    String,
    /// Bytes, written as base64 (standard or URL-safe, padded or not),
    /// stored as a `Uint8Array`.
    Bytes,
    /// An unsigned 64-bit integer, stored as `Deno.KvU64`.
    U64,
}

/// The value `text` denotes in `format`.
pub(crate) fn parse(text: &str, format: ValueFormat) -> anyhow::Result<KvValue> {
    Ok(match format {
        ValueFormat::Json => {
            let js = kv_v8::json::parse_plain(text)
                .context("not JSON (--as string stores text as it is)")?;
            kv_v8::to_kv_value(&js)?
        }
        ValueFormat::Typed => kv_v8::json::decode_value(text)?,
        ValueFormat::String => kv_v8::to_kv_value(&kv_v8::JsValue::String(text.to_owned()))?,
        ValueFormat::Bytes => KvValue::Bytes(decode_base64(text.trim())?),
        ValueFormat::U64 => KvValue::U64(
            text.trim()
                .parse()
                .with_context(|| format!("{:?} is not an unsigned 64-bit integer", text.trim()))?,
        ),
    })
}

fn decode_base64(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .with_context(|| format!("{text:?} is not base64"))
}

/// A stored value as people read it (Deno's console style).
pub(crate) fn display(value: &KvValue) -> String {
    kv_v8::display_value(value)
}

/// An entry as kv-utils typed JSON: `{"key":[…],"value":…,
/// "versionstamp":"…"}`; value and versionstamp `null` for a key that is
/// absent, and no value with `keys_only`.
pub(crate) fn entry_json(
    key: &Key,
    entry: Option<&KvEntry>,
    keys_only: bool,
) -> anyhow::Result<String> {
    let key_json = kv_v8::json::encode_key(key);
    Ok(match entry {
        None => format!(r#"{{"key":{key_json},"value":null,"versionstamp":null}}"#),
        Some(e) if keys_only => keys_only_json(key, e.versionstamp),
        Some(e) => kv_v8::json::encode_line(e, None)?.trim_end().to_owned(),
    })
}

/// A key and its versionstamp as kv-utils typed JSON, without a value:
/// `{"key":[…],"versionstamp":"…"}`.
pub(crate) fn keys_only_json(key: &Key, versionstamp: Versionstamp) -> String {
    let key_json = kv_v8::json::encode_key(key);
    format!(r#"{{"key":{key_json},"versionstamp":"{versionstamp}"}}"#)
}
