//! The generated client, reviewed as an insta snapshot.
//!
//! This test needs only the generator, so a spec change that breaks the SDK's
//! hand-written code can still be regenerated and reviewed as a diff first. The SDK's
//! own unit test (`crates/sdk/src/generated.rs`) holds what its `build.rs` compiled
//! byte-identical to this same snapshot.

#[test]
fn generated_client_matches_snapshot() {
    let source = thulium_codegen::generate_file(xtask::spec_path())
        .unwrap_or_else(|error| panic!("{error}"));
    insta::assert_snapshot!("thulium_client", source);
}
