//! The etcd target: a 3-member cluster started by
//! `scripts/etcd-cluster.sh` (as `cargo xtask etcd` does), whose leader is
//! killed with SIGKILL and restarted while the clients run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ConsistencyError;

/// A running cluster, managed through its script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdCluster {
    /// Client endpoints (`host:port`), member 1 first.
    pub endpoints: Vec<String>,
    /// The directory the script keeps the members' data and pids in.
    pub dir: PathBuf,
    /// `scripts/etcd-cluster.sh`.
    pub script: PathBuf,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ConsistencyError {
    let what = what.into();
    move |source| ConsistencyError::Io { what, source }
}

impl EtcdCluster {
    /// `etcd://…/prefix` on every member.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoints.join(","))
    }

    /// GETs `path` from member `n` (0-based) over plain HTTP/1.0, within 1 s.
    async fn get(&self, n: usize, path: &str) -> Option<String> {
        let fetch = async {
            let mut stream = TcpStream::connect(&self.endpoints[n]).await.ok()?;
            let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.endpoints[n]);
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut body = Vec::new();
            stream.read_to_end(&mut body).await.ok()?;
            Some(String::from_utf8_lossy(&body).into_owned())
        };
        tokio::time::timeout(Duration::from_secs(1), fetch)
            .await
            .ok()
            .flatten()
    }

    /// The member (0-based) that says it leads, waiting up to 10 s for one.
    /// etcd's `/metrics` carries `etcd_server_is_leader 1` on the leader.
    ///
    /// # Errors
    /// When no member leads within 10 s.
    pub async fn leader(&self) -> Result<usize, ConsistencyError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for n in 0..self.endpoints.len() {
                if let Some(metrics) = self.get(n, "/metrics").await
                    && metrics
                        .lines()
                        .any(|l| l.trim() == "etcd_server_is_leader 1")
                {
                    return Ok(n);
                }
            }
            if Instant::now() > deadline {
                return Err(ConsistencyError::Etcd("no leader within 10 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to 30 s for member `n` to report itself healthy.
    async fn wait_healthy(&self, n: usize) -> Result<(), ConsistencyError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(health) = self.get(n, "/health").await
                && health.contains("\"health\":\"true\"")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ConsistencyError::Etcd(format!(
                    "member {n} not healthy within 30 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn script(&self, action: &str, n: usize) -> Result<(), ConsistencyError> {
        let status = tokio::process::Command::new("bash")
            .arg(&self.script)
            .arg(action)
            .arg(&self.dir)
            .arg((n + 1).to_string())
            .status()
            .await
            .map_err(io(format!("etcd-cluster.sh {action}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(ConsistencyError::Etcd(format!(
                "etcd-cluster.sh {action} {} {} exited with {status}",
                self.dir.display(),
                n + 1
            )))
        }
    }

    /// SIGKILLs the leader, waits `down`, restarts it and waits until it is
    /// healthy again; returns the member killed.
    ///
    /// # Errors
    /// When there is no leader, or the script fails.
    pub async fn kill_leader(&self, down: Duration) -> Result<usize, ConsistencyError> {
        let leader = self.leader().await?;
        self.script("kill", leader).await?;
        tokio::time::sleep(down).await;
        self.script("restart", leader).await?;
        self.wait_healthy(leader).await?;
        Ok(leader)
    }
}

/// Kills the leader every 0.5–1.5 s (down for 0.5–1 s each time) until
/// `stop` resolves; returns how many times. A kill in progress finishes
/// (the member is restarted) before the count is returned.
///
/// # Errors
/// When a kill or restart fails.
pub async fn inject_leader_kills(
    cluster: &EtcdCluster,
    seed: u64,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<usize, ConsistencyError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills = 0;
    tokio::pin!(stop);
    loop {
        let wait = Duration::from_millis(rng.gen_range(500..1500));
        tokio::select! {
            _ = &mut stop => return Ok(kills),
            () = tokio::time::sleep(wait) => {}
        }
        let down = Duration::from_millis(rng.gen_range(500..1000));
        cluster.kill_leader(down).await?;
        kills += 1;
    }
}
