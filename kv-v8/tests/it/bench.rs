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

/// CPU time this thread has used, where Linux reports it: the machine
/// may be shared with other builds, and wall time would count their turns.
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Runs `f` for about `budget` and returns (wall MB/s, CPU MB/s).
fn measure(
    bytes: usize,
    budget: Duration,
    mut f: impl FnMut() -> Result<(), kv_v8::Error>,
) -> Result<(f64, Option<f64>), kv_v8::Error> {
    let (start, cpu_start) = (Instant::now(), cpu_time());
    let mut iters = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            f()?;
        }
        iters += 100;
    }
    let total = (bytes as u64 * iters) as f64 / 1e6;
    let wall = total / start.elapsed().as_secs_f64();
    let cpu = cpu_start
        .zip(cpu_time())
        .map(|(a, b)| total / (b - a).as_secs_f64().max(1e-9));
    Ok((wall, cpu))
}

#[test]
fn throughput_of_a_1_kib_object() -> Result<(), kv_v8::Error> {
    let value = typical_object();
    let bytes = encode(&value)?;
    assert!((900..=1400).contains(&bytes.len()), "{} bytes", bytes.len());
    assert_eq!(decode(&bytes)?, value);
    let budget = Duration::from_millis(if cfg!(debug_assertions) { 100 } else { 1000 });
    let enc = measure(bytes.len(), budget, || {
        std::hint::black_box(encode(std::hint::black_box(&value))?);
        Ok(())
    })?;
    let dec = measure(bytes.len(), budget, || {
        std::hint::black_box(decode(std::hint::black_box(&bytes))?);
        Ok(())
    })?;
    let show = |(wall, cpu): (f64, Option<f64>)| match cpu {
        Some(cpu) => format!("{cpu:.0} MB/s per CPU second ({wall:.0} MB/s wall)"),
        None => format!("{wall:.0} MB/s"),
    };
    println!(
        "kv-v8, a {}-byte object, {}: encode {}, decode {}",
        bytes.len(),
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        },
        show(enc),
        show(dec),
    );
    Ok(())
}
