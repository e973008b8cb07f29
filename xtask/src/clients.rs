//! `cargo xtask clients`: real Deno, Node (`@deno/kv`) and Python (`denokv`)
//! clients against a real `kv serve` process.
//!
//! Installs what it needs into ignored folders (the pinned Deno into
//! `.tools/npm`, `@deno/kv` into `clients/node/node_modules`, Python
//! `denokv` into the virtualenv `.tools/py`), starts `kv serve` on a fresh
//! SQLite file, runs the Deno test file, the Node and Python smoke tests,
//! then a Rust queue listener (`kv listen`) that must receive the messages
//! the Node and Python clients enqueued, and stops the server with SIGTERM.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::serve::Server;
use crate::{project_root, tools};

/// Messages the Node (2) and Python (1) smoke tests enqueue.
const ENQUEUED: &str = "3";

pub(crate) fn run(sh: &Shell, _args: &[String]) -> anyhow::Result<()> {
    let root = project_root();
    let deno = tools::ensure_deno(sh)?;
    let node_dir = root.join("clients").join("node");
    if !node_dir
        .join("node_modules")
        .join("@deno")
        .join("kv")
        .is_dir()
    {
        println!("installing @deno/kv into {}", node_dir.display());
        cmd!(
            sh,
            "npm install --prefix {node_dir} --no-audit --no-fund --loglevel=error"
        )
        .run()?;
    }
    let python = ensure_python(sh, &root)?;
    // Built with ci's package selection, so it reuses ci's build.
    let bin = crate::artifacts::kv_server_bin(sh, crate::artifacts::WORKSPACE)?;
    let dir = crate::target_dir().join("clients");
    if dir.exists() {
        sh.remove_path(&dir)?;
    }
    sh.create_dir(&dir)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let token = format!("clients-{}-{nanos}", std::process::id());
    let server = Server::start(
        &bin,
        [
            OsStr::new("--path"),
            dir.join("clients.sqlite3").as_os_str(),
        ],
        &token,
    )?;
    let result = (|| -> anyhow::Result<()> {
        let url = server.url.clone();
        println!("kv serve listening on {url}");
        let _env = [
            sh.push_env("KV_URL", &url),
            sh.push_env("DENO_KV_ACCESS_TOKEN", &token),
        ];
        println!(
            "\n==> Deno {} (clients/deno/kv_connect_test.ts)",
            tools::DENO_VERSION
        );
        cmd!(
            sh,
            "{deno} test -A --unstable-kv --no-check clients/deno/kv_connect_test.ts"
        )
        .env("DENO_NO_UPDATE_CHECK", "1")
        .run()
        .context("the Deno client tests failed")?;
        println!("\n==> Node @deno/kv (clients/node/smoke.mjs)");
        cmd!(sh, "node --test clients/node/smoke.mjs")
            .run()
            .context("the Node client tests failed")?;
        println!("\n==> Python denokv (clients/python/smoke.py)");
        cmd!(sh, "{python} clients/python/smoke.py")
            .run()
            .context("the Python client tests failed")?;
        println!("\n==> a Rust listener receives what Node and Python enqueued");
        let backend = url.clone();
        let out = cmd!(
            sh,
            "{bin} listen --backend {backend} --count {ENQUEUED} --idle-timeout 30"
        )
        .read()
        .context("kv listen did not receive every enqueued message")?;
        println!("{out}");
        if out.lines().count() < 3 || !out.contains("from node") {
            bail!("kv listen printed an unexpected set of messages:\n{out}");
        }
        Ok(())
    })();
    let stopped = server.stop();
    result?;
    stopped?;
    file_interop(sh, &deno, &bin, &dir.join("clients.sqlite3"), &token)?;
    println!(
        "\nclients: Deno, Node, Python and the Rust listener passed against kv serve, \
         and Deno and kv opened each other's file"
    );
    Ok(())
}

/// Deno's own SQLite backend opens the file `kv serve` wrote, writes to
/// it, and `kv serve` reads that back: the two share one file format. Then
/// `kv` started with denokv's command line serves the file read-only.
fn file_interop(
    sh: &Shell,
    deno: &Path,
    bin: &Path,
    file: &Path,
    token: &str,
) -> anyhow::Result<()> {
    let script = "clients/deno/file_interop.ts";
    println!("\n==> Deno opens the file kv serve wrote ({script})");
    cmd!(
        sh,
        "{deno} run -A --unstable-kv --no-check {script} local {file}"
    )
    .env("DENO_NO_UPDATE_CHECK", "1")
    .run()
    .context("Deno could not use the file kv serve wrote")?;
    // One phase of the script against a `kv` process serving the file.
    let served = |args: &[&OsStr], phase: &str, failure: &'static str| {
        let server = Server::start_command(bin, args, token)?;
        let url = server.url.clone();
        let result = cmd!(
            sh,
            "{deno} run -A --unstable-kv --no-check {script} {phase} {url}"
        )
        .env("DENO_NO_UPDATE_CHECK", "1")
        .env("DENO_KV_ACCESS_TOKEN", token)
        .run()
        .context(failure);
        let stopped = server.stop();
        result?;
        stopped
    };
    let file_arg = file.as_os_str();
    served(
        &[OsStr::new("serve"), OsStr::new("--path"), file_arg],
        "remote",
        "kv serve could not read what Deno wrote to its file",
    )?;
    // A clean shutdown closes the database: SQLite removes its WAL then.
    let mut wal = file.as_os_str().to_owned();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        bail!("kv serve stopped without closing {}", file.display());
    }
    // denokv's command line, read-only: the file must come out unchanged.
    let before = std::fs::read(file)?;
    served(
        &[
            OsStr::new("--sqlite-path"),
            file_arg,
            OsStr::new("serve"),
            OsStr::new("--read-only"),
        ],
        "read-only",
        "kv --sqlite-path FILE serve --read-only did not serve the file read-only",
    )?;
    if std::fs::read(file)? != before {
        bail!("serving {} read-only changed the file", file.display());
    }
    Ok(())
}

/// A virtualenv with Python `denokv`, created on first use.
fn ensure_python(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    let venv = root.join(".tools").join("py");
    let python = venv.join("bin").join("python");
    let requirements = root.join("clients").join("python").join("requirements.txt");
    let ready = python.is_file()
        && cmd!(sh, "{python} -c 'import denokv'")
            .quiet()
            .ignore_stderr()
            .run()
            .is_ok();
    if !ready {
        println!("installing Python denokv into {}", venv.display());
        cmd!(sh, "python3 -m venv {venv}").run()?;
        cmd!(
            sh,
            "{python} -m pip install --quiet --disable-pip-version-check --pre -r {requirements}"
        )
        .run()?;
    }
    Ok(python)
}
