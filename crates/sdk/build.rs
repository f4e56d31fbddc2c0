//! Generates the Thulium client from the OpenAPI spec into `OUT_DIR`.
//!
//! The spec is `openapi/thulium-webhooks.yaml` inside this package (in the repository,
//! a link to the workspace's `openapi/`, so there is one file), and the settings live
//! in `thulium-codegen`, shared with `cargo xtask codegen`: the compiled client and the
//! reviewed snapshot are the same bytes.

use std::path::PathBuf;

/// Builds from another copy of the spec instead; only the codegen benchmark sets it,
/// so that it can time a rebuild after a spec change without editing the real spec.
const SPEC_OVERRIDE: &str = "THULIUM_CODEGEN_SPEC";

fn main() {
    println!("cargo::rerun-if-env-changed={SPEC_OVERRIDE}");
    let spec = match std::env::var_os(SPEC_OVERRIDE) {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
            .join("openapi/thulium-webhooks.yaml"),
    };
    println!("cargo::rerun-if-changed={}", spec.display());

    let source = match thulium_codegen::generate_file(&spec) {
        Ok(source) => source,
        Err(error) => {
            // One line naming the file and the problem; a panic would bury it in a backtrace.
            eprintln!("error: {error}");
            std::process::exit(1);
        }
    };

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = out.join(thulium_codegen::GENERATED_FILE_NAME);
    if let Err(error) = std::fs::write(&target, source) {
        eprintln!("error: cannot write {}: {error}", target.display());
        std::process::exit(1);
    }
}
