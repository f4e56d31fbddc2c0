//! Where things are in this workspace, for `cargo xtask` and its tests, and the
//! checks `cargo xtask` runs.

pub mod msrv;

use std::path::{Path, PathBuf};

/// The workspace root, found from this crate's own manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/xtask sits two levels below the workspace root")
        .to_path_buf()
}

/// The spec, the single source of truth: `openapi/thulium-webhooks.yaml`.
pub fn spec_path() -> PathBuf {
    workspace_root().join("openapi/thulium-webhooks.yaml")
}
