//! A `kv serve` process for xtask commands: started on a free loopback port
//! with one access token, its URL read from its stdout, stopped with SIGTERM
//! (it shuts down, prints `stopped`, then dies of the signal, as denokv).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const SIGTERM: i32 = 15;

/// A running `kv serve`.
pub(crate) struct Server {
    child: Child,
    /// Keeps draining the server's stdout, so it never blocks on a full pipe.
    reader: Option<JoinHandle<()>>,
    /// The server's stdout lines after the ones `start` read.
    lines: mpsc::Receiver<String>,
    /// Where it listens, e.g. `http://127.0.0.1:41234`.
    pub(crate) url: String,
}

impl Server {
    /// Starts `bin serve ARGS.. --addr 127.0.0.1:0 --access-token TOKEN`
    /// (with `RUST_LOG=warn` and no inherited `DENO_KV_ACCESS_TOKEN`) and
    /// waits until it prints where it listens.
    pub(crate) fn start(
        bin: &Path,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        token: &str,
    ) -> anyhow::Result<Server> {
        let args = std::iter::once(OsStr::new("serve").to_owned())
            .chain(args.into_iter().map(|a| a.as_ref().to_owned()));
        Server::start_command(bin, args, token)
    }

    /// As [`Server::start`], with the whole command line given (`serve`
    /// and all): for denokv's form `--sqlite-path FILE serve …`.
    pub(crate) fn start_command(
        bin: &Path,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        token: &str,
    ) -> anyhow::Result<Server> {
        let mut child = Command::new(bin)
            .args(args)
            .args(["--addr", "127.0.0.1:0", "--access-token", token])
            .env("RUST_LOG", "warn")
            .env_remove("DENO_KV_ACCESS_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("the server's stdout is piped")?;
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            reader: Some(reader),
            lines: rx,
            url: String::new(),
        };
        match wait_for_url(&server.lines, &mut server.child) {
            Ok(url) => server.url = url,
            Err(e) => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                return Err(e);
            }
        }
        Ok(server)
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then up to 10 s for a clean exit (a graceful shutdown must
    /// succeed: it is part of what the callers test).
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let stopped = stop(&mut self.child);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        stopped?;
        if !self.lines.try_iter().any(|line| line == "stopped") {
            bail!("the server died of SIGTERM without shutting down");
        }
        Ok(())
    }
}

fn wait_for_url(rx: &mpsc::Receiver<String>, child: &mut Child) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.trim().strip_prefix("listening on ") {
                    return Ok(url.trim().to_owned());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("the server printed no `listening on` line within 60 s")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait()?;
                bail!("the server exited with {status} before listening")
            }
        }
    }
}

fn stop(child: &mut Child) -> anyhow::Result<()> {
    if let Some(status) = child.try_wait()? {
        bail!("the server had already exited with {status}");
    }
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    if !sent.is_ok_and(|s| s.success()) {
        let _ = child.kill();
        let _ = child.wait();
        bail!("could not send SIGTERM to the server (pid {pid})");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            if std::os::unix::process::ExitStatusExt::signal(&status) == Some(SIGTERM) {
                return Ok(());
            }
            bail!("the server exited with {status} after SIGTERM");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the server did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
