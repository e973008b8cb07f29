//! Plain JSON as Deno stores it: the value `JSON.parse` returns.

use super::JsonError;
use super::read::js_property_order;
use super::tree::{self, Json};
use crate::value::{JsValue, PropertyKey};

/// The value a Deno program stores for `JSON.parse` of this JSON: `null`,
/// booleans, numbers (doubles), strings, arrays and plain objects, whose
/// properties take JavaScript's order (array indices first, ascending).
///
/// serde_json's `Map` sorts members by name unless its `preserve_order`
/// feature is on; [`parse_plain`] keeps the order of the text.
pub fn from_plain(value: &serde_json::Value) -> JsValue {
    use serde_json::Value as V;
    match value {
        V::Null => JsValue::Null,
        V::Bool(b) => JsValue::Bool(*b),
        V::Number(n) => JsValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        V::String(s) => JsValue::String(s.clone()),
        V::Array(items) => JsValue::array(items.iter().map(from_plain)),
        V::Object(members) => JsValue::Object(js_property_order(
            members
                .iter()
                .map(|(k, v)| (PropertyKey::new(k), from_plain(v)))
                .collect(),
        )),
    }
}

/// Parses JSON text into the value `JSON.parse` gives a Deno program (see
/// [`from_plain`]), members in the order of the text.
///
/// # Errors
/// [`JsonError::Syntax`] / [`JsonError::Truncated`] for text that is not
/// JSON (or nests deeper than this crate's limit).
pub fn parse_plain(text: &str) -> Result<JsValue, JsonError> {
    Ok(convert(&tree::parse(text)?))
}

fn convert(json: &Json) -> JsValue {
    match json {
        Json::Null => JsValue::Null,
        Json::Bool(b) => JsValue::Bool(*b),
        Json::Number(n) => JsValue::Number(*n),
        Json::String(s) => JsValue::String(s.clone()),
        Json::Array(items) => JsValue::array(items.iter().map(convert)),
        Json::Object(members) => JsValue::Object(js_property_order(
            members
                .iter()
                .map(|(k, v)| (PropertyKey::new(k), convert(v)))
                .collect(),
        )),
    }
}
