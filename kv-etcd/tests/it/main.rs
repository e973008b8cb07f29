//! Integration tests of the etcd backend, one binary with a module per area.
//!
//! Every test starts its own etcd cluster on loopback ports with
//! `scripts/etcd-cluster.sh` (which installs Debian's `etcd-server` when
//! `etcd` is missing) and stops it when done, so tests can kill members
//! without disturbing each other. On a machine that can neither run nor
//! install etcd, `KV_SKIP_ETCD=1` turns these tests into no-ops that say so;
//! without it they fail with the script's error.

mod basic;
mod faults;
mod limits;
mod watch;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kv_core::{Kv, ManualClock};
use kv_etcd::{EtcdBackend, EtcdConfig};

/// What every test returns.
type TestResult = anyhow::Result<()>;

/// A throwaway cluster, stopped (and its data removed) on drop.
struct Cluster {
    dir: PathBuf,
    endpoints: Vec<String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/etcd-cluster.sh")
}

fn run_script(args: &[&str], env: &[(&str, String)]) -> anyhow::Result<String> {
    let output = Command::new("bash")
        .arg(script())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .context("running scripts/etcd-cluster.sh")?;
    if !output.status.success() {
        bail!(
            "scripts/etcd-cluster.sh {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Cluster {
    /// Starts a cluster of `members` with `--max-txn-ops=max_txn_ops`, or
    /// `None` (after saying so) under `KV_SKIP_ETCD=1`.
    fn start_with(members: usize, max_txn_ops: u32) -> anyhow::Result<Option<Cluster>> {
        if std::env::var("KV_SKIP_ETCD").is_ok_and(|v| v == "1") {
            eprintln!("KV_SKIP_ETCD=1: skipping a test that needs an etcd cluster");
            return Ok(None);
        }
        let out = run_script(
            &["start"],
            &[
                ("KV_ETCD_MEMBERS", members.to_string()),
                ("KV_ETCD_MAX_TXN_OPS", max_txn_ops.to_string()),
            ],
        )?;
        let mut lines = out.lines().filter(|l| !l.trim().is_empty());
        let dir = lines.next().context("the script printed no directory")?;
        let endpoints = lines.next().context("the script printed no endpoints")?;
        Ok(Some(Cluster {
            dir: PathBuf::from(dir.trim()),
            endpoints: endpoints.trim().split(',').map(str::to_owned).collect(),
        }))
    }

    /// Three members with the recommended flags.
    fn start() -> anyhow::Result<Option<Cluster>> {
        Cluster::start_with(3, 2048)
    }

    /// `etcd://…/prefix` for all members.
    fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoints.join(","))
    }

    /// A config for a fresh random prefix on all members.
    fn config(&self) -> anyhow::Result<EtcdConfig> {
        Ok(EtcdConfig::from_url(
            &self.url(&format!("it/{:016x}", rand_u64())),
        )?)
    }

    /// A backend on a fresh random prefix.
    async fn backend(&self) -> anyhow::Result<EtcdBackend> {
        Ok(self.config()?.connect().await?)
    }

    /// A `Kv` on a fresh random prefix, with a manual clock.
    async fn kv_with_clock(&self) -> anyhow::Result<(Kv, std::sync::Arc<ManualClock>)> {
        let clock = std::sync::Arc::new(ManualClock::new(kv_core::Clock::now_ms(
            &kv_core::SystemClock,
        )));
        let backend = self.config()?.with_clock(clock.clone()).connect().await?;
        Ok((Kv::new(backend).with_clock(clock.clone()), clock))
    }

    /// SIGKILLs member `n` (0-based).
    fn kill(&self, n: usize) -> TestResult {
        run_script(&["kill", &self.dir_str(), &(n + 1).to_string()], &[])?;
        Ok(())
    }

    /// Starts member `n` (0-based) again on its data.
    fn restart(&self, n: usize) -> TestResult {
        run_script(&["restart", &self.dir_str(), &(n + 1).to_string()], &[])?;
        Ok(())
    }

    fn dir_str(&self) -> String {
        self.dir.display().to_string()
    }

    /// A client of member `n` alone.
    async fn member_client(&self, n: usize) -> anyhow::Result<etcd_client::Client> {
        let options = etcd_client::ConnectOptions::new()
            .with_timeout(Duration::from_millis(500))
            .with_connect_timeout(Duration::from_millis(500));
        Ok(etcd_client::Client::connect([&self.endpoints[n]], Some(options)).await?)
    }

    /// The index of the current leader, waiting up to 10 s for one.
    async fn leader(&self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for n in 0..self.endpoints.len() {
                let Ok(mut client) = self.member_client(n).await else {
                    continue;
                };
                let Ok(status) = client.status().await else {
                    continue;
                };
                let me = status.header().map(|h| h.member_id());
                if status.leader() != 0 && Some(status.leader()) == me {
                    return Ok(n);
                }
            }
            if Instant::now() > deadline {
                bail!("no leader within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every member answers a linearizable read.
    async fn wait_healthy(&self) -> TestResult {
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in 0..self.endpoints.len() {
            loop {
                let ok = match self.member_client(n).await {
                    Ok(mut c) => c.get("health-probe", None).await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("member {n} not healthy within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = run_script(&["stop", &self.dir_str()], &[]) {
            eprintln!(
                "could not stop the etcd cluster in {}: {e:#}",
                self.dir_str()
            );
        }
    }
}

fn rand_u64() -> u64 {
    rand::random()
}

/// Whether the slow variants of tests should run.
fn slow() -> bool {
    std::env::var("KV_SLOW_TESTS").is_ok_and(|v| v == "1")
}
