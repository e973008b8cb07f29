//! Integration tests of kv-queue.

#![allow(clippy::unwrap_used)]

mod crash;
mod lease;
mod transient;
