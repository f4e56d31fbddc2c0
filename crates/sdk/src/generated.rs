//! The client progenitor generates from `openapi/thulium-webhooks.yaml` at build time.
//!
//! Never edited by hand: change the spec or `crates/codegen`, then run
//! `cargo xtask codegen` and review the snapshot diff.

include!(concat!(env!("OUT_DIR"), "/thulium_client.rs"));

/// The generated source exactly as compiled into this crate, so a test can hold it
/// byte-identical to the reviewed snapshot.
#[doc(hidden)]
pub const SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/thulium_client.rs"));
