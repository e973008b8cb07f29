//! Integration tests of kv-remote.

mod codegen;
