//! Round trips through the real Deno runtime, over one SQLite file.
//!
//! 1. Deno (`clients/deno/values_roundtrip.ts write`) stores a table of
//!    values of every kind under `["deno", name]`.
//! 2. Rust reads those rows straight from the file and checks each one
//!    against the expected [`JsValue`] (or raw `KvValue`).
//! 3. Rust writes the same table, plus values made through serde, under
//!    `["rust", name]` (one commit: a new `data_version`).
//! 4. Deno (`… check`) reads them back and compares them with the JavaScript
//!    values by deep equality; it exits non-zero on any difference.
//!
//! The test needs the pinned Deno that `cargo xtask tools` installs under
//! `.tools/npm/` (or the binary named by `KV_DENO`). Without it the test
//! fails, unless `KV_SKIP_DENO=1` is set.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use kv_core::{KvValue, key};
use kv_v8::{
    Bytes, ErrorName, JsArray, JsError, JsValue, KvU64, PropertyKey, TypedArray, TypedArrayKind,
    decode, to_kv_value, to_value,
};
use num_bigint::BigInt;
use serde::Serialize;

pub(crate) type R = Result<(), Box<dyn std::error::Error>>;

/// What a table entry should be in the database.
enum Expect {
    /// A V8 value.
    Js(JsValue),
    /// A value stored in its own encoding (`KvU64`, top-level `Uint8Array`).
    Raw(KvValue),
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kv-v8 sits in the workspace")
        .to_path_buf()
}

/// The pinned Deno binary, found where `cargo xtask tools` puts it.
fn deno() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KV_DENO") {
        return Some(PathBuf::from(p));
    }
    let modules = workspace_root().join(".tools/npm/node_modules");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(modules.join("@deno"))
        .map(|dir| dir.flatten().map(|e| e.path().join("deno")).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates.push(modules.join(".bin/deno"));
    candidates.into_iter().find(|p| p.is_file())
}

/// The pinned Deno, or `None` (skip the test) when it is missing and
/// `KV_SKIP_DENO=1` says that is fine; otherwise a missing Deno fails.
pub(crate) fn deno_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(deno) = deno() {
        return Some(deno);
    }
    if std::env::var("KV_SKIP_DENO").as_deref() == Ok("1") {
        eprintln!("KV_SKIP_DENO=1: skipping {test}");
        return None;
    }
    panic!(
        "{test} needs the pinned Deno binary under .tools/npm \
         (install it with `cargo xtask tools`, or name one with KV_DENO); \
         set KV_SKIP_DENO=1 to skip this test"
    );
}

/// Runs `clients/deno/<script>` with `args`; fails unless it succeeds.
pub(crate) fn run_script(deno: &Path, script: &str, args: &[&std::ffi::OsStr]) -> R {
    let script = workspace_root().join("clients/deno").join(script);
    let out = Command::new(deno)
        .args(["run", "-A", "--unstable-kv"])
        .arg(&script)
        .args(args)
        .env("DENO_NO_UPDATE_CHECK", "1")
        .env("NO_COLOR", "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "deno {} {args:?} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        out.status
    );
    eprintln!("deno {}: {}", script.display(), stdout.trim());
    Ok(())
}

fn run_deno(deno: &Path, mode: &str, db: &Path) -> R {
    run_script(
        deno,
        "values_roundtrip.ts",
        &[mode.as_ref(), db.as_os_str()],
    )
}

fn obj<K: Into<PropertyKey>, const N: usize>(props: [(K, JsValue); N]) -> JsValue {
    JsValue::object(props)
}

fn s(v: &str) -> JsValue {
    v.into()
}

fn n(v: f64) -> JsValue {
    JsValue::Number(v)
}

fn big(v: impl Into<BigInt>) -> JsValue {
    JsValue::BigInt(v.into())
}

fn typed(kind: TypedArrayKind, bytes: Vec<u8>) -> JsValue {
    JsValue::TypedArray(TypedArray { kind, bytes })
}

fn error(name: ErrorName, message: &str, stack: &str, cause: Option<JsValue>) -> JsValue {
    JsValue::Error(Box::new(JsError {
        name,
        message: Some(message.into()),
        stack: Some(stack.into()),
        cause,
    }))
}

