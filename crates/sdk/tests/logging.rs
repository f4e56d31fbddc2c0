//! Logs at the most verbose level name the operation, the status and Thulium's
//! `request_id`, and never a password or an `Authorization` header.
//!
//! Alone in its test binary: `tracing` caches per call site whether anyone listens,
//! and tests on other threads without a subscriber would make that cache say no.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thulium::{Action, Client, NewWebhook, RetryPolicy};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn traces_name_the_operation_status_and_request_id_but_no_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(422).set_body_raw(
            r#"{"request_id":"req-42","errors":[{"message":"bad","code":9}]}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let client = Client::builder()
        .base_url(server.uri())
        .credentials("api_user", "api_pass")
        .timeout(Duration::from_secs(5))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let webhook = NewWebhook::new("https://example.pl", [Action::ChatConversationCreated])
        .with_auth("hook", "hook-secret");
    let err = client.create_webhook(&webhook).await.unwrap_err();
    tracing::debug!(?client, ?err, "the caller logs everything it has");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("operation=\"create_webhook\""), "{logs}");
    assert!(logs.contains("status=422"), "{logs}");
    assert!(logs.contains("request_id=\"req-42\""), "{logs}");
    for secret in ["api_pass", "hook-secret", "YXBpX3VzZXI6YXBpX3Bhc3M"] {
        assert!(!logs.contains(secret), "{secret} leaked into:\n{logs}");
    }
}
