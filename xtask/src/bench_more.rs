//! `cargo xtask bench server` and `cargo xtask bench queue`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::conformance::{stop, wait_for_url};
use crate::{project_root, tools};

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), PathBuf::from)
}

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
    let mut child = Command::new(target.join("release").join("kv"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--access-token",
            &token,
            "--path",
        ])
        .arg(scratch.join("server.sqlite3"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("piped")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let pid = child.id().to_string();
    let result = (|| -> anyhow::Result<()> {
        let url = wait_for_url(&rx, &mut child)?;
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
    let stopped = stop(&mut child);
    let _ = reader.join();
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
