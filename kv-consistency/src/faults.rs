//! Faults while recording: `kv serve` killed with SIGKILL and restarted,
//! and connections dropped by a proxy.