/// The table of `values_roundtrip.ts`, as Rust expects to read it.
fn table() -> Vec<(&'static str, Expect)> {
    use Expect::{Js, Raw};
    let mut sparse = vec![None; 11];
    sparse[5] = Some(n(1.0));
    sparse[10] = Some(s("x"));
    let le = |xs: &[&[u8]]| xs.concat();
    vec![
        ("undefined", Js(JsValue::Undefined)),
        ("null", Js(JsValue::Null)),
        ("true", Js(true.into())),
        ("false", Js(false.into())),
        ("int", Js(n(42.0))),
        ("negative", Js(n(-7.0))),
        ("double", Js(n(1.5))),
        ("negative_zero", Js(n(-0.0))),
        ("nan", Js(n(f64::NAN))),
        ("infinity", Js(n(f64::NEG_INFINITY))),
        ("two_pow_53", Js(n(2f64.powi(53)))),
        ("uint32", Js(n(4294967295.0))),
        (
            "bigint",
            Js(JsValue::BigInt(
                "1234567890123456789012345678901234567890"
                    .parse()
                    .expect("decimal"),
            )),
        ),
        ("negative_bigint", Js(big(-5))),
        ("zero_bigint", Js(big(0))),
        ("ascii", Js(s("hello"))),
        ("latin1", Js(s("héllo"))),
        ("unicode", Js(s("héllo ☃ 😀 𝄞 中文"))),
        ("empty_string", Js(s(""))),
        (
            "object",
            Js(JsValue::Object(vec![
                (PropertyKey::Index(3), s("x")),
                ("a".into(), n(1.0)),
                ("b".into(), s("two")),
                ("c".into(), JsValue::array([true.into(), JsValue::Null])),
                ("-1".into(), n(0.0)),
            ])),
        ),
        (
            "nested",
            Js(obj([(
                "l1",
                obj([(
                    "l2",
                    obj([(
                        "l3",
                        JsValue::array([
                            n(1.0),
                            JsValue::array([
                                n(2.0),
                                JsValue::array([n(3.0), obj([("deep", true.into())])]),
                            ]),
                        ]),
                    )]),
                )]),
            )])),
        ),
        (
            "large",
            Js(obj([
                ("text", s(&"x".repeat(12000))),
                ("list", JsValue::array((0..1000).map(|i| n(f64::from(i))))),
            ])),
        ),
        ("large_unicode", Js(s(&"☃😀".repeat(2000)))),
        (
            "sparse",
            Js(JsValue::Array(JsArray {
                items: sparse,
                props: vec![],
            })),
        ),
        (
            "array_props",
            Js(JsValue::Array(JsArray {
                items: vec![Some(n(1.0)), Some(n(2.0))],
                props: vec![("bar".into(), true.into())],
            })),
        ),
        (
            "mixed_array",
            Js(JsValue::array([
                n(1.0),
                s("a"),
                JsValue::Null,
                JsValue::Undefined,
                JsValue::array([]),
                JsValue::Object(vec![]),
            ])),
        ),
        ("empty_object", Js(JsValue::Object(vec![]))),
        ("empty_array", Js(JsValue::array([]))),
        ("class_instance", Js(obj([("x", n(1.0)), ("y", n(2.0))]))),
        (
            "cycle",
            Js(obj([("name", s("c")), ("self", JsValue::Ref(0))])),
        ),
        (
            "shared",
            Js(JsValue::array([obj([("x", n(1.0))]), JsValue::Ref(1)])),
        ),
        (
            "map",
            Js(JsValue::Map(vec![
                (n(1.0), s("one")),
                (s("k"), obj([("v", JsValue::array([n(1.0)]))])),
                (obj([("o", n(1.0))]), JsValue::Set(vec![n(1.0)])),
            ])),
        ),
        (
            "set",
            Js(JsValue::Set(vec![n(1.0), s("two"), big(3), JsValue::Null])),
        ),
        ("date", Js(JsValue::Date(1_704_067_200_000.0))),
        ("invalid_date", Js(JsValue::Date(f64::NAN))),
        ("regexp", Js(JsValue::regexp("a+b[c]", "gimsuy"))),
        ("regexp_dv", Js(JsValue::regexp("[\\p{L}--[a-z]]", "dv"))),
        (
            "error",
            Js(error(
                ErrorName::TypeError,
                "boom",
                "TypeError: boom\n    at test",
                Some(obj([("code", n(42.0))])),
            )),
        ),
        (
            "range_error",
            Js(error(
                ErrorName::RangeError,
                "out of range",
                "RangeError: out of range",
                None,
            )),
        ),
        (
            "plain_error",
            Js(error(ErrorName::Error, "plain", "Error: plain", None)),
        ),
        (
            "uint8_nested",
            Js(obj([("bytes", JsValue::uint8_array([1, 2, 3]))])),
        ),
        (
            "subarray_nested",
            Js(obj([("bytes", JsValue::uint8_array([2, 3]))])),
        ),
        (
            "typed_arrays",
            Js(JsValue::array([
                typed(TypedArrayKind::Int8, vec![0xff, 2]),
                typed(TypedArrayKind::Uint8Clamped, vec![255, 0]),
                typed(
                    TypedArrayKind::Int16,
                    le(&[&(-1i16).to_le_bytes(), &2i16.to_le_bytes()]),
                ),
                typed(TypedArrayKind::Uint16, 65535u16.to_le_bytes().to_vec()),
                typed(TypedArrayKind::Int32, (-100000i32).to_le_bytes().to_vec()),
                typed(TypedArrayKind::Uint32, 4000000000u32.to_le_bytes().to_vec()),
                // 1.5 as an IEEE half: sign 0, exponent 15, fraction 0x200.
                typed(TypedArrayKind::Float16, 0x3e00u16.to_le_bytes().to_vec()),
                typed(
                    TypedArrayKind::Float32,
                    le(&[&1.5f32.to_le_bytes(), &(-2f32).to_le_bytes()]),
                ),
                typed(
                    TypedArrayKind::Float64,
                    std::f64::consts::PI.to_le_bytes().to_vec(),
                ),
                typed(TypedArrayKind::BigInt64, (-1i64).to_le_bytes().to_vec()),
                typed(TypedArrayKind::BigUint64, u64::MAX.to_le_bytes().to_vec()),
                typed(TypedArrayKind::DataView, vec![1, 2, 3, 4]),
            ])),
        ),
        ("array_buffer", Js(JsValue::ArrayBuffer(vec![9, 8, 7]))),
        (
            "boxed",
            Js(JsValue::array([
                JsValue::NumberObject(1.5),
                JsValue::StringObject("s☃".into()),
                JsValue::BooleanObject(true),
                JsValue::BooleanObject(false),
                JsValue::BigIntObject(5.into()),
            ])),
        ),
        ("kv_u64", Raw(KvValue::U64(12345))),
        ("top_level_bytes", Raw(KvValue::Bytes(vec![0, 255, 7]))),
    ]
}

