//! `cargo xtask bench server` and `cargo xtask bench queue`.

use std::ffi::OsStr;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::serve::Server;
use crate::{project_root, target_dir, tools};

fn scale(args: &[String]) -> String {
    args.iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "1".to_owned())
}

/// kv's load generator against a release `kv serve` (SQLite file), then
/// the Deno workload script against that server and against Deno's own KV.
pub(crate) fn server(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let scale = scale(args);
    cmd!(sh, "cargo build --release -p kv-server -p kv-bench")
        .run()
        .context("building")?;
    let target = target_dir();
    let scratch = target.join("bench").join("server-scratch");
    if scratch.exists() {
        sh.remove_path(&scratch)?;
    }
    sh.create_dir(&scratch)?;
    let token = format!("bench-token-{}", std::process::id());
    let server = Server::start(
        &target.join("release").join("kv"),
        [
            OsStr::new("--path"),
            scratch.join("server.sqlite3").as_os_str(),
        ],
        &token,
    )?;
    let pid = server.pid().to_string();
    let result = (|| -> anyhow::Result<()> {
        let url = &server.url;
        let bench = target.join("release").join("kv-bench-server");
        println!("==> kv's load generator (RemoteBackend) against kv serve at {url}");
        let out = cmd!(
            sh,
            "{bench} --url {url} --token {token} --server-pid {pid} --scale {scale}"
        )
        .read()?;
        println!("{out}");
        let deno = tools::ensure_deno(sh)?;
        let script = project_root().join("bench").join("deno_embedded.ts");
        println!("==> the Deno workload script against kv serve");
        let remote = cmd!(
            sh,
            "{deno} run -A --unstable-kv {script} --path {url} --scale {scale}"
        )
        .env("DENO_KV_ACCESS_TOKEN", &token)
        .read()?;
        println!("{remote}");
        let local = scratch.join("deno-local.sqlite3");
        println!("==> the same script on Deno's local KV");
        let out = cmd!(
            sh,
            "{deno} run -A --unstable-kv {script} --path {local} --scale {scale}"
        )
        .read()?;
        println!("{out}");
        Ok(())
    })();
    let stopped = server.stop();
    result?;
    stopped
}

/// Queue latency and throughput on a SQLite file, and Deno's own queue.
pub(crate) fn queue(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let scale = scale(args);
    cmd!(sh, "cargo build --release -p kv-bench --bin kv-bench-queue").run()?;
    let target = target_dir();
    let scratch = target.join("bench").join("queue-scratch");
    if scratch.exists() {
        sh.remove_path(&scratch)?;
    }
    sh.create_dir(&scratch)?;
    let bin = target.join("release").join("kv-bench-queue");
    let path = scratch.join("queue.sqlite3");
    println!("==> kv queue on SQLite");
    println!(
        "{}",
        cmd!(sh, "{bin} --path {path} --scale {scale}").read()?
    );
    let deno = tools::ensure_deno(sh)?;
    let script = project_root().join("bench").join("deno_queue.ts");
    let local = scratch.join("deno.sqlite3");
    println!("==> Deno's own queue (Deno.openKv on a file)");
    println!(
        "{}",
        cmd!(
            sh,
            "{deno} run -A --unstable-kv {script} --path {local} --scale {scale}"
        )
        .read()?
    );
    Ok(())
}

/// kv-v8's encode/decode of a 1 KiB object beside V8's own (node:v8 in
/// Deno) on the same bytes, with the ratio.
pub(crate) fn v8(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let scale = scale(args);
    cmd!(sh, "cargo build --release -p kv-bench --bin kv-bench-v8").run()?;
    let target = target_dir();
    let scratch = target.join("bench").join("v8-scratch");
    sh.create_dir(&scratch)?;
    let input = scratch.join("object.v8");
    let bin = target.join("release").join("kv-bench-v8");
    let ours = cmd!(sh, "{bin} --scale {scale} --write {input}").read()?;
    let deno = tools::ensure_deno(sh)?;
    let script = project_root().join("bench").join("deno_v8.ts");
    let theirs = cmd!(sh, "{deno} run -A {script} --input {input} --scale {scale}").read()?;
    let rates = |text: &str| -> anyhow::Result<Vec<(String, f64)>> {
        text.lines()
            .map(|line| {
                let v: serde_json::Value =
                    serde_json::from_str(line).with_context(|| format!("bad JSON line: {line}"))?;
                let name = v["name"].as_str().context("`name` missing")?.to_owned();
                Ok((
                    name,
                    v["mb_per_sec"].as_f64().context("`mb_per_sec` missing")?,
                ))
            })
            .collect()
    };
    let (ours, theirs) = (rates(&ours)?, rates(&theirs)?);
    println!("1 KiB object      kv-v8 MB/s   V8 (Deno) MB/s   kv/V8");
    for (name, kv) in &ours {
        let v8 = theirs
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |(_, r)| *r);
        println!("{name:<16} {kv:>11.0} {v8:>16.0} {:>7.2}", kv / v8);
    }
    Ok(())
}
