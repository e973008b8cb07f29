//! Integration tests of the facade: one binary with a module per area.

mod read_only;
mod remote_queue;