#[derive(Serialize)]
enum Shape {
    Dot,
    Circle(f64),
    Rect { w: u32, h: u32 },
}

#[derive(Serialize)]
struct Record {
    id: u64,
    name: String,
    score: f32,
    tags: Vec<String>,
    nick: Option<String>,
    shape: Shape,
    shapes: Vec<Shape>,
    counts: BTreeMap<String, i64>,
    by_id: BTreeMap<u32, String>,
    blob: Bytes,
    total: KvU64,
    unit: (),
    tuple: (bool, char),
}

/// `serdeTable()` of the script: values Rust makes through serde.
fn serde_table() -> Result<Vec<(&'static str, KvValue)>, kv_v8::Error> {
    let record = Record {
        id: u64::MAX,
        name: "Ada ☃".into(),
        score: 1.5,
        tags: vec!["a".into(), "b".into()],
        nick: None,
        shape: Shape::Rect { w: 2, h: 3 },
        shapes: vec![Shape::Dot, Shape::Circle(0.5)],
        counts: [("x".to_owned(), 1), ("big".to_owned(), i64::MIN)].into(),
        by_id: [(7, "seven".to_owned())].into(),
        blob: Bytes(vec![1, 2, 3]),
        total: KvU64(5),
        unit: (),
        tuple: (true, 'z'),
    };
    let json = serde_json::json!({"a": [1, 2.5, null, true], "b": {"c": "d"}});
    Ok(vec![
        ("serde_struct", to_value(&record)?),
        ("serde_kv_u64", to_value(&KvU64(99))?),
        ("serde_bytes", to_value(&Bytes(vec![4, 5, 6]))?),
        ("serde_json", to_value(&json)?),
    ])
}

