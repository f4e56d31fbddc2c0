//! Helpers shared by the workspace's integration tests.

use openapiv3::OpenAPI;

/// The spec of this checkout, parsed.
pub fn spec() -> OpenAPI {
    let path = thulium_codegen::spec_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
