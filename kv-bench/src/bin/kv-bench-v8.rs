//! `cargo xtask bench v8`: encode and decode throughput of kv-v8 on a
//! typical 1 KiB object. Prints JSON lines; with `--write FILE` it also
//! saves the encoded bytes, so the Deno peer (`bench/deno_v8.ts`) measures
//! V8's own deserializer on exactly the same input.
//!
//! kv-bench-v8 [--scale F] [--write FILE] [--iterations N]
//!
//! `--iterations N` runs a fixed number of decodes and prints nothing else:
//! the form to use under `valgrind --tool=callgrind`.

#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context;
use kv_v8::{JsValue, decode, encode};

/// The allocator of the `kv` binary, so the client side pays what a
/// server-grade application would.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: kv-bench-v8 [--scale F] [--write FILE] [--iterations N]";

/// A record like an application stores: strings, numbers, booleans, a
/// date, nested objects and arrays; about 1 KiB encoded.
fn typical_object() -> JsValue {
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

/// Runs `f` in rounds of 100 for about `budget`; MB/s of `bytes` per call.
fn measure(
    bytes: usize,
    budget: Duration,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            f()?;
        }
        calls += 100;
    }
    Ok((bytes as u64 * calls) as f64 / 1e6 / start.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let mut scale = 1.0f64;
    let mut write = None;
    let mut iterations = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--scale" => scale = it.next().context("--scale needs a value")?.parse()?,
            "--write" => write = Some(it.next().context("--write needs a path")?),
            "--iterations" => {
                iterations = Some(
                    it.next()
                        .context("--iterations needs a count")?
                        .parse::<u64>()?,
                );
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let value = typical_object();
    let bytes = encode(&value)?;
    anyhow::ensure!(decode(&bytes)? == value, "the object does not round-trip");
    if let Some(path) = write {
        std::fs::write(&path, &bytes).with_context(|| format!("writing {path}"))?;
    }
    if let Some(n) = iterations {
        for _ in 0..n {
            black_box(decode(black_box(&bytes))?);
        }
        return Ok(());
    }
    let budget = Duration::from_secs_f64(2.0 * scale);
    let encode_mbs = measure(bytes.len(), budget, || {
        black_box(encode(black_box(&value))?);
        Ok(())
    })?;
    let decode_mbs = measure(bytes.len(), budget, || {
        black_box(decode(black_box(&bytes))?);
        Ok(())
    })?;
    for (name, mbs) in [("encode", encode_mbs), ("decode", decode_mbs)] {
        println!(
            "{}",
            serde_json::json!({ "name": name, "bytes": bytes.len(), "mb_per_sec": mbs })
        );
    }
    Ok(())
}