fn encoded_key(side: &str, name: &str) -> Result<Vec<u8>, kv_core::Error> {
    key![side, name].encode()
}

/// Checks what Deno wrote against the table.
fn check_deno_rows(db: &Path) -> R {
    let conn = rusqlite::Connection::open(db)?;
    let mut stmt = conn.prepare("select k, v, v_encoding from kv")?;
    let rows: HashMap<Vec<u8>, KvValue> = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(1)?,
            ))
        })?
        .map(|row| {
            let (k, enc, v) = row?;
            Ok((k, KvValue::from_encoded(enc, v)?))
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let table = table();
    assert_eq!(
        rows.len(),
        table.len(),
        "Deno wrote one row per table entry"
    );
    let mut failures = Vec::new();
    for (name, expect) in &table {
        let got = rows
            .get(&encoded_key("deno", name)?)
            .ok_or_else(|| format!("Deno did not write {name}"))?;
        match (expect, got) {
            (Expect::Js(want), KvValue::V8(bytes)) => {
                assert_eq!(
                    bytes[..2],
                    [0xff, 0x10],
                    "{name}: Deno 2.9 writes version 16"
                );
                match decode(bytes) {
                    Ok(v) if v == *want => {}
                    Ok(v) => failures.push(format!("{name}: got {v}, expected {want}")),
                    Err(e) => failures.push(format!("{name}: {e}")),
                }
            }
            (Expect::Raw(want), got) if want == got => {}
            (_, got) => failures.push(format!("{name}: unexpected stored value {got:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "values Deno wrote:\n{}",
        failures.join("\n")
    );
    Ok(())
}

/// Writes the table and the serde values under `["rust", name]` as one
/// commit at a new data version, as another Deno KV writer would.
fn write_rust_rows(db: &Path) -> R {
    let mut values = Vec::new();
    for (name, expect) in table() {
        let value = match expect {
            Expect::Js(v) => to_kv_value(&v)?,
            Expect::Raw(v) => v,
        };
        values.push((encoded_key("rust", name)?, value));
    }
    for (name, value) in serde_table()? {
        values.push((encoded_key("rust", name)?, value));
    }
    write_rows(db, values)
}

/// Stores `rows` (encoded key, value) in a Deno SQLite file as one commit
/// at a new data version, as another Deno KV writer would.
pub(crate) fn write_rows(db: &Path, rows: impl IntoIterator<Item = (Vec<u8>, KvValue)>) -> R {
    let mut conn = rusqlite::Connection::open(db)?;
    let tx = conn.transaction()?;
    let version: i64 = tx.query_row("select version from data_version where k = 0", [], |r| {
        r.get(0)
    })?;
    let version = version + 1;
    for (key, value) in rows {
        tx.execute(
            "insert or replace into kv (k, v, v_encoding, version, seq, expiration_ms) \
             values (?1, ?2, ?3, ?4, 0, -1)",
            rusqlite::params![key, value.to_bytes(), value.encoding(), version],
        )?;
    }
    tx.execute(
        "update data_version set version = ?1 where k = 0",
        [version],
    )?;
    tx.commit()?;
    Ok(())
}

#[test]
fn values_round_trip_through_deno() -> R {
    let Some(deno) = deno_or_skip("the Deno round-trip test") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("values.sqlite3");
    run_deno(&deno, "write", &db)?;
    check_deno_rows(&db)?;
    write_rust_rows(&db)?;
    run_deno(&deno, "check", &db)?;
    Ok(())
}
