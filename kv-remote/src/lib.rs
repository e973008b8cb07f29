//! KV Connect for kv: [`serve`] any [`kv_core::Backend`] to Deno, Node and
//! Python clients, and use any KV Connect server through [`RemoteBackend`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use kv_core::{Kv, MemoryBackend, key};
//! use kv_remote::{RemoteConfig, ServerConfig, bind, serve};
//!
//! let (listener, addr) = bind("127.0.0.1:0".parse()?).await?;
//! let backend = Arc::new(MemoryBackend::new());
//! tokio::spawn(serve(listener, backend, ServerConfig::new(["a-long-secret-token"]), std::future::pending()));
//!
//! let remote = RemoteConfig::new(format!("http://{addr}"), "a-long-secret-token").connect().await?;
//! let kv = Kv::new(remote);
//! kv.set(key!["hello"], kv_core::KvValue::U64(1)).await?;
//! # Ok(()) }
//! ```
//!
//! The protocol is described in `docs/kv-connect.md` at the repository root.

mod client;
mod convert;
mod error;
mod quickack;
mod server;
mod transport;
mod wire;

/// The protobuf messages of the KV Connect data path.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    include!("generated/com.deno.kv.datapath.rs");
}

pub use client::{RemoteBackend, RemoteConfig};
pub use server::{ServerConfig, bind, router, serve};
