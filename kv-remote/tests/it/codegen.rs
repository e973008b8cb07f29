//! The checked-in protobuf code must match `proto/datapath.proto`.
//! `KV_UPDATE_GENERATED=1 cargo test -p kv-remote codegen` (or
//! `cargo xtask codegen`) rewrites it.

use std::path::Path;

#[test]
fn generated_protobuf_code_is_up_to_date() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile([root.join("proto/datapath.proto")], [root.join("proto")])?;
    let out = tempfile::tempdir()?;
    prost_build::Config::new()
        .out_dir(out.path())
        .compile_fds(fds)?;
    let fresh = std::fs::read_to_string(out.path().join("com.deno.kv.datapath.rs"))?;
    let checked_in_path = root.join("src/generated/com.deno.kv.datapath.rs");
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    if fresh != checked_in {
        if std::env::var_os("KV_UPDATE_GENERATED").is_some() {
            std::fs::write(&checked_in_path, fresh)?;
        } else {
            return Err("src/generated is stale: run `cargo xtask codegen`".into());
        }
    }
    Ok(())
}
