//! TLS for every HTTP client this workspace builds, configured per client.
//!
//! reqwest is built without a TLS provider of its own (compiling aws-lc beside ring
//! would double the TLS build), so each client gets an explicit rustls configuration:
//! the ring provider and the platform's certificate verifier. Nothing is installed
//! process-wide, so an application's own choice of rustls provider stands.

use std::sync::Arc;

use rustls_platform_verifier::BuilderVerifierExt as _;

/// The rustls configuration the SDK's clients use: the ring provider, TLS 1.2 and 1.3,
/// and the operating system's trust store (through `rustls-platform-verifier`).
pub fn client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth())
}

/// A `reqwest` client builder with [`client_config`] as its TLS: the starting point for
/// every HTTP client in the workspace (the fake's deliveries, the inbox's forwarder,
/// the command line), and for yours if you pass one to
/// [`crate::ClientBuilder::http_client`].
///
/// ```
/// let http = thulium::tls::http_client_builder()
///     .unwrap()
///     .timeout(std::time::Duration::from_secs(5))
///     .build()
///     .unwrap();
/// # drop(http);
/// ```
pub fn http_client_builder() -> Result<reqwest::ClientBuilder, rustls::Error> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(client_config()?))
}

/// Installs rustls' ring provider as the process default, unless one is installed.
///
/// The SDK never calls this: its clients carry their own configuration. It is for an
/// application (or a test) that builds plain `reqwest::Client::new()` clients in a
/// process where this SDK's reqwest features are in force; such a client needs a
/// process default. Idempotent and cheap.
pub fn install_default_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
