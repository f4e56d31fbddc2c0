//! The generated client, reviewed as an insta snapshot.
//!
//! Both tests assert the same named snapshot: one from a fresh run of the generator
//! on the spec, one from the source compiled into the SDK by its `build.rs`. So CI
//! fails when the spec changes without a reviewed snapshot, and when the build and
//! the snapshot stop using the same generator settings.

#[test]
fn generated_client_matches_snapshot() {
    let source = thulium_codegen::generate_file(thulium_codegen::spec_path())
        .unwrap_or_else(|error| panic!("{error}"));
    insta::assert_snapshot!("thulium_client", source);
}

#[test]
fn compiled_client_is_byte_identical_to_snapshot() {
    let source = thulium::generated::SOURCE;
    insta::assert_snapshot!("thulium_client", source);
}
