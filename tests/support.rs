//! Helpers shared by the workspace's integration tests.

use std::net::SocketAddr;

use openapiv3::OpenAPI;

/// The spec of this checkout: `openapi/thulium-webhooks.yaml`.
pub fn spec_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/thulium-webhooks.yaml")
}

/// The spec of this checkout, parsed.
pub fn spec() -> OpenAPI {
    let path = spec_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Serves `app` on a fresh loopback port for the rest of the test; returns the address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(thulium::server::serve(
        listener,
        app,
        thulium::server::ServerLimits::default(),
        std::future::pending(),
    ));
    addr
}
