//! How every subcommand names its database: `--db` (a `kv::open` URL or a
//! file path; `--backend` is the same flag), `--path` (a SQLite file), or
//! denokv's `--sqlite-path`, else `./kv.sqlite3`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

/// The file served and opened when no other is named.
pub(crate) const DEFAULT_PATH: &str = "kv.sqlite3";

/// The database flags every subcommand takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct DbArgs {
    /// The database: a file path (SQLite, or redb for `*.redb`) or a URL:
    /// `memory:`, `sqlite:PATH`, `redb:PATH`, `http(s)://HOST:PORT` (a
    /// `kv serve`, denokv or Deno Deploy; token in DENO_KV_ACCESS_TOKEN),
    /// `etcd://HOST:PORT[,…][/PREFIX]` [default: kv.sqlite3].
    #[arg(
        long,
        visible_alias = "backend",
        value_name = "URL|PATH",
        value_parser = parse_db,
        env = "KV_DB"
    )]
    pub(crate) db: Option<String>,
    /// A SQLite file (the same as `--db sqlite:FILE`).
    #[arg(long, conflicts_with = "db", value_name = "FILE")]
    pub(crate) path: Option<PathBuf>,
}

impl DbArgs {
    /// The `kv::open` URL these flags name; `sqlite_path` is denokv's
    /// global `--sqlite-path`, which `--db` and `--path` override.
    pub(crate) fn url(&self, sqlite_path: Option<&Path>) -> String {
        if let Some(db) = &self.db {
            return db.clone();
        }
        let path = self
            .path
            .as_deref()
            .or(sqlite_path)
            .map_or_else(|| DEFAULT_PATH.to_owned(), |p| p.display().to_string());
        format!("sqlite:{path}")
    }

    /// Opens the database for a command that only reads: a missing file is
    /// an error, and nothing is created.
    pub(crate) async fn open_existing(
        &self,
        sqlite_path: Option<&Path>,
    ) -> anyhow::Result<(String, Arc<dyn kv::Backend>)> {
        self.open_with(sqlite_path, kv::OpenOptions::new().with_must_exist(true))
            .await
    }

    /// Opens (creating a missing file) the database for a command that
    /// writes.
    pub(crate) async fn open(
        &self,
        sqlite_path: Option<&Path>,
    ) -> anyhow::Result<(String, Arc<dyn kv::Backend>)> {
        self.open_with(sqlite_path, kv::OpenOptions::new()).await
    }

    async fn open_with(
        &self,
        sqlite_path: Option<&Path>,
        options: kv::OpenOptions,
    ) -> anyhow::Result<(String, Arc<dyn kv::Backend>)> {
        let url = self.url(sqlite_path);
        if let Some(remote) = open_remote(&url).await? {
            return Ok((url, remote));
        }
        let backend = options
            .open_backend(&url)
            .await
            .with_context(|| format!("cannot open {url}"))?;
        Ok((url, backend))
    }
}

/// Retries of a command's calls to a server: about 1.5 s of backoff, so a
/// server that is not there is reported at once rather than after the
/// library's 13 s, while a server restarting meanwhile is still waited for.
const COMMAND_RETRIES: u32 = 5;

/// A KV Connect server for `url`, if it names one.
async fn open_remote(url: &str) -> anyhow::Result<Option<Arc<dyn kv::Backend>>> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Ok(None);
    }
    let remote = kv_remote::RemoteConfig::from_env(url)?
        .with_max_retries(COMMAND_RETRIES)
        .connect()
        .await
        .with_context(|| format!("cannot open {url}"))?;
    Ok(Some(Arc::new(remote)))
}

/// A `--db` value: a URL of a known form, or something that reads as a
/// path. A bare word such as `memory` is neither: refused, so that a
/// forgotten colon does not create a database file named `memory`.
pub(crate) fn parse_db(value: &str) -> Result<String, String> {
    const SCHEMES: [&str; 6] = [
        "memory:", "sqlite:", "redb:", "http://", "https://", "etcd://",
    ];
    if value.is_empty() {
        return Err("the database cannot be empty".into());
    }
    if value == ":memory:" || SCHEMES.iter().any(|s| value.starts_with(s)) {
        return Ok(value.to_owned());
    }
    if let Some((scheme, _)) = value.split_once("://") {
        return Err(format!(
            "unknown scheme {scheme:?}; accepted: {}",
            kv::URL_FORMS
        ));
    }
    let looks_like_a_path = value.contains('/') || value.contains('.');
    if !looks_like_a_path {
        let hint = SCHEMES
            .iter()
            .find(|s| s.trim_end_matches([':', '/']) == value)
            .map_or_else(String::new, |s| format!("did you mean `{s}`? "));
        return Err(format!(
            "{value:?} is neither a URL nor a path: {hint}write ./{value} for a file of that \
             name; accepted: {}",
            kv::URL_FORMS
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_db;

    #[test]
    fn bare_words_are_refused_and_urls_and_paths_accepted() {
        for ok in [
            "memory:",
            ":memory:",
            "sqlite:a.db",
            "redb:x",
            "http://h:1",
            "etcd://h:2379/p",
            "./memory",
            "data.sqlite3",
            "/var/lib/kv/kv.sqlite3",
        ] {
            assert_eq!(parse_db(ok).as_deref(), Ok(ok));
        }
        let memory = parse_db("memory").expect_err("a bare word");
        assert!(memory.contains("did you mean `memory:`"), "{memory}");
        assert!(parse_db("ftp://x").is_err_and(|e| e.contains("ftp")));
        assert!(parse_db("").is_err());
    }
}
