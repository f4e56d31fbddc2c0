//! Generates the Thulium client from the OpenAPI spec into `OUT_DIR`.
//!
//! The settings live in `thulium-codegen`, shared with `cargo xtask codegen`, so the
//! compiled client and the reviewed snapshot are the same bytes.

use std::path::PathBuf;

fn main() {
    let spec = thulium_codegen::spec_path();
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
