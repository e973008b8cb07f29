//! Encode/decode throughput of a typical 1 KiB object (printed; the figure
//! is for release builds: `cargo test -p kv-v8 --release -- bench --nocapture`).

use std::time::{Duration, Instant};

use kv_v8::{JsValue, decode, encode};

/// A record like an application stores: strings, numbers, booleans, a
/// date, nested objects and arrays; about 1 KiB encoded.
pub(crate) fn typical_object() -> JsValue {
    let tag = |i: i32| {
        JsValue::object([
            ("id", i.into()),
            ("label", format!("tag number {i}").into()),
        ])
    };
    JsValue::object([
        ("id", "user_01HZX8J3K4M5N6P7Q8R9S0T1U2".into()),
        ("name", "Ada Lovelace".into()),
        ("email", "ada@example.com".into()),
        ("age", 36.into()),
        ("score", 1234.5678.into()),
        ("active", true.into()),
        ("created", JsValue::Date(1_704_067_200_000.0)),
        ("bio", "Mathematician and writer, chiefly known for her work on Charles Babbage's proposed mechanical general-purpose computer, the Analytical Engine.".into()),
        ("address", JsValue::object([
            ("street", "12 St James's Square".into()),
            ("city", "London".into()),
            ("zip", "SW1Y 4JH".into()),
            ("geo", JsValue::array([51.5074.into(), (-0.1340).into()])),
        ])),
        ("tags", JsValue::array((0..12).map(tag))),
        ("history", JsValue::array((0..20).map(|i| (i * 37).into()))),
        ("notes", "Her notes on the engine include what is often called the first published algorithm intended to be carried out by such a machine.".into()),
        ("flags", JsValue::object([("admin", false.into()), ("beta", true.into()), ("mfa", JsValue::Null)])),
    ])
}

fn rate(bytes: usize, iters: u32, took: Duration) -> f64 {
    (bytes as f64 * f64::from(iters)) / took.as_secs_f64() / 1e6
}

#[test]
fn throughput_of_a_1_kib_object() -> Result<(), kv_v8::Error> {
    let value = typical_object();
    let bytes = encode(&value)?;
    assert!((900..=1400).contains(&bytes.len()), "{} bytes", bytes.len());
    assert_eq!(decode(&bytes)?, value);
    let iters = if cfg!(debug_assertions) { 200 } else { 20_000 };
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(encode(std::hint::black_box(&value))?);
    }
    let enc = rate(bytes.len(), iters, start.elapsed());
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(decode(std::hint::black_box(&bytes))?);
    }
    let dec = rate(bytes.len(), iters, start.elapsed());
    println!(
        "kv-v8 {} bytes: encode {enc:.0} MB/s, decode {dec:.0} MB/s ({})",
        bytes.len(),
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    );
    Ok(())
}
