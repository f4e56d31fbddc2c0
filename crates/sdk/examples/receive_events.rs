//! Receives Thulium's events and logs them.
//!
//! ```sh
//! THULIUM_WEBHOOK_PASSWORD=change-me \
//!   cargo run -p thulium --features axum --example receive_events [-- 127.0.0.1:8090]
//! ```
//! `THULIUM_WEBHOOK_PASSWORD` is required: it is the subscription's
//! `http_auth_password`; the user is `THULIUM_WEBHOOK_USER` (default `thulium`). It
//! listens on 127.0.0.1:8090 unless given an address, so it can run beside the
//! README's walkthrough (`thulium listen` on 8080, `thulium mock` on 8765). Subscribe
//! `http://127.0.0.1:8090/thulium` with that user and password (or run
//! `cargo run --example quickstart`, which does all of it against the fake server).

use std::net::SocketAddr;

use thulium::event::Event;
use thulium::receiver::Receiver;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,thulium=debug".into()),
        )
        .init();

    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_string())
        .parse()?;
    let user = std::env::var("THULIUM_WEBHOOK_USER").unwrap_or_else(|_| "thulium".into());
    let password = std::env::var("THULIUM_WEBHOOK_PASSWORD")
        .map_err(|_| {
            "set THULIUM_WEBHOOK_PASSWORD to the subscription's http_auth_password \
             (e.g. THULIUM_WEBHOOK_PASSWORD=change-me cargo run -p thulium --features axum --example receive_events)"
        })?;

    let receiver = Receiver::with_basic_auth(user, password)?;
    let app = receiver.router("/thulium", |event: Event| async move {
        tracing::info!(
            action = %event.action(),
            at = ?event.occurred_at().map(|d| d.to_string()),
            key = %event.dedup_key(),
            body = %event.to_json(),
            "event"
        );
        Ok::<_, std::convert::Infallible>(())
    });

    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("receiving Thulium events on http://{addr}/thulium (Ctrl-C stops)");
    thulium::server::serve(listener, app, Default::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
