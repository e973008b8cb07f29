//! Integration tests of kv-remote.

#![allow(clippy::unwrap_used)]

mod auth;
mod bad_requests;
mod codegen;
mod keys_only;
mod misconfigured;
mod opaque_keys;
mod oversized;
mod queue;
mod resilience;
mod tls;
mod transport;
