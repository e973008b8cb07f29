//! Integration tests of kv-remote.

mod bad_requests;
mod codegen;
