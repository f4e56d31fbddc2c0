//! The client progenitor generates from `openapi/thulium-webhooks.yaml` at build time.
//!
//! Never edited by hand: change the spec or `crates/codegen`, then run
//! `cargo xtask codegen` and review the snapshot diff. Private: the SDK's public types
//! are re-exported from [`crate::types`], and its calls go through [`crate::Client`].

include!(concat!(env!("OUT_DIR"), "/thulium_client.rs"));

#[cfg(test)]
mod tests {
    /// The snapshot `cargo xtask codegen` reviews, from the generator alone.
    const SNAPSHOT: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../xtask/tests/snapshots/generated_client__thulium_client.snap"
    ));

    /// What `build.rs` compiled into this crate.
    const COMPILED: &str = include_str!(concat!(env!("OUT_DIR"), "/thulium_client.rs"));

    #[test]
    fn compiled_client_is_byte_identical_to_the_reviewed_snapshot() {
        // An insta snapshot is a `---`-delimited header, then the value.
        let body = SNAPSHOT
            .strip_prefix("---\n")
            .and_then(|rest| rest.split_once("\n---\n"))
            .map(|(_, body)| body)
            .expect("an insta snapshot file");
        assert!(
            body.trim_end() == COMPILED.trim_end(),
            "the client compiled into the SDK differs from the reviewed snapshot: \
             run `cargo xtask codegen`, review `git diff crates/xtask/tests/snapshots` and commit it"
        );
    }
}
