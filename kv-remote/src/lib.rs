//! KV Connect for kv: [`serve`] any [`kv_core::Backend`] to Deno, Node and
//! Python clients, and use any KV Connect server through [`RemoteBackend`].
//!
//! The two sides are cargo features: `client` (on by default) gives
//! [`RemoteBackend`] and [`RemoteConfig`]; `server` gives [`serve`],
//! [`router`], [`bind`] and [`ServerConfig`]. A program that only connects
//! to a server compiles no HTTP server.
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

// Without either side only the shared mapping is left, and nothing uses it.
#![cfg_attr(not(any(feature = "client", feature = "server")), allow(dead_code))]

#[cfg(feature = "client")]
mod client;
mod convert;
mod error;
#[cfg(feature = "server")]
mod quickack;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "client")]
mod transport;
mod wire;

/// The protobuf messages of the KV Connect data path.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    include!("generated/com.deno.kv.datapath.rs");
}

#[cfg(feature = "client")]
pub use client::{RemoteBackend, RemoteConfig};
#[cfg(feature = "server")]
pub use server::{ServerConfig, bind, router, serve};
