//! `cargo xtask codegen [--check]`: regenerate the Thulium client and review it as an
//! insta snapshot, without needing `cargo-insta`. `cargo xtask msrv`: check the
//! published crates' `rust-version` against their dependencies'.
//!
//! The snapshot test (`crates/xtask/tests/generated_client.rs`) is the single check;
//! this command runs it with insta told either to write the new snapshot (`codegen`)
//! or to fail with a diff when it is stale (`codegen --check`, as CI runs it).

use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask codegen [--check] | cargo xtask msrv

  codegen           regenerate the client from openapi/thulium-webhooks.yaml and
                    update the insta snapshot; review it with `git diff`
  codegen --check   fail with a diff if the snapshot is stale (CI)
  msrv              fail if a published crate depends on a crate whose rust-version
                    is newer than its own (CI)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["msrv"] => {
            return match xtask::msrv::check() {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(violations) => {
                    eprintln!("error: rust-version claims do not hold:\n{violations}");
                    ExitCode::FAILURE
                }
            };
        }
        ["codegen"] => false,
        ["codegen", "--check"] => true,
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    // Fail fast, with the generator's one-line message, before compiling any test.
    if let Err(error) = thulium_codegen::generate_file(xtask::spec_path()) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut test = Command::new(cargo);
    test.current_dir(xtask::workspace_root())
        .args([
            "test",
            "--quiet",
            "-p",
            "xtask",
            "--test",
            "generated_client",
        ])
        .env("INSTA_UPDATE", if check { "no" } else { "always" })
        // A stale snapshot must fail even where insta would otherwise only warn.
        .env("INSTA_FORCE_PASS", "0")
        // The diff is the message; a backtrace from inside insta only hides it.
        .env("RUST_BACKTRACE", "0");
    if std::env::var_os("CI").is_some() {
        test.arg("--locked");
    }
    let status = match test.status() {
        Ok(status) => status,
        Err(error) => {
            eprintln!("error: cannot run cargo test: {error}");
            return ExitCode::FAILURE;
        }
    };

    match (status.success(), check) {
        (true, true) => {
            println!("generated client matches its snapshot");
            ExitCode::SUCCESS
        }
        (true, false) => {
            println!(
                "snapshot updated: review `git diff crates/xtask/tests/snapshots` and commit it with the spec"
            );
            ExitCode::SUCCESS
        }
        (false, true) => {
            eprintln!(
                "error: the generated client differs from its snapshot (diff above); run `cargo xtask codegen`, review and commit"
            );
            ExitCode::FAILURE
        }
        (false, false) => {
            eprintln!("error: regenerating the snapshot failed (see above)");
            ExitCode::FAILURE
        }
    }
}
