//! Integration tests of the `kv` binary, run as a process: one test binary
//! with a module per area.

mod backup_cli;
mod completions;
mod data_cli;
mod denokv_cli;
mod keys_only_cli;
mod queue_cli;
mod serve_cli;
mod systemd;
